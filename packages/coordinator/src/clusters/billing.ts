import { formatGmtUnits, InsufficientFundsError, type Clock } from '@gpumesh/core'
import {
  available,
  holdFor,
  intervalCharges,
  intervalEndMs,
  lastSettledInterval,
  ledgerAccounts,
  splitCharge,
  usdToGmtUnits,
  type BillingWindow,
  type TransferRequest,
} from '@gpumesh/ledger'
import type { ClusterRecord, Store } from '@gpumesh/store'

// A cluster's money. At deploy the renter's funds for the whole duration are held (a pending transfer to
// the cluster's escrow); nothing is charged before the cluster is ready. Each billing interval, in one
// atomic batch, the hold is posted for what the nodes used while they were serving (their service periods,
// at each node's own price), the rest is held again, and the escrow pays each node's supplier and the
// platform fee. An interval is charged once `settleDelayMs` has passed after it, so a node that went silent
// in it has been found lost, and its silence is not charged. Extending re-holds the remainder plus the
// extra; ending charges up to the end and releases what was not used. Every transfer id names the cluster
// and the interval, so a coordinator that dies mid-billing charges each interval exactly once.

export type BillingSettings = {
  readonly gmtUnitsPerUsd: bigint
  readonly feeBasisPoints: number
  readonly intervalMs: number
  /** How long after an interval it is charged: the time the controller takes to find a silent node lost. */
  readonly settleDelayMs: number
  /** How long a hold outlives the cluster's expected end before the ledger releases it by itself. */
  readonly holdGraceMs: number
}

export type ClusterBilling = {
  /**
   * Holds the whole duration's price; refuses with the shortfall when the wallet cannot. Returns the hold id,
   * or null for a cluster that costs nothing (there is nothing to hold or charge).
   */
  placeHold(
    accountId: string,
    clusterId: string,
    pricePerHourMicroUsd: bigint,
    durationMs: number,
  ): Promise<string | null>
  /** Releases a hold placed for a cluster that was never created. */
  releaseHold(clusterId: string, holdId: string, reason: string): Promise<void>
  /** Charges every interval settled by now; returns the cluster as recorded. Cheap when none is due. */
  billDue(cluster: ClusterRecord): Promise<ClusterRecord>
  /** Holds `addedMs` more; refuses with the shortfall when the wallet cannot. */
  extend(cluster: ClusterRecord, addedMs: number): Promise<ClusterRecord>
  /**
   * Tops the hold up, if need be, so it covers the rest of the rental at `pricePerHourMicroUsd` (the nodes'
   * prices now); refuses with the shortfall when the wallet cannot. Returns the GMT added, if any.
   */
  coverRemaining(
    cluster: ClusterRecord,
    pricePerHourMicroUsd: bigint,
  ): Promise<{ cluster: ClusterRecord; toppedUp: string | null }>
  /** The cluster has stopped: charges up to its end, then releases the rest of the hold. */
  close(cluster: ClusterRecord): Promise<ClusterRecord>
}

/** Where billing stops: when termination began (or the cluster ended), or its expiry, whichever is first. */
export function billingEndMs(cluster: ClusterRecord): number {
  const stoppedAtMs =
    cluster.state === 'terminating'
      ? cluster.stateChangedAtMs
      : cluster.state === 'terminated' || cluster.state === 'failed'
        ? (cluster.endedAtMs ?? cluster.stateChangedAtMs)
        : Number.POSITIVE_INFINITY
  return Math.min(stoppedAtMs, cluster.expiresAtMs ?? Number.POSITIVE_INFINITY)
}

