import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import {
  ChainDepositError,
  ChainUnavailableError,
  ChainWithdrawalFailedError,
  createChainSettlement,
  loadVaultKey,
  type ChainCommitment,
  type ChainSettlement,
} from '@gpumesh/coordinator'
import { ValidationError } from '@gpumesh/core'
import { available, ledgerAccounts } from '@gpumesh/ledger'
import { openStore, type Store } from '@gpumesh/store'
import {
  createLiteSvmChain,
  createTestDatabase,
  systemClock,
  writeVaultKeyFile,
  type LiteSvmChain,
} from '@gpumesh/testing'
import { generateKeyPairSigner } from '@solana/kit'

// The chain settlement adapter against LiteSVM, which runs the real SPL Token program: deposits credited
// once, withdrawals paid once to the right address, failures voided, the ledger and the chain equal.

const gmt = (text: string) => BigInt(Math.round(Number(text) * 1e6))
let directory: string
before(async () => {
  directory = await mkdtemp(join(tmpdir(), 'gpumesh-chain-'))
})
after(async () => {
  await rm(directory, { recursive: true, force: true })
})

type Setup = { chain: LiteSvmChain; store: Store; settlement: ChainSettlement; vaultKeyFile: string }

async function setup(commitment: ChainCommitment = 'confirmed', store?: Store): Promise<Setup> {
  const chain = await createLiteSvmChain()
  const { path } = await writeVaultKeyFile(directory)
  const vault = await loadVaultKey(path)
  chain.fundFees(vault.address)
  const opened = store ?? (await openPostgresStore())
  const settlement = await createChainSettlement(
    { store: opened, rpc: chain.rpc, clock: systemClock },
    { mint: chain.mint, vault, commitment, pollIntervalMs: 0, confirmWaitMs: 5_000 },
  )
  await settlement.open()
  return { chain, store: opened, settlement, vaultKeyFile: path }
}

// PostgreSQL: on this shared machine a fresh PGlite takes ~25 s to migrate, PostgreSQL ~2 s; the chain store's
// SQL is plain PostgreSQL that PGlite runs as well.
const databases: (() => Promise<void>)[] = []
after(async () => {
  for (const drop of databases) await drop()
})
async function openPostgresStore(): Promise<Store> {
  const database = await createTestDatabase()
  databases.push(() => database.drop())
  return openStore({ kind: 'postgres', connectionString: database.connectionString })
}

async function balanceOf(store: Store, accountId: string) {
  const [account] = await store.ledger.getAccounts([ledgerAccounts.user(accountId).id])
  return account ? available(account) : 0n
}

