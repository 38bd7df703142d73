import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import fc from 'fast-check'
import { InsufficientFundsError } from '@gpumesh/core'
import { available, balance, ledgerAccounts } from '@gpumesh/ledger'
import type { Store } from '@gpumesh/store'
import { ManualClock, storeBackends } from '@gpumesh/testing'
import Fastify from 'fastify'
import { createInferenceBilling, type Reservation } from '../src/serving/inference-billing.ts'

// Per-request inference payment against the real ledger: random sequences of reservations, completions,
// cancellations, settlements and idle time. Whatever the order, a caller is never allowed to reserve more than
// they have, is refused only when they truly cannot pay, and in the end has paid exactly the sum of their
// completed requests, split to the unit between the serving suppliers and the fee; no hold is left, the escrow
// is empty, every request has its receipt, and the ledger verifies.

const feeBasisPoints = 1_000
/** A logger that writes nothing: Fastify's own, with logging off. */
const silent = Fastify({ logger: false }).log

type Step =
  | { kind: 'reserve'; maxCharge: number }
  | { kind: 'complete'; index: number; share: number; device: number }
  | { kind: 'cancel'; index: number }
  | { kind: 'settle' }
  | { kind: 'idle'; ms: number }

const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('reserve' as const),
      maxCharge: fc.integer({ min: 1, max: 3_000_000 }),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('complete' as const),
      index: fc.nat(),
      share: fc.double({ min: 0, max: 1, noNaN: true }),
      device: fc.integer({ min: 0, max: 2 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('cancel' as const), index: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('settle' as const) }) },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('idle' as const), ms: fc.integer({ min: 0, max: 400_000 }) }),
  },
)

