import { formatGmtUnits, type Clock } from '@gpumesh/core'
import { ledgerAccounts, type TransferRequest } from '@gpumesh/ledger'
import {
  computeEpochPayouts,
  epochEmissionUnits,
  epochStartMs,
  lastEndedEpoch,
  type RewardPolicy,
} from '@gpumesh/rewards'
import type { PaidAmount, RewardPayoutRecord, Store } from '@gpumesh/store'
import type { FastifyBaseLogger } from 'fastify'

// Closes reward epochs: reads what was measured over the epoch, computes the payouts (@gpumesh/rewards),
// stores the plan, then pays it through the ledger. Every step can be repeated: the plan is stored once per
// epoch (a second close reads it back), and transfer ids name the epoch and the device, so closing an epoch
// twice, on one coordinator or on two, pays once.

export type EpochCloserComponents = {
  readonly store: Store
  readonly clock: Clock
  readonly log: FastifyBaseLogger
  /** Challenges a share of the connected devices: the spot check when an epoch ends. */
  readonly spotCheck?: (fraction: number) => Promise<number>
}

export type EpochCloserInit = {
  readonly policy: RewardPolicy
  /** An epoch is closed this long after it ends, so heartbeats are flushed and spot checks have answered. */
  readonly closeDelayMs: number
  /** Share of connected devices spot-checked when an epoch ends. */
  readonly spotCheckFraction: number
  /** Epochs closed per pass at most, when catching up after downtime. */
  readonly maxEpochsPerPass?: number
}

export type EpochCloseResult = {
  readonly epoch: number
  /** False when the plan was already stored (a second close). */
  readonly computed: boolean
  readonly transfers: number
  readonly paidUnits: bigint
  /** Milliseconds spent reading the records, computing, storing the plan and paying it. */
  readonly phasesMs: {
    readonly read: number
    readonly compute: number
    readonly store: number
    readonly pay: number
  }
}

export type EpochCloser = {
  /** Spot checks at each epoch's end, and closes every epoch due; returns what it closed. */
  tick(): Promise<EpochCloseResult[]>
  close(epoch: number): Promise<EpochCloseResult>
}

/** Transfers per ledger batch when paying an epoch. */
const payoutBatchSize = 10_000
const mintTransferId = (epoch: number) => `reward-mint:${epoch}`
export const rewardTransferId = (epoch: number, deviceId: string) => `reward:${epoch}:${deviceId}`