describe('chain settlement on LiteSVM', () => {
  it('credits a deposit once, however often it is reported, and sweeps it into the vault', async () => {
    const { chain, store, settlement } = await setup()
    try {
      const depositAddress = await settlement.depositAddress('acct-a')
      assert.equal(await settlement.depositAddress('acct-a'), depositAddress, 'one address per account')
      assert.notEqual(await settlement.depositAddress('acct-b'), depositAddress)
      const { signer } = await chain.wallet(gmt('10'))
      const signature = await chain.transfer(signer, depositAddress, gmt('2.5'))
      const first = await settlement.creditDeposit(signature)
      const second = await settlement.creditDeposit(signature)
      assert.equal(first.status, 'credited')
      assert.equal(second.status, 'credited')
      if (first.status !== 'credited' || second.status !== 'credited') return
      assert.equal(first.credits[0]!.newlyCredited, true)
      assert.equal(second.credits[0]!.newlyCredited, false)
      assert.equal(await balanceOf(store, 'acct-a'), gmt('2.5'))
      assert.equal(chain.tokenBalance(depositAddress), 0n, 'swept')
      assert.equal(chain.tokenBalance(settlement.vaultAddress), gmt('2.5'))
      const [transfer] = await store.ledger.listTransfersById([first.credits[0]!.transferId])
      assert.equal(transfer!.reference, signature)
      const verification = await settlement.verify()
      assert.equal(
        verification.ok,
        true,
        JSON.stringify(verification.mismatches, (_, v) => String(v)),
      )
      assert.equal(verification.ledgerUnits, gmt('2.5'))
      assert.equal(verification.chainUnits, gmt('2.5'))
    } finally {
      await store.close()
    }
  })

  it('credits only after the configured commitment', async () => {
    const { chain, store, settlement } = await setup('finalized')
    try {
      const depositAddress = await settlement.depositAddress('acct-a')
      const { signer } = await chain.wallet(gmt('1'))
      chain.autoAdvance = false
      const signature = await chain.transfer(signer, depositAddress, gmt('1'))
      chain.advance(5)
      assert.deepEqual(await settlement.creditDeposit(signature), { status: 'unconfirmed' })
      assert.equal(await balanceOf(store, 'acct-a'), 0n)
      chain.advance(40)
      chain.autoAdvance = true
      assert.equal((await settlement.creditDeposit(signature)).status, 'credited')
      assert.equal(await balanceOf(store, 'acct-a'), gmt('1'))
    } finally {
      await store.close()
    }
  })

  it('refuses a transaction that pays no deposit address, and an RPC that answers garbage; nothing is credited', async () => {
    const { chain, store, settlement } = await setup()
    try {
      await settlement.depositAddress('acct-a')
      const { signer } = await chain.wallet(gmt('3'))
      const stranger = await chain.wallet(0n)
      const signature = await chain.transfer(signer, stranger.tokenAccount, gmt('1'))
      await assert.rejects(settlement.creditDeposit(signature), ChainDepositError)
      await assert.rejects(settlement.creditDeposit('not-a-signature'), ValidationError)
      const depositAddress = await settlement.depositAddress('acct-a')
      const paid = await chain.transfer(signer, depositAddress, gmt('1'))
      for (const fault of ['garbage', 'timeout'] as const) {
        chain.faults.rpc = fault
        await assert.rejects(settlement.creditDeposit(paid), ChainUnavailableError)
      }
      chain.faults.rpc = 'ok'
      assert.equal(await balanceOf(store, 'acct-a'), 0n)
      const verification = await settlement.verify()
      assert.equal(verification.ok, false, 'an uncredited deposit is a mismatch')
      assert.equal(verification.mismatches[0]!.kind, 'deposit_address')
      assert.equal(verification.mismatches[0]!.chainUnits, gmt('1'))
      await settlement.creditDeposit(paid)
      assert.equal((await settlement.verify()).ok, true)
    } finally {
      await store.close()
    }
  })

  it('pays a withdrawal once, to the right address, even when the same request comes again', async () => {
    const { chain, store, settlement } = await setup()
    try {
      const depositAddress = await settlement.depositAddress('acct-a')
      const { signer } = await chain.wallet(gmt('10'))
      await settlement.creditDeposit(await chain.transfer(signer, depositAddress, gmt('5')))
      const recipient = await generateKeyPairSigner()
      const request = {
        accountId: 'acct-a',
        amountUnits: gmt('1.5'),
        transferId: 'withdraw:acct-a:r1',
        reference: 'withdrawal',
        nowMs: Date.now(),
        destination: recipient.address,
      }
      const paid = await settlement.withdrawTo(request)
      assert.equal(paid.state, 'landed')
      const again = await settlement.withdrawTo(request)
      assert.equal(again.signature, paid.signature, 'the same request is the same transaction')
      assert.equal(chain.tokenBalance(await chain.tokenAccountOf(recipient.address)), gmt('1.5'))
      assert.equal(await balanceOf(store, 'acct-a'), gmt('3.5'))
      assert.equal(chain.tokenBalance(settlement.vaultAddress), gmt('3.5'))
      assert.equal(await store.ledger.pendingState('withdraw:acct-a:r1'), 'posted')
      assert.equal((await settlement.verify()).ok, true)
    } finally {
      await store.close()
    }
  })

  it('refuses bad withdrawals with nothing changed: malformed address, more than the balance', async () => {
    const { chain, store, settlement } = await setup()
    try {
      const depositAddress = await settlement.depositAddress('acct-a')
      const { signer } = await chain.wallet(gmt('10'))
      await settlement.creditDeposit(await chain.transfer(signer, depositAddress, gmt('2')))
      const base = { accountId: 'acct-a', reference: 'withdrawal', nowMs: Date.now() }
      await assert.rejects(
        settlement.withdrawTo({
          ...base,
          amountUnits: 1n,
          transferId: 'withdraw:acct-a:bad',
          destination: 'nope',
        }),
        ValidationError,
      )
      await assert.rejects(
        settlement.withdrawTo({
          ...base,
          amountUnits: 1n,
          transferId: 'withdraw:acct-a:vault',
          destination: settlement.vaultAddress,
        }),
        ValidationError,
      )
      const recipient = await generateKeyPairSigner()
      assert.equal(
        await settlement.withdraw({
          ...base,
          amountUnits: gmt('3'),
          transferId: 'withdraw:acct-a:big',
          destination: recipient.address,
        }),
        'exceeds_credits',
      )
      assert.equal(await balanceOf(store, 'acct-a'), gmt('2'))
      assert.equal(chain.tokenBalance(await chain.tokenAccountOf(recipient.address)), null)
      assert.equal((await settlement.verify()).ok, true)
    } finally {
      await store.close()
    }
  })

  it('voids a withdrawal that fails on chain or expires unseen: the funds come back', async () => {
    const { chain, store, settlement } = await setup()
    try {
      const depositAddress = await settlement.depositAddress('acct-a')
      const { signer } = await chain.wallet(gmt('10'))
      await settlement.creditDeposit(await chain.transfer(signer, depositAddress, gmt('4')))
      const recipient = await generateKeyPairSigner()
      const base = {
        accountId: 'acct-a',
        reference: 'withdrawal',
        nowMs: Date.now(),
        destination: recipient.address,
      }
      chain.faults.failNextTransactions = 1
      await assert.rejects(
        settlement.withdrawTo({ ...base, amountUnits: gmt('1'), transferId: 'withdraw:acct-a:f1' }),
        ChainWithdrawalFailedError,
      )
      assert.equal(await store.ledger.pendingState('withdraw:acct-a:f1'), 'voided')
      chain.faults.loseSends = true
      await assert.rejects(
        settlement.withdrawTo({ ...base, amountUnits: gmt('1'), transferId: 'withdraw:acct-a:lost' }),
        (error: unknown) =>
          error instanceof ChainWithdrawalFailedError && error.details['state'] === 'expired',
      )
      chain.faults.loseSends = false
      assert.equal(await balanceOf(store, 'acct-a'), gmt('4'))
      // The request id is spent: asking again pays nothing and says so.
      await assert.rejects(
        settlement.withdrawTo({ ...base, amountUnits: gmt('1'), transferId: 'withdraw:acct-a:lost' }),
        ChainWithdrawalFailedError,
      )
      assert.equal(chain.tokenBalance(await chain.tokenAccountOf(recipient.address)), null)
      assert.equal((await settlement.verify()).ok, true)
    } finally {
      await store.close()
    }
  })

  it('after a crash between sending and confirming, a restarted adapter finds the payment on chain', async () => {
    const { chain, store, settlement, vaultKeyFile } = await setup()
    try {
      const depositAddress = await settlement.depositAddress('acct-a')
      const { signer } = await chain.wallet(gmt('10'))
      await settlement.creditDeposit(await chain.transfer(signer, depositAddress, gmt('6')))
      const recipient = await generateKeyPairSigner()
      const request = {
        accountId: 'acct-a',
        amountUnits: gmt('2'),
        transferId: 'withdraw:acct-a:crash',
        reference: 'withdrawal',
        nowMs: Date.now(),
        destination: recipient.address,
      }
      // Crash right after the transaction left: it lands, the coordinator never sees it confirmed.
      chain.faults.afterSend = () => {
        throw new Error('SIGKILL')
      }
      await assert.rejects(settlement.withdrawTo(request), /SIGKILL/)
      chain.faults.afterSend = null
      assert.equal(await store.ledger.pendingState(request.transferId), 'pending')
      const verifyBefore = await store.chain.withdrawalsInFlight()
      assert.deepEqual(verifyBefore, { count: 1, amount: gmt('2') })
      const restarted = await createChainSettlement(
        { store, rpc: chain.rpc, clock: systemClock },
        {
          mint: chain.mint,
          vault: await loadVaultKey(vaultKeyFile),
          commitment: 'confirmed',
          pollIntervalMs: 0,
        },
      )
      assert.equal(await restarted.resume(), 1)
      assert.equal(await store.ledger.pendingState(request.transferId), 'posted')
      assert.equal((await restarted.withdrawTo(request)).state, 'landed')
      assert.equal(chain.tokenBalance(await chain.tokenAccountOf(recipient.address)), gmt('2'), 'paid once')
      // Crash before the bytes left: the restarted adapter sends the stored bytes, not a new transaction.
      chain.faults.beforeSend = () => {
        throw new Error('SIGKILL')
      }
      await assert.rejects(
        settlement.withdrawTo({ ...request, transferId: 'withdraw:acct-a:crash2' }),
        /SIGKILL/,
      )
      chain.faults.beforeSend = null
      await restarted.resume()
      await restarted.resume()
      assert.equal(await store.ledger.pendingState('withdraw:acct-a:crash2'), 'posted')
      assert.equal(chain.tokenBalance(await chain.tokenAccountOf(recipient.address)), gmt('4'))
      assert.equal(await balanceOf(store, 'acct-a'), gmt('2'))
      assert.equal((await restarted.verify()).ok, true)
    } finally {
      await store.close()
    }
  })

  it('refuses a vault key file that others can read', async () => {
    const { path } = await writeVaultKeyFile(directory, 0o644)
    await assert.rejects(loadVaultKey(path), /readable by others/)
  })
})

