import { WalletEntryKind, walletEntryKinds } from '@gpumesh/core'
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

// Wallets: a user's GMT account, deposits and withdrawals through the settlement adapter, and its history.

/** A positive GMT amount as an exact decimal string: "12.5", at most 6 fractional digits and 10^12 GMT. */
export const GmtAmount = Type.String({
  pattern: '^(0|[1-9][0-9]{0,11})(\\.[0-9]{1,6})?$',
  description: 'GMT as a decimal string, e.g. "12.5"',
})
/** Makes a request safe to retry: the same id again answers the first result and moves nothing twice. */
const RequestId = Type.String({ pattern: '^[A-Za-z0-9_-]{8,64}$' })

const WalletEntryKindSchema = Type.Union([
  Type.Literal(WalletEntryKind.spend),
  Type.Literal(WalletEntryKind.hold),
  Type.Literal(WalletEntryKind.release),
  Type.Literal(WalletEntryKind.deposit),
  Type.Literal(WalletEntryKind.credit),
  Type.Literal(WalletEntryKind.withdrawal),
  Type.Literal(WalletEntryKind.payout),
  Type.Literal(WalletEntryKind.other),
])

/** What a hold is for: a cluster (its id), the caller's inference requests, or a withdrawal in flight. */
export const HeldFor = Type.Union([
  Type.Object({ type: Type.Literal('cluster'), id: Type.String() }),
  Type.Object({ type: Type.Literal('inference'), id: Type.Null() }),
  Type.Object({ type: Type.Literal('withdrawal'), id: Type.Union([Type.String(), Type.Null()]) }),
])
export type HeldFor = Static<typeof HeldFor>

export const WalletView = Type.Object({
  accountId: Type.String(),
  /** Posted balance. */
  balanceGmt: Type.String(),
  /** What can be spent now: the balance less holds. */
  availableGmt: Type.String(),
  /** Held for what is running (clusters, inference requests, withdrawals in flight): `holds` names each. */
  heldGmt: Type.String(),
  /** What holds the held funds, largest first; the amounts add up to heldGmt. */
  holds: Type.Array(Type.Object({ heldFor: HeldFor, amountGmt: Type.String() })),
})
export type WalletView = Static<typeof WalletView>

export const WalletAmountBody = Type.Object(
  { amountGmt: GmtAmount, requestId: Type.Optional(RequestId) },
  { additionalProperties: false },
)
export type WalletAmountBody = Static<typeof WalletAmountBody>

export const OperatorCreditBody = Type.Object(
  {
    accountId: Type.String({ minLength: 1, maxLength: 64 }),
    amountGmt: GmtAmount,
    /** Kept with the transfer, with the operator who gave it: the audit record. */
    reason: Type.String({ minLength: 3, maxLength: 256 }),
    requestId: Type.Optional(RequestId),
  },
  { additionalProperties: false },
)
export type OperatorCreditBody = Static<typeof OperatorCreditBody>

export const WalletTransferView = Type.Object({
  id: Type.String(),
  /**
   * What the line is to the wallet's owner: spend, hold, release, deposit, credit, withdrawal, payout, other.
   * Only spend lines are spending; a hold sets funds aside and its release gives them back.
   */
  kind: WalletEntryKindSchema,
  /** The ledger's own kind of transfer: single, pending (a hold), post or void (its resolution). */
  transferKind: Type.String(),
  code: Type.String(),
  /**
   * Positive into this wallet (or back from a hold: a release), negative out of it (or into a hold). A hold
   * posted for less than it held gives the rest back without a line of its own.
   */
  amountGmt: Type.String(),
  /** On hold, release and spend lines: what holds (or held) the funds. */
  heldFor: Type.Union([HeldFor, Type.Null()]),
  counterparty: Type.String(),
  reference: Type.Union([Type.String(), Type.Null()]),
  createdAtMs: Type.Integer(),
})
export type WalletTransferView = Static<typeof WalletTransferView>

export const WalletHistoryQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 100 })),
    /** Only lines of these kinds, comma-separated, e.g. `spend` or `hold,release`. */
    kind: Type.Optional(
      Type.String({ pattern: `^(${walletEntryKinds.join('|')})(,(${walletEntryKinds.join('|')}))*$` }),
    ),
  },
  { additionalProperties: false },
)
export type WalletHistoryQuery = Static<typeof WalletHistoryQuery>

export const WalletHistory = Type.Object({ transfers: Type.Array(WalletTransferView) })
export type WalletHistory = Static<typeof WalletHistory>

export const WalletReceipt = Type.Object({
  transferId: Type.String(),
  wallet: WalletView,
  /** On a chain-settled network: the withdrawal's transaction signature. */
  signature: Type.Optional(Type.String()),
})
export type WalletReceipt = Static<typeof WalletReceipt>

