import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import fc from 'fast-check'
import {
  ChainWithdrawalFailedError,
  createChainSettlement,
  HoldRefused,
  loadVaultKey,
  type ChainSettlement,
} from '@gpumesh/coordinator'
import { available, ledgerAccounts } from '@gpumesh/ledger'
import { openStore, type Store } from '@gpumesh/store'
import {
  createLiteSvmChain,
  createTestDatabase,
  systemClock,
  writeVaultKeyFile,
  type LiteSvmChain,
  type TestDatabase,
} from '@gpumesh/testing'
import { generateKeyPairSigner, type KeyPairSigner } from '@solana/kit'

// Random sequences of deposits (some reported twice) and withdrawals (some reusing a request id, some
// failing on chain, lost, or crashing after the send and settled by a restarted adapter): after every step
// the ledger and the chain agree (`verify`) and each wallet holds what a plain model says it should.
// Bounded (runs × steps) to keep CI time small; a failure prints its seed.

type Step =
  | { kind: 'deposit'; account: number; units: bigint; reportTwice: boolean }
  | {
      kind: 'withdraw'
      account: number
      units: bigint
      request: number
      fault: 'none' | 'fail' | 'lost' | 'crash_after_send'
    }

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({
    kind: fc.constant('deposit' as const),
    account: fc.integer({ min: 0, max: 2 }),
    units: fc.bigInt({ min: 1n, max: 5_000_000n }),
    reportTwice: fc.boolean(),
  }),
  fc.record({
    kind: fc.constant('withdraw' as const),
    account: fc.integer({ min: 0, max: 2 }),
    units: fc.bigInt({ min: 1n, max: 1_500_000n }),
    request: fc.integer({ min: 0, max: 3 }),
    fault: fc.constantFrom(
      'none' as const,
      'none' as const,
      'fail' as const,
      'lost' as const,
      'crash_after_send' as const,
    ),
  }),
)

describe('ledger and chain stay equal over random deposits and withdrawals (LiteSVM)', () => {
  let directory: string
  let database: TestDatabase
  let store: Store
  let chain: LiteSvmChain
  let settlement: ChainSettlement
  let vaultKeyFile: string
  let payer: KeyPairSigner
  before(async () => {
    directory = await mkdtemp(join(tmpdir(), 'gpumesh-chain-prop-'))
    database = await createTestDatabase()
    store = await openStore({ kind: 'postgres', connectionString: database.connectionString })
    chain = await createLiteSvmChain()
    const key = await writeVaultKeyFile(directory)
    vaultKeyFile = key.path
    chain.fundFees(key.signer.address)
    settlement = await createChainSettlement(
      { store, rpc: chain.rpc, clock: systemClock },
      {
        mint: chain.mint,
        vault: await loadVaultKey(vaultKeyFile),
        commitment: 'confirmed',
        pollIntervalMs: 0,
      },
    )
    await settlement.open()
    payer = (await chain.wallet(10n ** 15n)).signer
  })
  after(async () => {
    await store?.close()
    await database?.drop()
    await rm(directory, { recursive: true, force: true })
  })

  it('verify passes and every wallet matches the model after each step', async (t) => {
    let run = 0
    const seen = { deposits: 0, paid: 0, refusedOrVoided: 0 }
    const recipient = await generateKeyPairSigner()
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 12 }), async (steps) => {
        run += 1
        const accounts = [0, 1, 2].map((index) => `prop-${run}-${index}`)
        const model = new Map<string, bigint>(accounts.map((account) => [account, 0n]))
        const usedRequests = new Set<string>()
        for (const current of steps) {
          const accountId = accounts[current.account]!
          if (current.kind === 'deposit') {
            const address = await settlement.depositAddress(accountId)
            const signature = await chain.transfer(payer, address, current.units)
            await settlement.creditDeposit(signature)
            if (current.reportTwice) await settlement.creditDeposit(signature)
            model.set(accountId, model.get(accountId)! + current.units)
            seen.deposits += 1
          } else {
            const transferId = `withdraw:${accountId}:r${current.request}`
            // A refused hold leaves no transfer behind, so its request id is still free; a held one is spent.
            const fresh = !usedRequests.has(transferId)
            const affordable = current.units <= model.get(accountId)!
            if (fresh && affordable) usedRequests.add(transferId)
            if (current.fault === 'fail') chain.faults.failNextTransactions = 1
            if (current.fault === 'lost') chain.faults.loseSends = true
            if (current.fault === 'crash_after_send')
              chain.faults.afterSend = () => {
                throw new Error('crash')
              }
            try {
              await settlement.withdrawTo({
                accountId,
                amountUnits: current.units,
                transferId,
                reference: 'withdrawal',
                nowMs: Date.now(),
                destination: recipient.address,
              })
            } catch (error) {
              const expected =
                error instanceof HoldRefused ||
                error instanceof ChainWithdrawalFailedError ||
                (error as Error).message === 'crash'
              if (!expected) throw error
            } finally {
              chain.faults.failNextTransactions = 0
              chain.faults.loseSends = false
              chain.faults.afterSend = null
            }
            if (current.fault === 'crash_after_send') {
              // A restarted coordinator settles what the crash left.
              const restarted = await createChainSettlement(
                { store, rpc: chain.rpc, clock: systemClock },
                {
                  mint: chain.mint,
                  vault: await loadVaultKey(vaultKeyFile),
                  commitment: 'confirmed',
                  pollIntervalMs: 0,
                },
              )
              await restarted.resume()
            }
            const pays =
              fresh && affordable && (current.fault === 'none' || current.fault === 'crash_after_send')
            if (pays) model.set(accountId, model.get(accountId)! - current.units)
            if (pays) seen.paid += 1
            else seen.refusedOrVoided += 1
          }
          const verification = await settlement.verify()
          assert.equal(
            verification.ok,
            true,
            `after ${JSON.stringify(current, (_, v) => (typeof v === 'bigint' ? String(v) : v))}: ${JSON.stringify(verification.mismatches, (_, v) => (typeof v === 'bigint' ? String(v) : v))}`,
          )
          assert.equal(verification.chainUnits, verification.ledgerUnits)
          const held = await store.ledger.getAccounts(
            accounts.map((account) => ledgerAccounts.user(account).id),
          )
          for (const account of held)
            assert.equal(available(account), model.get(account.id.replace(/^user:/, '')), account.id)
        }
        assert.equal((await store.ledger.verify()).ok, true)
      }),
      { numRuns: 40, seed: Number(process.env['GPUMESH_PROPERTY_SEED'] ?? Date.now() % 2 ** 31) },
    )
    t.diagnostic(`steps: ${JSON.stringify(seen)}`)
    assert.ok(seen.deposits > 0 && seen.paid > 0, 'the runs paid something in and out')
  })
})