export function createClusterBilling(
  components: { readonly store: Store; readonly clock: Clock; supplierOf(deviceId: string): Promise<string> },
  settings: BillingSettings,
): ClusterBilling {
  const { store, clock } = components
  const ledger = store.ledger
  const priceUnits = (pricePerHourMicroUsd: bigint) =>
    usdToGmtUnits(pricePerHourMicroUsd, settings.gmtUnitsPerUsd)

  const transfer = async (id: string) => (await ledger.listTransfersById([id]))[0]

  const refuse = async (accountId: string, needed: bigint, what: string): Promise<never> => {
    const [wallet] = await ledger.getAccounts([ledgerAccounts.user(accountId).id])
    const have = wallet ? available(wallet) : 0n
    throw new InsufficientFundsError(
      `${what} needs ${formatGmtUnits(needed)} GMT held; the wallet has ${formatGmtUnits(have)} GMT available`,
      {
        shortfallGmt: formatGmtUnits(needed - have),
        availableGmt: formatGmtUnits(have),
        neededGmt: formatGmtUnits(needed),
      },
    )
  }

  const holdTimeoutMs = (
    cluster: { readonly expiresAtMs: number | null; readonly durationMs: number },
    nowMs: number,
  ) =>
    (cluster.expiresAtMs === null ? cluster.durationMs : Math.max(0, cluster.expiresAtMs - nowMs)) +
    settings.holdGraceMs

  const windowOf = (cluster: ClusterRecord): BillingWindow | undefined =>
    cluster.readyAtMs === null
      ? undefined
      : { readyAtMs: cluster.readyAtMs, intervalMs: settings.intervalMs, endMs: billingEndMs(cluster) }

  /** Charges intervals billedIntervals+1 … through `lastInterval`, each in one atomic batch. */
  const charge = async (cluster: ClusterRecord, window: BillingWindow, lastInterval: number) => {
    let current = cluster
    const first = current.billedIntervals + 1
    // Intervals are recorded one at a time after their batch commits, so a crash can leave only the first
    // one committed and unrecorded: record it and go on.
    if (first <= lastInterval && (await transfer(`bill:${cluster.id}:${first}`))) {
      const rehold = await transfer(`hold:${cluster.id}:${first}`)
      current = await store.updateClusterBilling(cluster.id, {
        billingHoldId: rehold ? rehold.id : null,
        billedIntervals: first,
        billedUntilMs: intervalEndMs(window, first),
      })
    }
    if (current.billingHoldId === null || current.billedIntervals >= lastInterval) return current
    const hold = await transfer(current.billingHoldId)
    if (!hold) throw new Error(`hold ${current.billingHoldId} of ${cluster.id} is not in the ledger`)
    let held = hold.amount
    const nodes = await store.listClusterNodes(cluster.id)
    const periods = await store.listClusterNodeService(cluster.id)
    const billed = nodes.map((node) => ({
      deviceId: node.deviceId,
      pricePerHourUnits: priceUnits(node.pricePerHourMicroUsd),
    }))
    const earningsOf = new Map<string, string>()
    for (const node of nodes) {
      const earnings = ledgerAccounts.earnings(await components.supplierOf(node.deviceId))
      earningsOf.set(node.deviceId, earnings.id)
      await ledger.createAccounts([earnings], clock.nowMs())
    }
    const escrow = ledgerAccounts.escrow(cluster.id).id
    const user = ledgerAccounts.user(cluster.accountId).id
    for (let interval = current.billedIntervals + 1; interval <= lastInterval; interval += 1) {
      const holdId = current.billingHoldId
      if (holdId === null) break
      const charges = intervalCharges(window, interval, billed, periods)
      // Never more than is held: the nodes first in line are paid in full, the rest from what is left.
      let remaining = held
      const paid = charges.map(({ deviceId, amount }) => {
        const capped = amount <= remaining ? amount : remaining
        remaining -= capped
        return { deviceId, amount: capped }
      })
      const total = held - remaining
      let nextHoldId: string | null = holdId
      if (total > 0n) {
        const nowMs = clock.nowMs()
        nextHoldId = remaining > 0n ? `hold:${cluster.id}:${interval}` : null
        const batch: TransferRequest[] = [
          {
            id: `bill:${cluster.id}:${interval}`,
            kind: 'post',
            pendingId: holdId,
            amount: total,
            code: 'usage',
            reference: `${cluster.id} interval ${interval}`,
          },
        ]
        if (nextHoldId)
          batch.push({
            id: nextHoldId,
            kind: 'pending',
            debitAccountId: user,
            creditAccountId: escrow,
            amount: remaining,
            timeoutMs: holdTimeoutMs(cluster, nowMs),
            code: 'hold',
            reference: cluster.id,
          })
        let fees = 0n
        for (const { deviceId, amount } of paid) {
          if (amount === 0n) continue
          const { fee, supplier } = splitCharge(amount, settings.feeBasisPoints)
          fees += fee
          if (supplier > 0n)
            batch.push({
              id: `pay:${cluster.id}:${interval}:${deviceId}`,
              kind: 'single',
              debitAccountId: escrow,
              creditAccountId: earningsOf.get(deviceId)!,
              amount: supplier,
              code: 'rental',
              // Statements group a supplier's income by device: the reference is the device.
              reference: deviceId,
            })
        }
        if (fees > 0n)
          batch.push({
            id: `fee:${cluster.id}:${interval}`,
            kind: 'single',
            debitAccountId: escrow,
            creditAccountId: ledgerAccounts.fee().id,
            amount: fees,
            code: 'fee',
            reference: `${cluster.id} interval ${interval}`,
          })
        const results = await ledger.createTransfers(batch, nowMs)
        if (!results.every((result) => result === 'ok' || result === 'exists'))
          throw new Error(`billing ${cluster.id} interval ${interval} refused: ${results.join(', ')}`)
        held = remaining
      }
      current = await store.updateClusterBilling(cluster.id, {
        billingHoldId: nextHoldId,
        billedIntervals: interval,
        billedUntilMs: intervalEndMs(window, interval),
      })
    }
    return current
  }

  /** Voids the hold in force and holds its amount plus `extra` again, in one batch. */
  async function rehold(
    cluster: ClusterRecord,
    extra: bigint,
    addedMs: number,
    holdSuffix: string,
    what: string,
  ): Promise<ClusterRecord> {
    if (cluster.billingHoldId === null) return cluster
    const hold = await transfer(cluster.billingHoldId)
    if (!hold) throw new Error(`hold ${cluster.billingHoldId} of ${cluster.id} is not in the ledger`)
    const nowMs = clock.nowMs()
    const nextHoldId = `hold:${cluster.id}:${holdSuffix}`
    const results = await ledger.createTransfers(
      [
        {
          id: `rehold:${hold.id}`,
          kind: 'void',
          pendingId: hold.id,
          code: 'rehold',
          reference: cluster.id,
        },
        {
          id: nextHoldId,
          kind: 'pending',
          debitAccountId: ledgerAccounts.user(cluster.accountId).id,
          creditAccountId: ledgerAccounts.escrow(cluster.id).id,
          amount: hold.amount + extra,
          timeoutMs: holdTimeoutMs(
            {
              durationMs: cluster.durationMs + addedMs,
              expiresAtMs: cluster.expiresAtMs === null ? null : cluster.expiresAtMs + addedMs,
            },
            nowMs,
          ),
          code: 'hold',
          reference: cluster.id,
        },
      ],
      nowMs,
    )
    if (results[1] === 'exceeds_credits') await refuse(cluster.accountId, extra, what)
    if (!results.every((result) => result === 'ok' || result === 'exists'))
      throw new Error(`extending the hold of ${cluster.id} refused: ${results.join(', ')}`)
    return store.updateClusterBilling(cluster.id, {
      billingHoldId: nextHoldId,
      billedIntervals: cluster.billedIntervals,
    })
  }

  const billing: ClusterBilling = {
    async placeHold(accountId, clusterId, pricePerHourMicroUsd, durationMs) {
      const amount = holdFor(priceUnits(pricePerHourMicroUsd), durationMs)
      const nowMs = clock.nowMs()
      const user = ledgerAccounts.user(accountId)
      await ledger.createAccounts([user, ledgerAccounts.escrow(clusterId)], nowMs)
      if (amount === 0n) return null
      const holdId = `hold:${clusterId}:0`
      const [result] = await ledger.createTransfers(
        [
          {
            id: holdId,
            kind: 'pending',
            debitAccountId: user.id,
            creditAccountId: ledgerAccounts.escrow(clusterId).id,
            amount,
            timeoutMs: durationMs + settings.holdGraceMs,
            code: 'hold',
            reference: clusterId,
          },
        ],
        nowMs,
      )
      if (result === 'exceeds_credits') await refuse(accountId, amount, 'this cluster')
      if (result !== 'ok' && result !== 'exists') throw new Error(`could not hold funds: ${result}`)
      return holdId
    },

    async releaseHold(clusterId, holdId, reason) {
      await ledger.createTransfers(
        [
          {
            id: `release:${holdId}`,
            kind: 'void',
            pendingId: holdId,
            code: 'release',
            reference: `${clusterId}: ${reason}`,
          },
        ],
        clock.nowMs(),
      )
    },

    async billDue(cluster) {
      const window = windowOf(cluster)
      if (!window || cluster.billingHoldId === null) return cluster
      const lastInterval = lastSettledInterval(window, clock.nowMs() - settings.settleDelayMs)
      if (lastInterval <= cluster.billedIntervals) return cluster
      return charge(cluster, window, lastInterval)
    },

    async extend(cluster, addedMs) {
      const extra = holdFor(priceUnits(cluster.pricePerHourMicroUsd), addedMs)
      return rehold(cluster, extra, addedMs, `x${cluster.durationMs + addedMs}`, 'this extension')
    },

    async coverRemaining(cluster, pricePerHourMicroUsd) {
      if (cluster.billingHoldId === null) return { cluster, toppedUp: null }
      const hold = await transfer(cluster.billingHoldId)
      if (!hold) throw new Error(`hold ${cluster.billingHoldId} of ${cluster.id} is not in the ledger`)
      const nowMs = clock.nowMs()
      const remainingMs =
        cluster.expiresAtMs === null ? cluster.durationMs : Math.max(0, cluster.expiresAtMs - nowMs)
      const needed = holdFor(priceUnits(pricePerHourMicroUsd), remainingMs)
      if (needed <= hold.amount) return { cluster, toppedUp: null }
      const extra = needed - hold.amount
      return {
        cluster: await rehold(
          cluster,
          extra,
          0,
          `top${cluster.billedIntervals}-${nowMs}`,
          'a dearer replacement',
        ),
        toppedUp: formatGmtUnits(extra),
      }
    },

    async close(cluster) {
      let current = cluster
      const window = windowOf(cluster)
      if (window && current.billingHoldId !== null)
        current = await charge(current, window, lastSettledInterval(window, Number.POSITIVE_INFINITY))
      if (current.billingHoldId === null) return current
      await billing.releaseHold(cluster.id, current.billingHoldId, 'cluster ended')
      return store.updateClusterBilling(cluster.id, {
        billingHoldId: null,
        billedIntervals: current.billedIntervals,
      })
    },
  }
  return billing
}
