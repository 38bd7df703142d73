import Type, { type Static } from 'typebox'

// What `GET /v1/ledger/verify` answers: every account's totals recomputed from the transfers alone and
// compared with the stored ones. Amounts are integers of GMT's smallest unit, as decimal strings.

const Units = Type.String({ pattern: '^-?[0-9]+$', description: 'integer amount of the smallest GMT unit' })

export const LedgerVerificationView = Type.Object({
  ok: Type.Boolean(),
  accounts: Type.Integer(),
  transfers: Type.Integer(),
  /** Accounts whose stored totals differ from those recomputed from transfers. */
  mismatched: Type.Array(Type.String()),
  /** Σ(credits − debits) over every account: zero in a double-entry ledger. */
  postedSum: Units,
  pendingSum: Units,
  /** Accounts below zero that may not be. */
  overdrawn: Type.Array(Type.String()),
  /** Milliseconds the check took. */
  tookMs: Type.Number(),
})
export type LedgerVerificationView = Static<typeof LedgerVerificationView>