for (const backend of storeBackends) {
  describe(`inference billing on ${backend.name}`, () => {
    let store: Store
    let cleanup: () => Promise<void>
    let run = 0

    before(async () => {
      ;({ store, cleanup } = await backend.open())
      await store.ledger.createAccounts([ledgerAccounts.settlement(), ledgerAccounts.fee()], 0)
    })
    after(async () => cleanup?.())

    it('charges exactly what completed requests cost, never more than the caller has', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.integer({ min: 0, max: 12_000_000 }),
          fc.array(step, { maxLength: 40 }),
          async (deposit, steps) => {
            run += 1
            const clock = new ManualClock()
            const caller = `acc_caller${run}`
            const suppliers = [`acc_sa${run}`, `acc_sb${run}`, `acc_sc${run}`]
            await store.ledger.createAccounts([ledgerAccounts.user(caller)], clock.nowMs())
            if (deposit > 0)
              await store.ledger.createTransfers(
                [
                  {
                    id: `deposit-${backend.name}-${run}`,
                    kind: 'single',
                    debitAccountId: ledgerAccounts.settlement().id,
                    creditAccountId: ledgerAccounts.user(caller).id,
                    amount: BigInt(deposit),
                    code: 'deposit',
                  },
                ],
                clock.nowMs(),
              )
            const feeBefore = balance((await store.ledger.getAccounts([ledgerAccounts.fee().id]))[0]!)
            const billing = createInferenceBilling(
              { store, clock, log: silent },
              { feeBasisPoints, holdUnits: 1_000_000n, holdTimeoutMs: 3_600_000, idleReleaseMs: 300_000 },
            )
            const open: Reservation[] = []
            let outstanding = 0n
            let charged = 0n
            let completed = 0
            const perSupplier = new Map<string, bigint>()
            for (const action of steps) {
              if (action.kind === 'reserve') {
                const remaining = BigInt(deposit) - charged - outstanding
                try {
                  open.push(await billing.reserve(caller, BigInt(action.maxCharge)))
                  assert.ok(remaining >= BigInt(action.maxCharge), 'reserved more than the caller has')
                  outstanding += BigInt(action.maxCharge)
                } catch (error) {
                  assert.ok(error instanceof InsufficientFundsError, String(error))
                  assert.ok(remaining < BigInt(action.maxCharge), `refused though ${remaining} remained`)
                }
              } else if (action.kind === 'complete' || action.kind === 'cancel') {
                if (open.length === 0) continue
                const [reservation] = open.splice(action.index % open.length, 1)
                outstanding -= reservation!.maxChargeUnits
                if (action.kind === 'cancel') {
                  billing.cancel(reservation!)
                  continue
                }
                const amount = BigInt(Math.floor(Number(reservation!.maxChargeUnits) * action.share))
                completed += 1
                charged += amount
                const supplier = suppliers[action.device]!
                perSupplier.set(
                  supplier,
                  (perSupplier.get(supplier) ?? 0n) + amount - (amount * 1_000n) / 10_000n,
                )
                billing.complete(reservation!, {
                  id: `inf_${backend.name}${run}x${completed}`,
                  accountId: caller,
                  apiKeyId: 'key_test',
                  requestId: `req_${run}x${completed}`,
                  modelId: 'mdl_test',
                  model: 'tiny-chat:1.0.0',
                  endpoint: '/v1/completions',
                  deviceId: `dev_${action.device}`,
                  supplierAccountId: supplier,
                  promptTokens: 1,
                  completionTokens: 1,
                  inputPerMillionUnits: 1n,
                  outputPerMillionUnits: 1n,
                  amountUnits: amount,
                  createdAtMs: clock.nowMs(),
                })
              } else if (action.kind === 'settle') {
                await billing.settle()
              } else {
                clock.advanceMs(action.ms)
                await billing.settle()
              }
            }
            for (const reservation of open.splice(0)) billing.cancel(reservation)
            await billing.stop()

            const [wallet, escrow, fee] = await store.ledger.getAccounts(
              [
                ledgerAccounts.user(caller).id,
                ledgerAccounts.inferenceEscrow(caller).id,
                ledgerAccounts.fee().id,
              ].sort(),
            )
            const byId = new Map(
              [wallet, escrow, fee].filter(Boolean).map((account) => [account!.id, account!]),
            )
            const walletAccount = byId.get(ledgerAccounts.user(caller).id)!
            assert.equal(balance(walletAccount), BigInt(deposit) - charged)
            assert.equal(walletAccount.debitsPending, 0n, 'no hold is left')
            assert.equal(available(walletAccount), BigInt(deposit) - charged)
            const escrowAccount = byId.get(ledgerAccounts.inferenceEscrow(caller).id)
            if (escrowAccount) {
              assert.equal(balance(escrowAccount), 0n)
              assert.equal(escrowAccount.creditsPending, 0n)
            }
            const earnings = await store.ledger.getAccounts(
              suppliers.map((s) => ledgerAccounts.earnings(s).id),
            )
            let paidToSuppliers = 0n
            for (const account of earnings) {
              const supplier = account.id.slice('earnings:'.length)
              assert.equal(balance(account), perSupplier.get(supplier) ?? 0n)
              paidToSuppliers += balance(account)
            }
            const feeNow = balance(byId.get(ledgerAccounts.fee().id)!)
            assert.equal(feeNow - feeBefore + paidToSuppliers, charged)
            const receipts = await store.inference.listReceipts(caller, 500)
            assert.equal(receipts.length, completed)
            assert.equal(
              receipts.reduce((sum, receipt) => sum + receipt.amountUnits, 0n),
              charged,
            )
            // Every receipt traces to ledger transfers that exist, and names none for a request that cost nothing.
            const named = receipts.flatMap((receipt) =>
              [receipt.supplierTransferId, receipt.feeTransferId, receipt.holdPostTransferId].filter(
                (id): id is string => id !== null,
              ),
            )
            const found = new Set(
              (await store.ledger.listTransfersById([...new Set(named)])).map((t) => t.id),
            )
            for (const id of named)
              assert.ok(found.has(id), `receipt names transfer ${id}, which does not exist`)
            for (const receipt of receipts)
              if (receipt.amountUnits > 0n) assert.notEqual(receipt.supplierTransferId, null)
          },
        ),
        { numRuns: backend.name === 'pglite' ? 25 : 40 },
      )
      const verified = await store.ledger.verify()
      assert.equal(
        verified.ok,
        true,
        JSON.stringify(verified, (_k, v) => (typeof v === 'bigint' ? String(v) : v)),
      )
    })
  })
}
