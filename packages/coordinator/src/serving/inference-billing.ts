import { formatGmtUnits, InsufficientFundsError, type Clock } from '@gpumesh/core'
import { available, ledgerAccounts, type LedgerAccountSpec, type TransferRequest } from '@gpumesh/ledger'
import { splitInferenceCharge } from '@gpumesh/pricing'
import type { InferenceReceiptRecord, Store } from '@gpumesh/store'
import type { FastifyBaseLogger } from 'fastify'
import { mintIdBody } from '../credentials.ts'

// Paying for inference, request by request, without a database write per request. The gateway holds part
// of a caller's wallet (a pending ledger transfer into the caller's inference escrow) and reserves each
// request's most possible cost against it in memory before the model runs; a request that does not fit is
// refused. Finished requests are charged together every settle interval, in one atomic ledger batch per
// caller: the holds are posted for exactly what was used and the rest held again, each serving device's
// supplier is paid its share and the platform its fee, and every request's receipt is written in the same
// transaction. Holds time out on their own, so a coordinator that dies mid-interval leaves nothing locked.

export type InferenceBillingComponents = {
  readonly store: Store
  readonly clock: Clock
  readonly log: FastifyBaseLogger
}

export type InferenceBillingInit = {
  readonly feeBasisPoints: number
  /** What to hold at a time beyond what a request needs, in units. */
  readonly holdUnits: bigint
  /** A hold the gateway forgot (it crashed) is released this long after it was made. */
  readonly holdTimeoutMs: number
  /** A caller idle this long has its hold released. */
  readonly idleReleaseMs: number
}

export type Reservation = {
  readonly accountId: string
  readonly maxChargeUnits: bigint
}

/** A finished request, priced; its settlement ids are assigned when its batch is charged. */
export type FinishedRequest = Omit<
  InferenceReceiptRecord,
  'feeUnits' | 'batchId' | 'supplierTransferId' | 'feeTransferId' | 'holdPostTransferId'
>

type Hold = { readonly id: string; readonly amount: bigint }
type Caller = {
  holds: Hold[]
  /** Reserved by requests still running. */
  reserved: bigint
  /** Charged to finished requests and not yet settled. */
  used: bigint
  finished: FinishedRequest[]
  /** Ledger work for this caller, one piece at a time. */
  chain: Promise<unknown>
  lastActivityMs: number
  /** A batch that failed is retried with the same id, so it can never be charged twice. */
  retry?: { batchId: string; requests: FinishedRequest[]; used: bigint }
}

export type InferenceBilling = {
  /** Reserves a request's most possible cost; throws InsufficientFundsError when the caller cannot pay it. */
  reserve(accountId: string, maxChargeUnits: bigint): Promise<Reservation>
  /** The request ran: its real charge (at most the reserved one) is kept for the next settlement. */
  complete(reservation: Reservation, request: FinishedRequest): void
  /** The request did not run, or failed: nothing is charged. */
  cancel(reservation: Reservation): void
  /** A finished request not yet settled, for its receipt. */
  unsettled(receiptId: string): FinishedRequest | undefined
  /** Charges every finished request now. */
  settle(): Promise<void>
  /** Settles, then releases every hold. */
  stop(): Promise<void>
}

