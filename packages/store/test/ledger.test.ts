import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import fc from 'fast-check'
import {
  available,
  ledgerAccounts,
  MemoryLedger,
  type LedgerAccountSpec,
  type TransferRequest,
} from '@gpumesh/ledger'
import { openStore, type Store } from '@gpumesh/store'
import { createTestDatabase, storeBackends } from '@gpumesh/testing'

// The stored ledger against the in-memory one (the same rules), on both databases: random sequences of
// deposits, holds, posts, voids, timeouts, replays and batches give the same results and the same totals,
// and `verify` agrees after every step. Concurrent spending from one account never overdraws it.

type Operation =
  | { kind: 'single' | 'pending'; from: number; to: number; amount: bigint; timeoutMs: number }
  | { kind: 'post' | 'void'; target: number; amount: bigint | undefined }
  | { kind: 'replay'; target: number; tamper: boolean }
  | { kind: 'tick'; ms: number }
  | { kind: 'batch'; size: number; failLast: boolean }

const operation: fc.Arbitrary<Operation> = fc.oneof(
  fc.record({
    kind: fc.constantFrom('single' as const, 'pending' as const),
    from: fc.nat(3),
    to: fc.nat(3),
    amount: fc.bigInt({ min: -2n, max: 300n }),
    timeoutMs: fc.constantFrom(0, 0, 400),
  }),
  fc.record({
    kind: fc.constantFrom('post' as const, 'void' as const),
    target: fc.nat(20),
    amount: fc.option(fc.bigInt({ min: 1n, max: 300n }), { nil: undefined }),
  }),
  fc.record({ kind: fc.constant('replay' as const), target: fc.nat(40), tamper: fc.boolean() }),
  fc.record({ kind: fc.constant('tick' as const), ms: fc.nat(500) }),
  fc.record({
    kind: fc.constant('batch' as const),
    size: fc.integer({ min: 2, max: 5 }),
    failLast: fc.boolean(),
  }),
)

for (const backend of storeBackends) {
  describe(`ledger on ${backend.name}`, () => {
    let store: Store
    let cleanup: () => Promise<void>
    before(async () => {
      ;({ store, cleanup } = await backend.open())
    })
    after(() => cleanup())

    it('matches the in-memory ledger step by step, and verifies after each', async () => {
      let run = 0
      let checkedSteps = 0
      await fc.assert(
        fc.asyncProperty(
          fc.array(operation, { minLength: 5, maxLength: 25, size: 'max' }),
          async (operations) => {
            run += 1
            const prefix = `r${run}${Math.random().toString(36).slice(2, 6)}`
            const specs: LedgerAccountSpec[] = [
              ledgerAccounts.settlement(),
              { ...ledgerAccounts.user(`${prefix}a`) },
              { ...ledgerAccounts.user(`${prefix}b`) },
              { ...ledgerAccounts.escrow(`${prefix}c`) },
            ]
            // The settlement account is shared by every run; each run gets its own copy of it in memory and
            // compares only its own accounts' totals (and the settlement's by difference).
            const memory = new MemoryLedger()
            memory.createAccounts(specs)
            await store.ledger.createAccounts(specs, 0)
            const settlementBefore = (await store.ledger.getAccounts([specs[0]!.id]))[0]!
            const accountIds = specs.map((spec) => spec.id)
            const sent: TransferRequest[] = []
            let nowMs = 1_000_000 * run
            let counter = 0
            const newId = () => `${prefix}-${(counter += 1)}`
            const single = (
              from: number,
              to: number,
              amount: bigint,
              kind: 'single' | 'pending',
              timeoutMs = 0,
            ) =>
              ({
                id: newId(),
                kind,
                debitAccountId: accountIds[from]!,
                creditAccountId: accountIds[to]!,
                amount,
                ...(kind === 'pending' && timeoutMs ? { timeoutMs } : {}),
                code: 'test',
              }) satisfies TransferRequest

            for (const op of operations) {
              let batch: TransferRequest[] = []
              if (op.kind === 'tick') {
                nowMs += op.ms
                const expiredHere = memory.expirePending(nowMs)
                // Only this run's pending transfers can expire in its time window (runs are 1,000 s apart).
                assert.equal(await store.ledger.expirePending(nowMs), expiredHere)
              } else if (op.kind === 'single' || op.kind === 'pending') {
                // Deposits mostly, so there is money to move.
                batch = [
                  single(
                    op.from === op.to ? 0 : op.from,
                    op.to === 0 ? 1 : op.to,
                    op.amount,
                    op.kind,
                    op.timeoutMs,
                  ),
                ]
              } else if (op.kind === 'post' || op.kind === 'void') {
                const pendings = sent.filter((request) => request.kind === 'pending')
                const target = pendings[op.target % Math.max(1, pendings.length)]
                if (target)
                  batch = [
                    {
                      id: newId(),
                      kind: op.kind,
                      pendingId: target.id,
                      ...(op.amount === undefined || op.kind === 'void' ? {} : { amount: op.amount }),
                      code: 'test',
                    },
                  ]
              } else if (op.kind === 'replay') {
                const target = sent[op.target % Math.max(1, sent.length)]
                if (target) batch = [op.tamper ? { ...target, reference: 'tampered' } : target]
              } else if (op.kind === 'batch') {
                batch = Array.from({ length: op.size }, (_, index) =>
                  single(0, 1 + (index % 3), 10n, 'single'),
                )
                if (op.failLast) batch.push(single(1, 2, 10n ** 15n, 'single'))
              }
              if (batch.length === 0) continue
              const expected = memory.createTransfers(batch, nowMs)
              const actual = await store.ledger.createTransfers(batch, nowMs)
              assert.deepEqual(actual, expected)
              expected.forEach((result, index) => {
                if (result === 'ok') sent.push(batch[index]!)
              })
              const stored = await store.ledger.getAccounts(accountIds.slice(1))
              for (const account of stored) {
                const inMemory = memory.accounts.get(account.id)!
                assert.deepEqual(account, inMemory, `${account.id} totals`)
                assert.ok(available(account) >= 0n)
              }
              const settlementNow = (await store.ledger.getAccounts([specs[0]!.id]))[0]!
              const settlementInMemory = memory.accounts.get(specs[0]!.id)!
              assert.equal(
                settlementNow.creditsPosted - settlementNow.debitsPosted,
                settlementBefore.creditsPosted -
                  settlementBefore.debitsPosted +
                  settlementInMemory.creditsPosted -
                  settlementInMemory.debitsPosted,
              )
              checkedSteps += 1
            }
            // Leave nothing of this run to expire in a later run's window.
            nowMs += 100_000
            assert.equal(await store.ledger.expirePending(nowMs), memory.expirePending(nowMs))
            const verification = await store.ledger.verify()
            assert.ok(
              verification.ok,
              JSON.stringify(verification, (_, value) => (typeof value === 'bigint' ? String(value) : value)),
            )
          },
        ),
        { numRuns: backend.name === 'pglite' ? 25 : 15 },
      )
      assert.ok(checkedSteps > 50, `${checkedSteps} steps checked`)
    })
  })
}

