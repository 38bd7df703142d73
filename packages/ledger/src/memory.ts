import {
  expiryVoid,
  isExpired,
  planBatch,
  recomputeBalances,
  type LedgerAccount,
  type PendingState,
  type Transfer,
  type TransferRequest,
  type TransferResult,
} from './ledger.ts'
import type { LedgerAccountSpec } from './accounts.ts'

// The ledger in memory: the same rules as the stored one (planBatch), used as the oracle the store is checked
// against in property tests, and for simulations.

export class MemoryLedger {
  readonly accounts = new Map<string, LedgerAccount>()
  readonly transfers: Transfer[] = []
  readonly #byId = new Map<string, Transfer>()
  readonly #pendingStates = new Map<string, PendingState>()

  createAccounts(specs: readonly LedgerAccountSpec[]): void {
    for (const spec of specs) {
      if (this.accounts.has(spec.id)) continue
      this.accounts.set(spec.id, {
        id: spec.id,
        kind: spec.kind,
        flags: { allowNegative: spec.allowNegative },
        debitsPending: 0n,
        debitsPosted: 0n,
        creditsPending: 0n,
        creditsPosted: 0n,
      })
    }
  }

  createTransfers(batch: readonly TransferRequest[], nowMs: number): TransferResult[] {
    const outcome = planBatch(
      { accounts: this.accounts, existing: this.#byId, pendingStates: this.#pendingStates, nowMs },
      batch,
    )
    for (const [id, account] of outcome.accounts) this.accounts.set(id, account)
    for (const transfer of outcome.created) {
      this.transfers.push(transfer)
      this.#byId.set(transfer.id, transfer)
    }
    for (const [id, state] of outcome.resolved) this.#pendingStates.set(id, state)
    return [...outcome.results]
  }

  /** Voids every pending transfer past its timeout, as the store's sweep does. */
  expirePending(nowMs: number): number {
    const expired = this.transfers.filter(
      (transfer) =>
        isExpired(transfer, nowMs) && (this.#pendingStates.get(transfer.id) ?? 'pending') === 'pending',
    )
    for (const pending of expired) this.createTransfers([expiryVoid(pending)], nowMs)
    return expired.length
  }

  pendingState(id: string): PendingState | undefined {
    const transfer = this.#byId.get(id)
    return transfer?.kind === 'pending' ? (this.#pendingStates.get(id) ?? 'pending') : undefined
  }

  /** The stored totals agree with totals recomputed from the transfers alone. */
  verify(): boolean {
    const recomputed = recomputeBalances(this.accounts.keys(), this.transfers)
    for (const [id, account] of this.accounts) {
      const totals = recomputed.get(id)!
      if (
        totals.debitsPending !== account.debitsPending ||
        totals.debitsPosted !== account.debitsPosted ||
        totals.creditsPending !== account.creditsPending ||
        totals.creditsPosted !== account.creditsPosted
      )
        return false
    }
    return true
  }
}