export function createInferenceBilling(
  { store, clock, log }: InferenceBillingComponents,
  init: InferenceBillingInit,
): InferenceBilling {
  const callers = new Map<string, Caller>()
  const knownAccounts = new Set<string>()
  const unsettledById = new Map<string, FinishedRequest>()

  const callerOf = (accountId: string): Caller => {
    let caller = callers.get(accountId)
    if (!caller) {
      caller = {
        holds: [],
        reserved: 0n,
        used: 0n,
        finished: [],
        chain: Promise.resolve(),
        lastActivityMs: clock.nowMs(),
      }
      callers.set(accountId, caller)
    }
    return caller
  }
  const held = (caller: Caller) => caller.holds.reduce((sum, hold) => sum + hold.amount, 0n)
  const free = (caller: Caller) => held(caller) - caller.reserved - caller.used
  const serially = <T>(caller: Caller, work: () => Promise<T>): Promise<T> => {
    const next = caller.chain.then(work, work)
    caller.chain = next.catch(() => undefined)
    return next
  }
  const ensureAccounts = async (specs: readonly LedgerAccountSpec[]) => {
    const missing = specs.filter((spec) => !knownAccounts.has(spec.id))
    if (missing.length === 0) return
    await store.ledger.createAccounts(missing, clock.nowMs())
    for (const spec of missing) knownAccounts.add(spec.id)
  }

  const topUp = async (accountId: string, caller: Caller, needed: bigint) => {
    const escrow = ledgerAccounts.inferenceEscrow(accountId)
    await ensureAccounts([escrow])
    const [wallet] = await store.ledger.getAccounts([ledgerAccounts.user(accountId).id])
    const spendable = wallet ? available(wallet) : 0n
    const amount = needed + init.holdUnits <= spendable ? needed + init.holdUnits : spendable
    if (amount < needed) {
      throw new InsufficientFundsError(
        `this request may cost up to ${formatGmtUnits(needed)} GMT more than is held for you; the wallet has ${formatGmtUnits(spendable)} GMT available`,
        { neededGmt: formatGmtUnits(needed), availableGmt: formatGmtUnits(spendable) },
      )
    }
    const hold: Hold = { id: `inf-hold:${mintIdBody()}`, amount }
    const [result] = await store.ledger.createTransfers(
      [
        {
          id: hold.id,
          kind: 'pending',
          debitAccountId: ledgerAccounts.user(accountId).id,
          creditAccountId: escrow.id,
          amount,
          timeoutMs: init.holdTimeoutMs,
          code: 'inference_hold',
          reference: accountId,
        },
      ],
      clock.nowMs(),
    )
    if (result !== 'ok')
      throw new InsufficientFundsError(
        `could not hold ${formatGmtUnits(amount)} GMT for inference: ${result}`,
      )
    caller.holds.push(hold)
  }

  /** One caller's finished requests, charged in one atomic batch. */
  const settleCaller = async (accountId: string, caller: Caller) => {
    const batch =
      caller.retry ??
      (caller.finished.length > 0
        ? { batchId: `ib_${mintIdBody()}`, requests: caller.finished, used: caller.used }
        : undefined)
    if (!batch) return
    if (!caller.retry) {
      caller.finished = []
      caller.used = 0n
      caller.retry = batch
    }
    const escrow = ledgerAccounts.inferenceEscrow(accountId).id
    const transfers: TransferRequest[] = []
    // Holds posted in order for what was used; any hold left over is voided, its rest held again below.
    let toPost = batch.used
    const oldHolds = caller.holds
    const totalHeld = held(caller)
    for (const [index, hold] of oldHolds.entries()) {
      const amount = toPost < hold.amount ? toPost : hold.amount
      toPost -= amount
      transfers.push(
        amount > 0n
          ? {
              id: `inf-post:${batch.batchId}:${index}`,
              kind: 'post',
              pendingId: hold.id,
              amount,
              code: 'inference_usage',
            }
          : {
              id: `inf-void:${batch.batchId}:${index}`,
              kind: 'void',
              pendingId: hold.id,
              code: 'inference_release',
            },
      )
    }
    const rest = totalHeld - batch.used
    const newHold: Hold | undefined =
      rest > 0n ? { id: `inf-hold:${batch.batchId}`, amount: rest } : undefined
    if (newHold)
      transfers.push({
        id: newHold.id,
        kind: 'pending',
        debitAccountId: ledgerAccounts.user(accountId).id,
        creditAccountId: escrow,
        amount: newHold.amount,
        timeoutMs: init.holdTimeoutMs,
        code: 'inference_hold',
        reference: accountId,
      })
    const perDevice = new Map<string, { supplierAccountId: string; amount: bigint }>()
    let feeTotal = 0n
    const supplierTransferId = (deviceId: string) => `inf-pay:${batch.batchId}:${deviceId}`
    const feeTransferId = `inf-fee:${batch.batchId}`
    const fees = batch.requests.map((request) => {
      const { fee, supplier } = splitInferenceCharge(request.amountUnits, init.feeBasisPoints)
      feeTotal += fee
      const line = perDevice.get(request.deviceId) ?? {
        supplierAccountId: request.supplierAccountId,
        amount: 0n,
      }
      line.amount += supplier
      perDevice.set(request.deviceId, line)
      return fee
    })
    for (const [deviceId, line] of [...perDevice].sort(([a], [b]) => (a < b ? -1 : 1))) {
      if (line.amount === 0n) continue
      transfers.push({
        id: supplierTransferId(deviceId),
        kind: 'single',
        debitAccountId: escrow,
        creditAccountId: ledgerAccounts.earnings(line.supplierAccountId).id,
        amount: line.amount,
        code: 'inference',
        reference: deviceId,
      })
    }
    if (feeTotal > 0n)
      transfers.push({
        id: feeTransferId,
        kind: 'single',
        debitAccountId: escrow,
        creditAccountId: ledgerAccounts.fee().id,
        amount: feeTotal,
        code: 'inference_fee',
        reference: batch.batchId,
      })
    // Each receipt names only transfers that exist: none moves money for a request that cost nothing.
    const receipts: InferenceReceiptRecord[] = batch.requests.map((request, index) => ({
      ...request,
      feeUnits: fees[index]!,
      batchId: batch.batchId,
      supplierTransferId:
        perDevice.get(request.deviceId)!.amount > 0n ? supplierTransferId(request.deviceId) : null,
      feeTransferId: fees[index]! > 0n ? feeTransferId : null,
      holdPostTransferId: batch.used > 0n ? `inf-post:${batch.batchId}:0` : null,
    }))
    await ensureAccounts(
      [...perDevice.values()].map((line) => ledgerAccounts.earnings(line.supplierAccountId)),
    )
    const results = await store.inference.settle(transfers, receipts, clock.nowMs())
    if (!results.every((result) => result === 'ok' || result === 'exists')) {
      throw new Error(`inference settlement ${batch.batchId} refused: ${results.join(', ')}`)
    }
    caller.holds = newHold ? [newHold] : []
    caller.retry = undefined
    for (const request of batch.requests) unsettledById.delete(request.id)
  }

  const releaseIdle = async (accountId: string, caller: Caller) => {
    if (caller.reserved > 0n || caller.used > 0n || caller.retry || caller.holds.length === 0) return
    if (clock.nowMs() - caller.lastActivityMs < init.idleReleaseMs) return
    const transfers: TransferRequest[] = caller.holds.map((hold) => ({
      id: `inf-release:${hold.id.slice('inf-hold:'.length)}`,
      kind: 'void',
      pendingId: hold.id,
      code: 'inference_release',
    }))
    await store.ledger.createTransfers(transfers, clock.nowMs())
    caller.holds = []
    callers.delete(accountId)
  }

  const settleAll = async (releaseEveryHold: boolean) => {
    await Promise.all(
      [...callers].map(([accountId, caller]) =>
        serially(caller, async () => {
          try {
            await settleCaller(accountId, caller)
            if (releaseEveryHold) caller.lastActivityMs = -Infinity
            await releaseIdle(accountId, caller)
          } catch (error) {
            log.error({ err: error, accountId }, 'inference settlement failed; will retry')
          }
        }),
      ),
    )
  }

  return {
    async reserve(accountId, maxChargeUnits) {
      const caller = callerOf(accountId)
      caller.lastActivityMs = clock.nowMs()
      if (free(caller) < maxChargeUnits) {
        await serially(caller, async () => {
          const missing = maxChargeUnits - free(caller)
          if (missing > 0n) await topUp(accountId, caller, missing)
        })
      }
      caller.reserved += maxChargeUnits
      return { accountId, maxChargeUnits }
    },
    complete(reservation, request) {
      const caller = callerOf(reservation.accountId)
      caller.reserved -= reservation.maxChargeUnits
      // Never more than was reserved: the reservation is the most the caller agreed to.
      const amountUnits =
        request.amountUnits > reservation.maxChargeUnits ? reservation.maxChargeUnits : request.amountUnits
      const finished = { ...request, amountUnits }
      caller.used += amountUnits
      caller.finished.push(finished)
      caller.lastActivityMs = clock.nowMs()
      unsettledById.set(finished.id, finished)
    },
    cancel(reservation) {
      const caller = callers.get(reservation.accountId)
      if (caller) caller.reserved -= reservation.maxChargeUnits
    },
    unsettled: (receiptId) => unsettledById.get(receiptId),
    settle: () => settleAll(false),
    stop: () => settleAll(true),
  }
}
