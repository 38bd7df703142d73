// The double-entry ledger's rules, modelled on TigerBeetle's: accounts and immutable transfers, nothing else.
// Pure: given the accounts a batch touches, the transfers it names that already exist, and the batch, it
// decides each transfer's result and the balance changes. The store (packages/store) locks those rows,
// calls this, and writes what it returns in the same transaction; the in-memory ledger (memory.ts) calls the
// same function, so the store can be checked against it.
//
// Amounts are bigint in the token's smallest unit (GMT has 6 decimals: 1 GMT = 1,000,000 units).

export type AccountFlags = {
  /** Debits may exceed credits (the external settlement account, which mirrors the outside world). */
  readonly allowNegative: boolean
}

export type LedgerAccount = {
  readonly id: string
  /** What the account is for: user, escrow, earnings, fee, rewards, settlement. */
  readonly kind: string
  readonly flags: AccountFlags
  readonly debitsPending: bigint
  readonly debitsPosted: bigint
  readonly creditsPending: bigint
  readonly creditsPosted: bigint
}

/** single: moves money now; pending: reserves it; post / void: resolves a pending transfer. */
export type TransferKind = 'single' | 'pending' | 'post' | 'void'

export type TransferRequest = {
  /** Client-supplied idempotency id: the same id again returns the first result. */
  readonly id: string
  readonly kind: TransferKind
  /** For single and pending; a post or void takes them from its pending transfer. */
  readonly debitAccountId?: string
  readonly creditAccountId?: string
  /** For single and pending: the amount. For post: at most the pending amount (absent: all of it). */
  readonly amount?: bigint
  /** For post and void: the pending transfer it resolves. */
  readonly pendingId?: string
  /** For pending: it expires (is voided) this many ms after it is created; 0 = never. */
  readonly timeoutMs?: number
  /** What the money is for, e.g. deposit, hold, usage, fee, refund; kept, never interpreted here. */
  readonly code: string
  /** Free-form references (a cluster id, a minute) for statements. */
  readonly reference?: string
}

/** A transfer as stored: immutable once created. */
export type Transfer = {
  readonly id: string
  readonly kind: TransferKind
  readonly debitAccountId: string
  readonly creditAccountId: string
  readonly amount: bigint
  readonly pendingId: string | null
  readonly timeoutMs: number
  readonly code: string
  readonly reference: string | null
  readonly createdAtMs: number
}

/**
 * Results, in the order they are checked. `ok` is the only success; everything else changes nothing. A
 * replay of a stored transfer with the same payload answers `exists`, with a different payload one of the
 * `exists_with_different_*` codes.
 */
export const TransferResult = {
  ok: 'ok',
  /** A transfer in the same batch failed, so this one was not applied either (batches are atomic). */
  linkedEventFailed: 'linked_event_failed',
  idInvalid: 'id_invalid',
  amountInvalid: 'amount_invalid',
  accountsMustDiffer: 'accounts_must_be_different',
  pendingIdRequired: 'pending_id_required',
  pendingIdNotAllowed: 'pending_id_not_allowed',
  timeoutInvalid: 'timeout_invalid',
  exists: 'exists',
  existsWithDifferentPayload: 'exists_with_different_payload',
  debitAccountNotFound: 'debit_account_not_found',
  creditAccountNotFound: 'credit_account_not_found',
  pendingTransferNotFound: 'pending_transfer_not_found',
  pendingTransferNotPending: 'pending_transfer_not_pending',
  pendingTransferAlreadyPosted: 'pending_transfer_already_posted',
  pendingTransferAlreadyVoided: 'pending_transfer_already_voided',
  pendingTransferExpired: 'pending_transfer_expired',
  /** The code `expiry` is the timeout sweep's own, for a pending transfer past its timeout only. */
  expiryBeforeTimeout: 'expiry_before_timeout',
  exceedsPendingAmount: 'exceeds_pending_amount',
  exceedsCredits: 'exceeds_credits',
} as const
export type TransferResult = (typeof TransferResult)[keyof typeof TransferResult]

/** What became of a pending transfer. */
export type PendingState = 'pending' | 'posted' | 'voided' | 'expired'

/** The largest amount one transfer may move: far beyond any real payment, far below bigint trouble. */
export const maxTransferAmount = 10n ** 18n
const idPattern = /^[A-Za-z0-9:_.-]{1,128}$/

export type BatchInput = {
  readonly accounts: ReadonlyMap<string, LedgerAccount>
  /** Stored transfers whose ids the batch uses (as id or pendingId). */
  readonly existing: ReadonlyMap<string, Transfer>
  /** What became of each pending transfer the batch names (absent: still pending, if it is one). */
  readonly pendingStates: ReadonlyMap<string, PendingState>
  readonly nowMs: number
}