describe('ledger under concurrent spending on PostgreSQL', () => {
  const stores: Store[] = []
  let drop: () => Promise<void>
  before(async () => {
    const database = await createTestDatabase()
    drop = database.drop
    // One after another: each runs the migrations check at open.
    for (let index = 0; index < 4; index += 1)
      stores.push(await openStore({ kind: 'postgres', connectionString: database.connectionString }))
  })
  after(async () => {
    for (const store of stores) await store.close()
    await drop?.()
  })

  it('never overdraws an account, whatever the interleaving, and still verifies', async () => {
    const payer = ledgerAccounts.user('payer')
    const payees = Array.from({ length: 8 }, (_, index) => ledgerAccounts.earnings(`payee${index}`))
    await stores[0]!.ledger.createAccounts([ledgerAccounts.settlement(), payer, ...payees], 0)
    const [deposited] = await stores[0]!.ledger.createTransfers(
      [
        {
          id: 'deposit',
          kind: 'single',
          debitAccountId: 'external:settlement',
          creditAccountId: payer.id,
          amount: 1_000n,
          code: 'deposit',
        },
      ],
      0,
    )
    assert.equal(deposited, 'ok')
    // 80 spends of 30 from 1,000: exactly 33 can succeed, from 4 connections at once, some in batches, some held.
    const attempts = Array.from({ length: 80 }, (_, index) => {
      const store = stores[index % stores.length]!
      const request: TransferRequest = {
        id: `spend-${index}`,
        kind: index % 5 === 0 ? 'pending' : 'single',
        debitAccountId: payer.id,
        creditAccountId: payees[index % payees.length]!.id,
        amount: 30n,
        code: 'spend',
      }
      return store.ledger.createTransfers([request], 1).then(([result]) => ({ request, result }))
    })
    const outcomes = await Promise.all(attempts)
    const succeeded = outcomes.filter((outcome) => outcome.result === 'ok')
    assert.ok(outcomes.every((outcome) => outcome.result === 'ok' || outcome.result === 'exceeds_credits'))
    assert.equal(succeeded.length, 33)
    const [account] = await stores[0]!.ledger.getAccounts([payer.id])
    assert.equal(available(account!), 1_000n - 33n * 30n)
    const verification = await stores[1]!.ledger.verify()
    assert.ok(verification.ok)
    assert.equal(verification.transfers, 34)
  })
})