export function createEpochCloser(components: EpochCloserComponents, init: EpochCloserInit): EpochCloser {
  const { store, clock, log } = components
  const { policy } = init
  let spotCheckedEpoch: number | undefined

  const pay = async (epoch: number, emissionUnits: bigint, payouts: readonly PaidAmount[]) => {
    const nowMs = clock.nowMs()
    const accountIds = [...new Set(payouts.map((payout) => payout.accountId))]
    await store.ledger.createAccounts(
      [ledgerAccounts.rewards(), ledgerAccounts.settlement(), ...accountIds.map(ledgerAccounts.earnings)],
      nowMs,
    )
    // The emission is minted into the pool first, then the payouts leave it. Batches of 10,000 are
    // each atomic, and the epoch counts as paid only once all are in: after a crash, closing again replays
    // every batch and the ledger answers `exists` for what was already committed.
    const batch: TransferRequest[] = []
    if (emissionUnits > 0n)
      batch.push({
        id: mintTransferId(epoch),
        kind: 'single',
        debitAccountId: ledgerAccounts.settlement().id,
        creditAccountId: ledgerAccounts.rewards().id,
        amount: emissionUnits,
        code: 'emission',
        reference: `epoch ${epoch}`,
      })
    for (const payout of payouts) {
      batch.push({
        id: rewardTransferId(epoch, payout.deviceId),
        kind: 'single',
        debitAccountId: ledgerAccounts.rewards().id,
        creditAccountId: ledgerAccounts.earnings(payout.accountId).id,
        amount: payout.amountUnits,
        code: 'reward',
        // Statements group a supplier's income by device, as rentals do.
        reference: payout.deviceId,
      })
    }
    for (let offset = 0; offset < batch.length; offset += payoutBatchSize) {
      const results = await store.ledger.createTransfers(batch.slice(offset, offset + payoutBatchSize), nowMs)
      const refused = results.filter((result) => result !== 'ok' && result !== 'exists')
      if (refused.length > 0)
        throw new Error(`epoch ${epoch} payouts refused by the ledger: ${[...new Set(refused)].join(', ')}`)
    }
    await store.rewards.markEpochPaid(epoch, nowMs)
    return batch.length
  }

  const close = async (epoch: number): Promise<EpochCloseResult> => {
    const phasesMs = { read: 0, compute: 0, store: 0, pay: 0 }
    let phaseStartMs = performance.now()
    const phaseDone = (phase: keyof typeof phasesMs) => {
      const nowMs = performance.now()
      phasesMs[phase] += nowMs - phaseStartMs
      phaseStartMs = nowMs
    }
    let stored = await store.rewards.getEpoch(epoch)
    let computed = false
    /** What this process stored, when it stored the plan: no need to read it back to pay it. */
    let planned: PaidAmount[] | undefined
    if (!stored) {
      const startsAtMs = epochStartMs(policy, epoch)
      const endsAtMs = startsAtMs + policy.epochLengthMs
      const emissionUnits = epochEmissionUnits(policy, epoch, await store.rewards.totalEmitted())
      const records = await store.rewards.epochInputs(
        startsAtMs,
        endsAtMs,
        clock.nowMs(),
        policy.verificationValidMs,
      )
      phaseDone('read')
      const result = computeEpochPayouts(policy, epoch, emissionUnits, records)
      const totalScoreOf = new Map(result.pools.map((pool) => [pool.pool, pool.totalScore]))
      const hostnameOf = new Map(records.map((record) => [record.deviceId, record.hostname]))
      const payouts: RewardPayoutRecord[] = result.payouts.map((payout) => ({
        epoch,
        deviceId: payout.deviceId,
        hostname: hostnameOf.get(payout.deviceId) ?? '',
        accountId: payout.accountId,
        pool: payout.pool,
        eligible: payout.eligible,
        ineligibleReasonCode: payout.ineligibleReasonCode,
        ineligibleReason: payout.ineligibleReason,
        factors: {
          bandwidthTier: payout.factors.bandwidthTier,
          hiredPpm: Number(payout.factors.hiredPpm),
          uptimePpm: Number(payout.factors.uptimePpm),
          bandwidthMilli: Number(payout.factors.bandwidthMilli),
          hardwareMilli: Number(payout.factors.hardwareMilli),
          hiredMilli: Number(payout.factors.hiredMilli),
          gpus: payout.factors.gpus.map((gpu) => ({ ...gpu, multiplierMilli: Number(gpu.multiplierMilli) })),
        },
        score: payout.score,
        poolTotalScore: totalScoreOf.get(payout.pool) ?? 0n,
        amountUnits: payout.amountUnits,
        transferId: payout.amountUnits > 0n ? rewardTransferId(epoch, payout.deviceId) : null,
      }))
      phaseDone('compute')
      computed = await store.rewards.saveEpochPlan(
        {
          epoch,
          startsAtMs,
          endsAtMs,
          policyVersion: policy.version,
          emissionUnits,
          paidUnits: result.paidUnits,
          devicesConsidered: records.length,
          devicesEligible: result.payouts.filter((payout) => payout.eligible).length,
          devicesPaid: result.payouts.filter((payout) => payout.amountUnits > 0n).length,
          pools: result.pools.map((pool) => ({
            pool: pool.pool,
            shareBp: pool.shareBp.toString(),
            emissionUnits: pool.emissionUnits.toString(),
            paidUnits: pool.paidUnits.toString(),
            totalScore: pool.totalScore.toString(),
            devicesPaid: pool.devicesPaid,
          })),
          computedAtMs: clock.nowMs(),
          paidAtMs: null,
        },
        payouts,
      )
      if (computed)
        planned = payouts
          .filter((payout) => payout.amountUnits > 0n)
          .map(({ deviceId, accountId, amountUnits }) => ({ deviceId, accountId, amountUnits }))
      // Another coordinator stored it first: pay what it stored, not what this one computed.
      stored = await store.rewards.getEpoch(epoch)
      if (!stored) throw new Error(`epoch ${epoch} plan was not stored`)
      phaseDone('store')
    }
    if (stored.paidAtMs !== null)
      return { epoch, computed, transfers: 0, paidUnits: stored.paidUnits, phasesMs }
    const transfers = await pay(
      epoch,
      stored.emissionUnits,
      planned ?? (await store.rewards.listPaidAmounts(epoch)),
    )
    phaseDone('pay')
    log.info(
      {
        epoch,
        emission: formatGmtUnits(stored.emissionUnits),
        paid: formatGmtUnits(stored.paidUnits),
        devicesPaid: stored.devicesPaid,
        phasesMs,
      },
      'reward epoch closed',
    )
    return { epoch, computed, transfers, paidUnits: stored.paidUnits, phasesMs }
  }

  return {
    close,
    async tick() {
      const nowMs = clock.nowMs()
      const justEnded = lastEndedEpoch(policy, nowMs)
      if (components.spotCheck && justEnded >= 0 && spotCheckedEpoch !== justEnded) {
        spotCheckedEpoch = justEnded
        await components.spotCheck(init.spotCheckFraction)
      }
      const results: EpochCloseResult[] = []
      // A plan stored by a close that crashed before paying is paid first.
      for (const unpaid of await store.rewards.listUnpaidEpochs()) results.push(await close(unpaid.epoch))
      const due = lastEndedEpoch(policy, nowMs - init.closeDelayMs)
      if (due < 0) return results
      const latest = await store.rewards.latestEpoch()
      // A new network starts with the epoch that just ended, not with every epoch since genesis.
      const first = latest ? latest.epoch + 1 : due
      const last = Math.min(due, first + (init.maxEpochsPerPass ?? 24) - 1)
      for (let epoch = first; epoch <= last; epoch += 1) results.push(await close(epoch))
      return results
    },
  }
}
