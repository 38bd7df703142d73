import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { walletEntryKinds } from '@gpumesh/core'
import {
  heldForOf,
  transferMatches,
  walletEntryFilter,
  walletEntryKindOf,
  walletEntryRules,
} from './wallet-entries.ts'
import type { TransferKind } from './ledger.ts'

// Issue 25 item 3: a wallet's lines named by what they are to its owner, so holds are not read as spending.

const line = (kind: TransferKind, code: string, id = `${code}:x`) => ({ kind, code, id })

/** Every transfer shape that touches a user's wallet today, and what its owner should read it as. */
const shapes = [
  [line('pending', 'hold'), 'hold'],
  [line('pending', 'inference_hold'), 'hold'],
  [line('pending', 'chain_withdrawal'), 'hold'],
  [line('void', 'release'), 'release'],
  [line('void', 'rehold'), 'release'],
  [line('void', 'inference_release'), 'release'],
  [line('void', 'expiry'), 'release'],
  [line('void', 'chain_withdrawal_failed'), 'release'],
  [line('post', 'usage'), 'spend'],
  [line('post', 'inference_usage'), 'spend'],
  [line('post', 'chain_withdrawal'), 'withdrawal'],
  [line('single', 'withdrawal'), 'withdrawal'],
  [line('single', 'deposit', 'deposit:acc_1:r1'), 'deposit'],
  [line('single', 'deposit', 'credit:acc_1:r1'), 'credit'],
  [line('single', 'chain_deposit'), 'deposit'],
  [line('single', 'faucet'), 'deposit'],
  [line('single', 'collect'), 'payout'],
  [line('single', 'something_new'), 'other'],
] as const

describe('wallet entry kinds (issue 25 item 3)', () => {
  it('names each transfer shape by what it is to the wallet owner; holds and releases are not spend', () => {
    for (const [transfer, kind] of shapes) assert.equal(walletEntryKindOf(transfer), kind, transfer.code)
  })

  it('has disjoint rules: no transfer matches two kinds', () => {
    for (const [transfer] of shapes) {
      const matching = Object.entries(walletEntryRules).filter(([, matches]) =>
        matches.some((match) => transferMatches(transfer, match)),
      )
      assert.ok(matching.length <= 1, `${transfer.code} matches ${matching.map(([kind]) => kind).join(', ')}`)
    }
  })

  it('filters exactly the lines of the asked kinds, other included', () => {
    const selects = (filter: ReturnType<typeof walletEntryFilter>, transfer: (typeof shapes)[number][0]) =>
      (filter.any.length === 0 || filter.any.some((match) => transferMatches(transfer, match))) &&
      !filter.none.some((match) => transferMatches(transfer, match))
    const choices = [
      ...walletEntryKinds.map((kind) => [kind]),
      ['hold', 'release'],
      ['spend', 'other'],
    ] as const
    for (const kinds of choices) {
      const filter = walletEntryFilter(kinds)
      for (const [transfer, kind] of shapes)
        assert.equal(
          selects(filter, transfer),
          (kinds as readonly string[]).includes(kind),
          `${kinds} ${transfer.code}`,
        )
    }
  })

  it('names what holds the funds from the escrow account', () => {
    assert.deepEqual(heldForOf('escrow:cl_abc', 'cl_abc'), { type: 'cluster', id: 'cl_abc' })
    assert.deepEqual(heldForOf('escrow:inference:acc_1', 'acc_1'), { type: 'inference', id: null })
    assert.deepEqual(heldForOf('external:chain-vault', 'So1ana'), { type: 'withdrawal', id: 'So1ana' })
    assert.equal(heldForOf('external:settlement', null), null)
  })
})
