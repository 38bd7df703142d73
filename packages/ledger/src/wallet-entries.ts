// What a transfer is to the person whose wallet it touches: a spend, a hold, a release, a deposit... The ledger
// itself only knows single, pending, post and void transfers with a free-form code; a wallet statement lists
// them by what they mean, so a hold of 100 GMT is not read as 100 GMT spent. Pure: one table of rules, which
// both names a transfer (walletEntryKindOf) and, in the store, filters the history by kind (SQL from the same
// rules), so the two cannot disagree.

import { WalletEntryKind } from '@gpumesh/core'
import type { Transfer, TransferKind } from './ledger.ts'

/** One shape of transfer: its ledger kind and, optionally, which codes and id prefix it has or lacks. */
export type TransferMatch = {
  readonly transferKind: TransferKind
  readonly codes?: readonly string[]
  readonly exceptCodes?: readonly string[]
  readonly idPrefix?: string
  readonly exceptIdPrefix?: string
}

/** Operator credits go through the settlement adapter as deposits; their transfer ids say what they are. */
const creditIdPrefix = 'credit:'

/** The rules, disjoint: a transfer matches at most one kind's rules; one that matches none is `other`. */
export const walletEntryRules: Readonly<Record<Exclude<WalletEntryKind, 'other'>, readonly TransferMatch[]>> =
  {
    hold: [{ transferKind: 'pending' }],
    release: [{ transferKind: 'void' }],
    spend: [{ transferKind: 'post', exceptCodes: ['chain_withdrawal'] }],
    withdrawal: [
      { transferKind: 'post', codes: ['chain_withdrawal'] },
      { transferKind: 'single', codes: ['withdrawal'] },
    ],
    deposit: [
      {
        transferKind: 'single',
        codes: ['deposit', 'chain_deposit', 'faucet'],
        exceptIdPrefix: creditIdPrefix,
      },
    ],
    credit: [{ transferKind: 'single', codes: ['deposit'], idPrefix: creditIdPrefix }],
    payout: [{ transferKind: 'single', codes: ['collect'] }],
  }

export function transferMatches(transfer: Pick<Transfer, 'kind' | 'code' | 'id'>, match: TransferMatch) {
  return (
    transfer.kind === match.transferKind &&
    (match.codes === undefined || match.codes.includes(transfer.code)) &&
    (match.exceptCodes === undefined || !match.exceptCodes.includes(transfer.code)) &&
    (match.idPrefix === undefined || transfer.id.startsWith(match.idPrefix)) &&
    (match.exceptIdPrefix === undefined || !transfer.id.startsWith(match.exceptIdPrefix))
  )
}

export function walletEntryKindOf(transfer: Pick<Transfer, 'kind' | 'code' | 'id'>): WalletEntryKind {
  for (const [kind, matches] of Object.entries(walletEntryRules))
    if (matches.some((match) => transferMatches(transfer, match))) return kind as WalletEntryKind
  return WalletEntryKind.other
}

/**
 * The transfers of the given kinds, as matches a store can turn into a query: any of `any`, and none of
 * `none` (`other` is what no rule names).
 */
export function walletEntryFilter(kinds: readonly WalletEntryKind[]): {
  readonly any: readonly TransferMatch[]
  readonly none: readonly TransferMatch[]
} {
  const named = kinds.filter((kind): kind is Exclude<WalletEntryKind, 'other'> => kind !== 'other')
  const any = named.flatMap((kind) => walletEntryRules[kind])
  if (!kinds.includes('other')) return { any, none: [] }
  // `other` is the complement of every rule; with named kinds beside it, those are allowed back in.
  const unnamed = Object.entries(walletEntryRules)
    .filter(([kind]) => !(named as readonly string[]).includes(kind))
    .flatMap(([, matches]) => matches)
  return { any: [], none: unnamed }
}

/** What a hold is for, from the account its funds are held in. */
export type HeldFor =
  | { readonly type: 'cluster'; readonly id: string }
  | { readonly type: 'inference'; readonly id: null }
  | { readonly type: 'withdrawal'; readonly id: string | null }

export function heldForOf(escrowAccountId: string, reference: string | null): HeldFor | null {
  if (escrowAccountId.startsWith('escrow:inference:')) return { type: 'inference', id: null }
  if (escrowAccountId.startsWith('escrow:')) return { type: 'cluster', id: escrowAccountId.slice(7) }
  if (escrowAccountId === 'external:chain-vault') return { type: 'withdrawal', id: reference }
  return null
}
