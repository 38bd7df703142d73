// The kinds of line a wallet statement shows, what each transfer is to the wallet's owner. The rules that name
// a transfer's kind are in packages/ledger/src/wallet-entries.ts; the API schema lists the same kinds.

export const WalletEntryKind = {
  /** Funds paid for something used (a cluster's interval, inference tokens): a hold posted. */
  spend: 'spend',
  /** Funds set aside for something running; still the owner's, not spent. */
  hold: 'hold',
  /** A hold given back, whole (a hold posted for less than it held gives back the rest silently). */
  release: 'release',
  /** Funds in from outside: the settlement adapter, the chain, the faucet. */
  deposit: 'deposit',
  /** Funds an operator credited by hand (recorded with the reason). */
  credit: 'credit',
  /** Funds out to the outside world. */
  withdrawal: 'withdrawal',
  /** A supplier's earnings paid into their wallet (`gpumesh earnings collect`). */
  payout: 'payout',
  /** Anything no rule names. */
  other: 'other',
} as const
export type WalletEntryKind = (typeof WalletEntryKind)[keyof typeof WalletEntryKind]
export const walletEntryKinds = Object.values(WalletEntryKind)