export type BatchOutcome = {
  /** One per request, in order. */
  readonly results: readonly TransferResult[]
  /** Empty unless every request is ok or exists: the batch commits whole or not at all. */
  readonly created: readonly Transfer[]
  /** The accounts after the batch (only those that changed). */
  readonly accounts: ReadonlyMap<string, LedgerAccount>
  /** Pending transfers resolved by this batch. */
  readonly resolved: ReadonlyMap<string, PendingState>
}

/** Decides a batch. Transfers later in the batch see the effect of earlier ones. */
export function planBatch(input: BatchInput, batch: readonly TransferRequest[]): BatchOutcome {
  const accounts = new Map<string, LedgerAccount>()
  const account = (id: string) => accounts.get(id) ?? input.accounts.get(id)
  const created = new Map<string, Transfer>()
  const resolved = new Map<string, PendingState>()
  const results: TransferResult[] = []
  for (const request of batch) {
    const result = decide(request)
    results.push(result)
    if (result !== TransferResult.ok && result !== TransferResult.exists) {
      // Atomic batches: one failure undoes the whole batch. The transfers that would have been created are
      // reported as linked_event_failed; replays of stored ones still answer exists.
      const failedAt = results.length - 1
      return {
        results: batch.map((_, index) =>
          index === failedAt
            ? result
            : index < failedAt && results[index] === TransferResult.exists
              ? TransferResult.exists
              : TransferResult.linkedEventFailed,
        ),
        created: [],
        accounts: new Map(),
        resolved: new Map(),
      }
    }
  }
  return { results, created: [...created.values()], accounts, resolved }

  function decide(request: TransferRequest): TransferResult {
    if (!idPattern.test(request.id)) return TransferResult.idInvalid
    const postOrVoid = request.kind === 'post' || request.kind === 'void'
    if (!postOrVoid) {
      if (request.amount === undefined || request.amount <= 0n || request.amount > maxTransferAmount)
        return TransferResult.amountInvalid
      if (request.debitAccountId === request.creditAccountId) return TransferResult.accountsMustDiffer
      if (request.pendingId !== undefined) return TransferResult.pendingIdNotAllowed
    } else {
      if (request.amount !== undefined && (request.amount <= 0n || request.amount > maxTransferAmount))
        return TransferResult.amountInvalid
      if (request.pendingId === undefined) return TransferResult.pendingIdRequired
    }
    const timeoutMs = request.timeoutMs ?? 0
    if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 0 || (timeoutMs > 0 && request.kind !== 'pending'))
      return TransferResult.timeoutInvalid

    const stored = created.get(request.id) ?? input.existing.get(request.id)
    if (stored)
      return samePayload(stored, request) ? TransferResult.exists : TransferResult.existsWithDifferentPayload

    if (!postOrVoid) {
      const debit = account(request.debitAccountId ?? '')
      if (!debit) return TransferResult.debitAccountNotFound
      const credit = account(request.creditAccountId ?? '')
      if (!credit) return TransferResult.creditAccountNotFound
      const amount = request.amount!
      if (!debit.flags.allowNegative && available(debit) < amount) return TransferResult.exceedsCredits
      const pending = request.kind === 'pending'
      accounts.set(debit.id, {
        ...debit,
        ...(pending
          ? { debitsPending: debit.debitsPending + amount }
          : { debitsPosted: debit.debitsPosted + amount }),
      })
      const creditNow = account(credit.id)!
      accounts.set(credit.id, {
        ...creditNow,
        ...(pending
          ? { creditsPending: creditNow.creditsPending + amount }
          : { creditsPosted: creditNow.creditsPosted + amount }),
      })
      created.set(request.id, {
        id: request.id,
        kind: request.kind,
        debitAccountId: debit.id,
        creditAccountId: credit.id,
        amount,
        pendingId: null,
        timeoutMs,
        code: request.code,
        reference: request.reference ?? null,
        createdAtMs: input.nowMs,
      })
      return TransferResult.ok
    }

    const pendingTransfer = created.get(request.pendingId!) ?? input.existing.get(request.pendingId!)
    if (!pendingTransfer) return TransferResult.pendingTransferNotFound
    if (pendingTransfer.kind !== 'pending') return TransferResult.pendingTransferNotPending
    const state = resolved.get(pendingTransfer.id) ?? input.pendingStates.get(pendingTransfer.id) ?? 'pending'
    if (state === 'posted') return TransferResult.pendingTransferAlreadyPosted
    if (state === 'voided') return TransferResult.pendingTransferAlreadyVoided
    const expiring = request.kind === 'void' && request.code === expiryCode
    if (state === 'expired') return TransferResult.pendingTransferExpired
    if (isExpired(pendingTransfer, input.nowMs) !== expiring)
      return expiring ? TransferResult.expiryBeforeTimeout : TransferResult.pendingTransferExpired
    const amount =
      request.kind === 'post' ? (request.amount ?? pendingTransfer.amount) : pendingTransfer.amount
    if (amount > pendingTransfer.amount) return TransferResult.exceedsPendingAmount
    const debit = account(pendingTransfer.debitAccountId)!
    accounts.set(debit.id, {
      ...debit,
      debitsPending: debit.debitsPending - pendingTransfer.amount,
      ...(request.kind === 'post' ? { debitsPosted: debit.debitsPosted + amount } : {}),
    })
    const credit = account(pendingTransfer.creditAccountId)!
    accounts.set(credit.id, {
      ...credit,
      creditsPending: credit.creditsPending - pendingTransfer.amount,
      ...(request.kind === 'post' ? { creditsPosted: credit.creditsPosted + amount } : {}),
    })
    resolved.set(pendingTransfer.id, request.kind === 'post' ? 'posted' : expiring ? 'expired' : 'voided')
    created.set(request.id, {
      id: request.id,
      kind: request.kind,
      debitAccountId: pendingTransfer.debitAccountId,
      creditAccountId: pendingTransfer.creditAccountId,
      amount,
      pendingId: pendingTransfer.id,
      timeoutMs: 0,
      code: request.code,
      reference: request.reference ?? null,
      createdAtMs: input.nowMs,
    })
    return TransferResult.ok
  }
}

