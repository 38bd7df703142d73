// The ledger's accounts and their ids: one concept, named in one place. GMT is the network's token; amounts
// are integers of its smallest unit (6 decimals).

export const gmtUnitsPerToken = 1_000_000n

export type LedgerAccountSpec = {
  readonly id: string
  readonly kind: 'user' | 'escrow' | 'earnings' | 'fee' | 'rewards' | 'settlement'
  readonly ownerId: string | null
  /** Only the settlement account, the outside world's mirror, may go below zero. */
  readonly allowNegative: boolean
}

export const ledgerAccounts = {
  /** What a user (renter) can spend. */
  user: (accountId: string): LedgerAccountSpec => ({
    id: `user:${accountId}`,
    kind: 'user',
    ownerId: accountId,
    allowNegative: false,
  }),
  /** Funds held for one cluster while it runs. */
  escrow: (clusterId: string): LedgerAccountSpec => ({
    id: `escrow:${clusterId}`,
    kind: 'escrow',
    ownerId: clusterId,
    allowNegative: false,
  }),
  /** What the inference gateway holds of one caller's funds while requests run and until they are charged. */
  inferenceEscrow: (accountId: string): LedgerAccountSpec => ({
    id: `escrow:inference:${accountId}`,
    kind: 'escrow',
    ownerId: accountId,
    allowNegative: false,
  }),
  /** A supplier's earnings. */
  earnings: (accountId: string): LedgerAccountSpec => ({
    id: `earnings:${accountId}`,
    kind: 'earnings',
    ownerId: accountId,
    allowNegative: false,
  }),
  fee: (): LedgerAccountSpec => ({ id: 'platform:fee', kind: 'fee', ownerId: null, allowNegative: false }),
  rewards: (): LedgerAccountSpec => ({
    id: 'platform:rewards',
    kind: 'rewards',
    ownerId: null,
    allowNegative: false,
  }),
  /** Deposits come from here and withdrawals go back: its balance is minus what the network holds. */
  settlement: (): LedgerAccountSpec => ({
    id: 'external:settlement',
    kind: 'settlement',
    ownerId: null,
    allowNegative: true,
  }),
  /**
   * The chain's mirror on a chain-settled network (docs/chain.md): deposits come from here, withdrawals go
   * back, so minus its posted balance is what the ledger says the vault holds on chain.
   */
  chainVault: (): LedgerAccountSpec => ({
    id: 'external:chain-vault',
    kind: 'settlement',
    ownerId: null,
    allowNegative: true,
  }),
} as const
