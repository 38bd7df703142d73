import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { ledgerAccounts } from './accounts.ts'
import { available, balance, TransferResult, type TransferRequest } from './ledger.ts'
import { MemoryLedger } from './memory.ts'

// The ledger's rules on the in-memory ledger (the same planBatch the store runs).

const renter = ledgerAccounts.user('acc_r')
const escrow = ledgerAccounts.escrow('cls_1')
const settlement = ledgerAccounts.settlement()
const fee = ledgerAccounts.fee()

function fresh(): MemoryLedger {
  const ledger = new MemoryLedger()
  ledger.createAccounts([renter, escrow, settlement, fee])
  return ledger
}
const deposit = (id: string, amount: bigint): TransferRequest => ({
  id,
  kind: 'single',
  debitAccountId: settlement.id,
  creditAccountId: renter.id,
  amount,
  code: 'deposit',
})

describe('ledger rules', () => {
  it('moves money between accounts and keeps every total', () => {
    const ledger = fresh()
    assert.deepEqual(ledger.createTransfers([deposit('t1', 100n)], 0), ['ok'])
    assert.equal(balance(ledger.accounts.get(renter.id)!), 100n)
    assert.equal(balance(ledger.accounts.get(settlement.id)!), -100n)
    assert.ok(ledger.verify())
  })

  it('refuses to overdraw an account that may not go negative, changing nothing', () => {
    const ledger = fresh()
    ledger.createTransfers([deposit('t1', 100n)], 0)
    const spend = {
      id: 't2',
      kind: 'single',
      debitAccountId: renter.id,
      creditAccountId: fee.id,
      amount: 101n,
      code: 'x',
    } as const
    assert.deepEqual(ledger.createTransfers([spend], 0), ['exceeds_credits'])
    assert.equal(balance(ledger.accounts.get(renter.id)!), 100n)
  })

  it('replays return the first result; a different payload under the same id is refused', () => {
    const ledger = fresh()
    ledger.createTransfers([deposit('t1', 100n)], 0)
    assert.deepEqual(ledger.createTransfers([deposit('t1', 100n)], 5), ['exists'])
    assert.deepEqual(ledger.createTransfers([deposit('t1', 99n)], 5), ['exists_with_different_payload'])
    assert.equal(balance(ledger.accounts.get(renter.id)!), 100n)
    assert.equal(ledger.transfers.length, 1)
  })

  it('refuses bad amounts and ids before anything else', () => {
    const ledger = fresh()
    for (const amount of [0n, -5n, 10n ** 19n])
      assert.deepEqual(ledger.createTransfers([deposit('t1', amount)], 0), ['amount_invalid'])
    assert.deepEqual(ledger.createTransfers([deposit('bad id!', 1n)], 0), ['id_invalid'])
    assert.equal(ledger.transfers.length, 0)
  })

  it('holds, posts part and releases the rest; a pending transfer resolves once', () => {
    const ledger = fresh()
    ledger.createTransfers([deposit('t1', 100n)], 0)
    const hold = {
      id: 'h1',
      kind: 'pending',
      debitAccountId: renter.id,
      creditAccountId: escrow.id,
      amount: 60n,
      code: 'hold',
    } as const
    assert.deepEqual(ledger.createTransfers([hold], 0), ['ok'])
    assert.equal(available(ledger.accounts.get(renter.id)!), 40n)
    assert.deepEqual(
      ledger.createTransfers([{ id: 'p1', kind: 'post', pendingId: 'h1', amount: 61n, code: 'usage' }], 1),
      ['exceeds_pending_amount'],
    )
    assert.deepEqual(
      ledger.createTransfers([{ id: 'p1', kind: 'post', pendingId: 'h1', amount: 25n, code: 'usage' }], 1),
      ['ok'],
    )
    assert.equal(balance(ledger.accounts.get(renter.id)!), 75n)
    assert.equal(available(ledger.accounts.get(renter.id)!), 75n)
    assert.equal(balance(ledger.accounts.get(escrow.id)!), 25n)
    assert.deepEqual(
      ledger.createTransfers([{ id: 'v1', kind: 'void', pendingId: 'h1', code: 'release' }], 2),
      ['pending_transfer_already_posted'],
    )
    assert.ok(ledger.verify())
  })

  it('expires a pending transfer after its timeout: released, and no longer postable', () => {
    const ledger = fresh()
    ledger.createTransfers([deposit('t1', 100n)], 0)
    ledger.createTransfers(
      [
        {
          id: 'h1',
          kind: 'pending',
          debitAccountId: renter.id,
          creditAccountId: escrow.id,
          amount: 60n,
          timeoutMs: 1000,
          code: 'hold',
        },
      ],
      0,
    )
    assert.deepEqual(
      ledger.createTransfers([{ id: 'x', kind: 'void', pendingId: 'h1', code: 'expiry' }], 999),
      ['expiry_before_timeout'],
    )
    assert.equal(ledger.expirePending(999), 0)
    assert.equal(ledger.expirePending(1000), 1)
    assert.equal(ledger.pendingState('h1'), 'expired')
    assert.equal(available(ledger.accounts.get(renter.id)!), 100n)
    assert.deepEqual(
      ledger.createTransfers([{ id: 'p1', kind: 'post', pendingId: 'h1', code: 'usage' }], 1001),
      ['pending_transfer_expired'],
    )
    assert.ok(ledger.verify())
  })

  it('commits a batch whole or not at all', () => {
    const ledger = fresh()
    ledger.createTransfers([deposit('t1', 100n)], 0)
    const results = ledger.createTransfers(
      [
        deposit('t1', 100n),
        deposit('t2', 50n),
        {
          id: 't3',
          kind: 'single',
          debitAccountId: renter.id,
          creditAccountId: fee.id,
          amount: 1_000n,
          code: 'x',
        },
        deposit('t4', 5n),
      ],
      1,
    )
    assert.deepEqual(results, ['exists', 'linked_event_failed', 'exceeds_credits', 'linked_event_failed'])
    assert.equal(balance(ledger.accounts.get(renter.id)!), 100n)
    assert.equal(ledger.transfers.length, 1)
  })

  it('keeps the books balanced under any sequence of operations', () => {
    const accountIds = [renter.id, escrow.id, settlement.id, fee.id]
    const operation = fc.oneof(
      fc.record({
        kind: fc.constantFrom('single' as const, 'pending' as const),
        from: fc.nat(3),
        to: fc.nat(3),
        amount: fc.bigInt({ min: -5n, max: 200n }),
        timeoutMs: fc.constantFrom(0, 0, 500),
      }),
      fc.record({
        kind: fc.constantFrom('post' as const, 'void' as const),
        target: fc.nat(40),
        amount: fc.option(fc.bigInt({ min: 1n, max: 200n }), { nil: undefined }),
      }),
      fc.record({ kind: fc.constant('replay' as const), target: fc.nat(40) }),
      fc.record({ kind: fc.constant('tick' as const), ms: fc.nat(700) }),
    )
    let checkedOperations = 0
    fc.assert(
      fc.property(fc.array(operation, { maxLength: 60, size: 'max' }), (operations) => {
        const ledger = fresh()
        const sent: TransferRequest[] = []
        let nowMs = 0
        operations.forEach((op, index) => {
          let request: TransferRequest | undefined
          if (op.kind === 'tick') {
            nowMs += op.ms
            ledger.expirePending(nowMs)
          } else if (op.kind === 'replay') {
            request = sent[op.target % Math.max(1, sent.length)]
          } else if (op.kind === 'single' || op.kind === 'pending') {
            request = {
              id: `t${index}`,
              kind: op.kind,
              debitAccountId: accountIds[op.from]!,
              creditAccountId: accountIds[op.to]!,
              amount: op.amount,
              ...(op.kind === 'pending' ? { timeoutMs: op.timeoutMs } : {}),
              code: 'test',
            }
          } else if ('target' in op) {
            const target = sent.filter((candidate) => candidate.kind === 'pending')[op.target % 8]
            if (target)
              request = {
                id: `r${index}`,
                kind: op.kind,
                pendingId: target.id,
                ...(op.amount === undefined ? {} : { amount: op.amount }),
                code: 'test',
              }
          }
          if (!request) return
          const before = ledger.transfers.length
          const [result] = ledger.createTransfers([request], nowMs)
          if (result === TransferResult.ok) {
            sent.push(request)
          } else {
            assert.equal(ledger.transfers.length, before, `${result} changed nothing`)
          }
          // Double entry: every account's balances sum to zero, posted and pending.
          let posted = 0n
          let pending = 0n
          for (const account of ledger.accounts.values()) {
            posted += balance(account)
            pending += account.creditsPending - account.debitsPending
            if (!account.flags.allowNegative) assert.ok(available(account) >= 0n, `${account.id} overdrawn`)
          }
          assert.equal(posted, 0n)
          assert.equal(pending, 0n)
          assert.ok(ledger.verify())
        })
        // What the network holds is exactly what came in from outside less what went back out, as the
        // transfer log records it (posted movements in or out of the settlement account).
        let deposits = 0n
        for (const transfer of ledger.transfers) {
          if (transfer.kind !== 'single' && transfer.kind !== 'post') continue
          if (transfer.debitAccountId === settlement.id) deposits += transfer.amount
          if (transfer.creditAccountId === settlement.id) deposits -= transfer.amount
        }
        let held = 0n
        for (const account of ledger.accounts.values())
          if (account.id !== settlement.id) held += balance(account)
        assert.equal(held, deposits)
        checkedOperations += operations.length
      }),
      { numRuns: 300 },
    )
    assert.ok(checkedOperations > 3_000, `${checkedOperations} operations checked`)
  })
})