describe('chain settlement, two coordinators on one PostgreSQL store', () => {
  it('credits a deposit reported by both once, and pays one withdrawal request once', async () => {
    const database = await createTestDatabase()
    const first = await openStore({ kind: 'postgres', connectionString: database.connectionString })
    const second = await openStore({ kind: 'postgres', connectionString: database.connectionString })
    try {
      const { chain, settlement, vaultKeyFile } = await setup('confirmed', first)
      const other = await createChainSettlement(
        { store: second, rpc: chain.rpc, clock: systemClock },
        {
          mint: chain.mint,
          vault: await loadVaultKey(vaultKeyFile),
          commitment: 'confirmed',
          pollIntervalMs: 0,
        },
      )
      const depositAddress = await settlement.depositAddress('acct-a')
      assert.equal(await other.depositAddress('acct-a'), depositAddress)
      const { signer } = await chain.wallet(gmt('10'))
      const signature = await chain.transfer(signer, depositAddress, gmt('3'))
      const outcomes = await Promise.all([
        settlement.creditDeposit(signature),
        other.creditDeposit(signature),
      ])
      const fresh = outcomes.flatMap((outcome) =>
        outcome.status === 'credited' ? outcome.credits.filter((credit) => credit.newlyCredited) : [],
      )
      assert.equal(fresh.length, 1)
      assert.equal(await balanceOf(first, 'acct-a'), gmt('3'))
      assert.equal(chain.tokenBalance(settlement.vaultAddress), gmt('3'))
      const recipient = await generateKeyPairSigner()
      const request = {
        accountId: 'acct-a',
        amountUnits: gmt('1'),
        transferId: 'withdraw:acct-a:both',
        reference: 'withdrawal',
        nowMs: Date.now(),
        destination: recipient.address,
      }
      await Promise.all([settlement.withdrawTo(request), other.withdrawTo(request)])
      assert.equal(chain.tokenBalance(await chain.tokenAccountOf(recipient.address)), gmt('1'))
      assert.equal(await balanceOf(second, 'acct-a'), gmt('2'))
      assert.equal((await other.verify()).ok, true)
    } finally {
      await first.close()
      await second.close()
      await database.drop()
    }
  })
})