/** One ledger account's totals (operators): e.g. the platform fee account's income. */
export const LedgerAccountView = Type.Object({
  id: Type.String(),
  kind: Type.String(),
  balanceGmt: Type.String(),
  heldGmt: Type.String(),
  debitsPostedGmt: Type.String(),
  creditsPostedGmt: Type.String(),
  debitsPendingGmt: Type.String(),
  creditsPendingGmt: Type.String(),
})
export type LedgerAccountView = Static<typeof LedgerAccountView>

// A supplier's earnings: what their devices earned, per device and day, each line traceable to transfers.

export const EarningsQuery = Type.Object(
  {
    days: Type.Optional(Type.Integer({ minimum: 1, maximum: 366, default: 30 })),
    deviceId: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
  },
  { additionalProperties: false },
)
export type EarningsQuery = Static<typeof EarningsQuery>

export const EarningsLine = Type.Object({
  /** The device that earned it; null for earnings not tied to one device. */
  deviceId: Type.Union([Type.String(), Type.Null()]),
  /** UTC day, YYYY-MM-DD. */
  day: Type.String(),
  /** rental (clusters), inference, reward (epochs). */
  source: Type.String(),
  amountGmt: Type.String(),
  /** How many ledger transfers make this line; GET /v1/earnings/transfers lists them. */
  transfers: Type.Integer(),
})
export type EarningsLine = Static<typeof EarningsLine>

export const EarningsView = Type.Object({
  accountId: Type.String(),
  /** Earned and not yet collected into the wallet. */
  uncollectedGmt: Type.String(),
  /** Earned in the period asked for. */
  periodTotalGmt: Type.String(),
  lines: Type.Array(EarningsLine),
})
export type EarningsView = Static<typeof EarningsView>

export const EarningsTransfersQuery = Type.Object(
  {
    deviceId: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    day: Type.String({ pattern: '^[0-9]{4}-[0-9]{2}-[0-9]{2}$' }),
    source: Type.Optional(Type.String({ minLength: 1, maxLength: 32 })),
  },
  { additionalProperties: false },
)
export type EarningsTransfersQuery = Static<typeof EarningsTransfersQuery>

export const EarningsTransfers = Type.Object({ transfers: Type.Array(WalletTransferView) })
export type EarningsTransfers = Static<typeof EarningsTransfers>

/** Moves earnings into the wallet, from where they can be spent or withdrawn; absent amount: all of them. */
export const CollectEarningsBody = Type.Object(
  { amountGmt: Type.Optional(GmtAmount), requestId: Type.Optional(RequestId) },
  { additionalProperties: false },
)
export type CollectEarningsBody = Static<typeof CollectEarningsBody>

// GMT on chain (docs/chain.md): deposit addresses, reported deposits, withdrawals to an address, reconciliation.

const SolanaAddress = Type.String({
  pattern: '^[1-9A-HJ-NP-Za-km-z]{32,44}$',
  description: 'a base58 Solana address',
})

export const WalletWithdrawBody = Type.Object(
  {
    amountGmt: GmtAmount,
    requestId: Type.Optional(RequestId),
    /** On a chain-settled network: the owner address paid (its GMT token account is created if missing). */
    to: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
  },
  { additionalProperties: false },
)
export type WalletWithdrawBody = Static<typeof WalletWithdrawBody>

export const DepositAddressView = Type.Object({
  accountId: Type.String(),
  address: SolanaAddress,
  mint: SolanaAddress,
  commitment: Type.String(),
})
export type DepositAddressView = Static<typeof DepositAddressView>

export const DepositReportBody = Type.Object(
  {
    /** A transaction paying the deposit address; absent: the coordinator looks at the address's recent transactions. */
    signature: Type.Optional(Type.String({ pattern: '^[1-9A-HJ-NP-Za-km-z]{64,88}$' })),
  },
  { additionalProperties: false },
)
export type DepositReportBody = Static<typeof DepositReportBody>

export const DepositReportView = Type.Object({
  /** credited: at least one transfer is in the wallet; unconfirmed: not at the commitment yet; none: nothing new. */
  status: Type.Union([Type.Literal('credited'), Type.Literal('unconfirmed'), Type.Literal('none')]),
  credits: Type.Array(
    Type.Object({
      transferId: Type.String(),
      signature: Type.String(),
      amountGmt: Type.String(),
      newlyCredited: Type.Boolean(),
    }),
  ),
  wallet: WalletView,
})
export type DepositReportView = Static<typeof DepositReportView>

export const ChainVerificationView = Type.Object({
  ok: Type.Boolean(),
  vaultAddress: Type.String(),
  ledgerGmt: Type.String(),
  chainGmt: Type.String(),
  vaultChainGmt: Type.String(),
  depositAddresses: Type.Integer(),
  mismatches: Type.Array(
    Type.Object({
      kind: Type.String(),
      address: Type.String(),
      accountId: Type.Union([Type.String(), Type.Null()]),
      ledgerGmt: Type.String(),
      chainGmt: Type.Union([Type.String(), Type.Null()]),
      detail: Type.String(),
    }),
  ),
  tookMs: Type.Number(),
})
export type ChainVerificationView = Static<typeof ChainVerificationView>
