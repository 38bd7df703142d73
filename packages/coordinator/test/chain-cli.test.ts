import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { Coordinator } from '@gpumesh/coordinator'
import { openStore, type Store } from '@gpumesh/store'
import {
  apiCaller,
  createLiteSvmChain,
  createTestDatabase,
  insertOperatorKey,
  runCli,
  startTestCoordinator,
  writeVaultKeyFile,
  type LiteSvmChain,
  type TestDatabase,
} from '@gpumesh/testing'
import { generateKeyPairSigner } from '@solana/kit'

// A coordinator settling GMT on chain (LiteSVM behind the RPC seam), driven through the gpumesh CLI:
// `wallet deposit --chain` waits for the credit, `wallet withdraw --to` pays once, `ledger verify --chain`.

describe('gpumesh wallet and ledger on a chain-settled coordinator', () => {
  let directory: string
  let database: TestDatabase
  let store: Store
  let chain: LiteSvmChain
  let coordinator: Coordinator
  let baseUrl: string
  let key: string
  before(async () => {
    directory = await mkdtemp(join(tmpdir(), 'gpumesh-chain-cli-'))
    database = await createTestDatabase()
    store = await openStore({ kind: 'postgres', connectionString: database.connectionString })
    chain = await createLiteSvmChain()
    const vault = await writeVaultKeyFile(directory)
    chain.fundFees(vault.signer.address)
    coordinator = await startTestCoordinator(store, {
      chain: {
        rpcUrl: 'http://127.0.0.1:1',
        mint: chain.mint,
        vaultKeyFile: vault.path,
        commitment: 'confirmed',
        resumeIntervalMs: 200,
      },
      chainRpc: chain.rpc,
    })
    baseUrl = await coordinator.listen()
    key = await insertOperatorKey(store)
  })
  after(async () => {
    await coordinator?.stop()
    await store?.close()
    await database?.drop()
    await rm(directory, { recursive: true, force: true })
  })

  it('deposit --chain prints the address and returns once the transfer is credited', async () => {
    const api = apiCaller(() => baseUrl)
    const { body: target } = await api('GET', '/v1/wallet/deposit-address', key)
    const waiting = runCli(baseUrl, key, ['wallet', 'deposit', '--chain', '--timeout', '45'])
    const { signer } = await chain.wallet(10_000_000n)
    await chain.transfer(signer, target.address, 4_000_000n)
    const run = await waiting
    assert.equal(run.code, 0, run.stderr)
    assert.match(run.stdout, new RegExp(target.address))
    assert.match(run.stdout, /credited 4\.000000 GMT \(signature \w+\)/)
    assert.match(run.stdout, /balance 4\.000000 GMT/)
  })

  it('withdraw --to pays once per request id; bad input is refused with nothing changed', async () => {
    const recipient = await generateKeyPairSigner()
    const args = [
      'wallet',
      'withdraw',
      '--amount',
      '1.5',
      '--to',
      recipient.address,
      '--request-id',
      'req-000001',
    ]
    const first = await runCli(baseUrl, key, args)
    assert.equal(first.code, 0, first.stderr)
    assert.match(first.stdout, /signature \w+/)
    const again = await runCli(baseUrl, key, args)
    assert.equal(again.code, 0, again.stderr)
    assert.equal(chain.tokenBalance(await chain.tokenAccountOf(recipient.address)), 1_500_000n)
    assert.match(again.stdout, /balance 2\.500000 GMT/)

    const api = apiCaller(() => baseUrl)
    const tooFine = await api('POST', '/v1/wallet/withdraw', key, {
      amountGmt: '0.0000001',
      to: recipient.address,
    })
    assert.equal(tooFine.status, 400)
    const badAddress = await runCli(baseUrl, key, [
      'wallet',
      'withdraw',
      '--amount',
      '1',
      '--to',
      'not-an-address',
    ])
    assert.equal(badAddress.code, 2)
    const tooMuch = await runCli(baseUrl, key, [
      'wallet',
      'withdraw',
      '--amount',
      '100',
      '--to',
      recipient.address,
    ])
    assert.notEqual(tooMuch.code, 0)
    assert.match(tooMuch.stderr, /INSUFFICIENT_FUNDS|not enough GMT/)
    assert.equal(chain.tokenBalance(await chain.tokenAccountOf(recipient.address)), 1_500_000n)
  })

  it('ledger verify --chain agrees, and lists a deposit nobody reported', async () => {
    const ok = await runCli(baseUrl, key, ['ledger', 'verify', '--chain'])
    assert.equal(ok.code, 0, ok.stderr + ok.stdout)
    assert.match(
      ok.stdout,
      /ledger and chain agree: the ledger says 2\.500000 GMT, the chain holds 2\.500000 GMT/,
    )
    const api = apiCaller(() => baseUrl)
    const { body: target } = await api('GET', '/v1/wallet/deposit-address', key)
    const { signer } = await chain.wallet(1_000_000n)
    await chain.transfer(signer, target.address, 1_000_000n)
    const off = await runCli(baseUrl, key, ['ledger', 'verify', '--chain'])
    assert.equal(off.code, 1)
    assert.match(off.stdout, /LEDGER AND CHAIN DISAGREE/)
    assert.match(off.stdout, /deposit_address/)
  })
})