/** What an account can still spend: posted credits less posted and pending debits. */
export function available(account: LedgerAccount): bigint {
  return account.creditsPosted - account.debitsPosted - account.debitsPending
}

/** Posted balance, credit-normal (what the account holds). */
export function balance(account: LedgerAccount): bigint {
  return account.creditsPosted - account.debitsPosted
}

export function isExpired(transfer: Transfer, nowMs: number): boolean {
  return (
    transfer.kind === 'pending' &&
    transfer.timeoutMs > 0 &&
    nowMs >= transfer.createdAtMs + transfer.timeoutMs
  )
}

function samePayload(stored: Transfer, request: TransferRequest): boolean {
  if (stored.kind !== request.kind || stored.code !== request.code) return false
  if ((stored.reference ?? undefined) !== request.reference) return false
  if (request.kind === 'post' || request.kind === 'void') {
    return (
      stored.pendingId === request.pendingId &&
      (request.amount === undefined || request.amount === stored.amount) &&
      (request.debitAccountId === undefined || request.debitAccountId === stored.debitAccountId) &&
      (request.creditAccountId === undefined || request.creditAccountId === stored.creditAccountId)
    )
  }
  return (
    stored.debitAccountId === request.debitAccountId &&
    stored.creditAccountId === request.creditAccountId &&
    stored.amount === request.amount &&
    stored.timeoutMs === (request.timeoutMs ?? 0)
  )
}

/**
 * The voids a pending transfer's timeout implies: applied by the store's expiry sweep so that an expired
 * reservation is released and recorded as a transfer of its own.
 */
export function expiryVoid(pending: Transfer): TransferRequest {
  return { id: `expire:${pending.id}`.slice(0, 128), kind: 'void', pendingId: pending.id, code: expiryCode }
}

export const expiryCode = 'expiry'

/** What a resolving transfer made of its pending transfer (how the store derives pending states). */
export function resolutionOf(resolving: Pick<Transfer, 'kind' | 'code'>): PendingState {
  if (resolving.kind === 'post') return 'posted'
  return resolving.code === expiryCode ? 'expired' : 'voided'
}

/**
 * Recomputes every account's four totals from the transfers alone, the way `ledger verify` checks the
 * stored balances. Transfers are applied in creation order.
 */
export function recomputeBalances(
  accountIds: Iterable<string>,
  transfers: readonly Transfer[],
): Map<
  string,
  { debitsPending: bigint; debitsPosted: bigint; creditsPending: bigint; creditsPosted: bigint }
> {
  const totals = new Map(
    [...accountIds].map((id) => [
      id,
      { debitsPending: 0n, debitsPosted: 0n, creditsPending: 0n, creditsPosted: 0n },
    ]),
  )
  const byId = new Map(transfers.map((transfer) => [transfer.id, transfer]))
  for (const transfer of transfers) {
    const debit = totals.get(transfer.debitAccountId)
    const credit = totals.get(transfer.creditAccountId)
    if (!debit || !credit) throw new Error(`transfer ${transfer.id} names an account that does not exist`)
    if (transfer.kind === 'single') {
      debit.debitsPosted += transfer.amount
      credit.creditsPosted += transfer.amount
    } else if (transfer.kind === 'pending') {
      debit.debitsPending += transfer.amount
      credit.creditsPending += transfer.amount
    } else {
      const pending = byId.get(transfer.pendingId ?? '')
      if (!pending) throw new Error(`transfer ${transfer.id} resolves a pending transfer that does not exist`)
      debit.debitsPending -= pending.amount
      credit.creditsPending -= pending.amount
      if (transfer.kind === 'post') {
        debit.debitsPosted += transfer.amount
        credit.creditsPosted += transfer.amount
      }
    }
  }
  return totals
}
