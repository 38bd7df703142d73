import { createHash } from 'node:crypto'
import { ConflictError, formatGmtUnits, GpumeshError, ValidationError, type Clock } from '@gpumesh/core'
import { ledgerAccounts, type TransferRequest, type TransferResult } from '@gpumesh/ledger'
import type { OutgoingRecord, Store } from '@gpumesh/store'
import { createAddressWithSeed, isAddress, address, type KeyPairSigner } from '@solana/kit'
import type { SettlementAdapter, SettlementRequest } from '../settlement.ts'
import { ChainUnavailableError, commitmentRank, type ChainCommitment, type ChainRpc } from './rpc.ts'
import {
  decodeMintDecimals,
  decodeTokenAccount,
  depositAccountInstructions,
  signTransaction,
  sweepInstructions,
  tokenProgramAddress,
  tokenTransfersIn,
  vaultTokenAccount,
  withdrawalInstructions,
} from './transactions.ts'

// GMT as an SPL token on Solana, behind the settlement interface (docs/chain.md).
//
// Deposits: each account has its own deposit address, a token account the vault's key owns. A transaction
// that pays it is credited once it reaches the configured commitment, with the signature as the transfer's
// reference and `chain-deposit:<signature>:<instruction>` as its id, so a deposit reported twice, or by two
// coordinators on one database, is credited once. The credited amount is then swept into the vault.
//
// Withdrawals: a ledger hold, then a transaction signed by the vault's key whose bytes and signature are
// stored BEFORE it is sent. It is posted when the chain shows it landed, voided when it landed with an error
// or can no longer land (its blockhash expired unseen). After a crash `resume` asks the chain about each
// stored signature and resends the same bytes: one request id is one signature, so it can pay only once.

export const gmtDecimals = 6

export type ChainSettlementInit = {
  readonly mint: string
  readonly vault: KeyPairSigner
  /** A deposit or withdrawal counts once the chain reports it at this level; default finalized. */
  readonly commitment?: ChainCommitment
  /** How often a confirmation is polled; default 400 ms (a Solana slot). */
  readonly pollIntervalMs?: number
  /** How long a call waits for its own transaction before leaving it to `resume`; default 90 s. */
  readonly confirmWaitMs?: number
}

export type ChainSettlementComponents = {
  readonly store: Store
  readonly rpc: ChainRpc
  readonly clock: Clock
}

export type DepositCredit = {
  readonly accountId: string
  readonly depositAddress: string
  readonly amountUnits: bigint
  readonly transferId: string
  /** False when it had been credited before (a second report, or another coordinator). */
  readonly newlyCredited: boolean
}

export type DepositOutcome =
  | { readonly status: 'credited'; readonly credits: readonly DepositCredit[] }
  | { readonly status: 'unconfirmed' }

export type WithdrawalOutcome = {
  readonly transferId: string
  readonly signature: string
  readonly state: OutgoingRecord['state']
  readonly destination: string
}

export type ChainMismatch = {
  readonly kind: 'deposit_address' | 'vault' | 'withdrawal_in_flight'
  readonly address: string
  readonly accountId: string | null
  readonly ledgerUnits: bigint
  readonly chainUnits: bigint | null
  readonly detail: string
}

export type ChainVerification = {
  readonly ok: boolean
  readonly vaultAddress: string
  /** What the ledger says the network holds on chain: deposits credited minus withdrawals paid. */
  readonly ledgerUnits: bigint
  /** The vault's balance plus every deposit address's. */
  readonly chainUnits: bigint
  readonly vaultChainUnits: bigint
  readonly depositAddresses: number
  readonly mismatches: readonly ChainMismatch[]
}

export type ChainSettlement = SettlementAdapter & {
  readonly vaultAddress: string
  readonly mint: string
  readonly commitment: ChainCommitment
  /** Checks the mint (6 decimals) and creates the vault's token account when it is missing. */
  open(): Promise<void>
  depositAddress(accountId: string): Promise<string>
  creditDeposit(signature: string): Promise<DepositOutcome>
  /** Credits what the account's deposit address received lately and nobody reported yet. */
  scanDeposits(accountId: string): Promise<DepositOutcome>
  withdrawTo(request: SettlementRequest & { destination: string }): Promise<WithdrawalOutcome>
  /** Settles every stored transaction that is not final yet; returns how many became final. */
  resume(): Promise<number>
  verify(): Promise<ChainVerification>
}

/** A transaction a deposit names does not pay this network, or failed. Nothing was credited. */
export class ChainDepositError extends GpumeshError {
  readonly code = 'GPUMESH_ERR_CHAIN_DEPOSIT'
  readonly httpStatus = 409
}

/** A withdrawal's transaction failed on chain or expired unseen: the hold was voided, the funds are back. */
export class ChainWithdrawalFailedError extends GpumeshError {
  readonly code = 'GPUMESH_ERR_CHAIN_WITHDRAWAL_FAILED'
  readonly httpStatus = 409
}

/** Transactions a deposit scan looks back over, per address. */
const scanLimit = 50
const signaturePattern = /^[1-9A-HJ-NP-Za-km-z]{64,88}$/

/** The seed of an account's deposit address (at most 32 characters, as createAccountWithSeed allows). */
export function depositSeed(accountId: string): string {
  return `gm${createHash('sha256').update(accountId).digest('hex').slice(0, 30)}`
}

export function createChainSettlement(
  components: ChainSettlementComponents,
  init: ChainSettlementInit,
): Promise<ChainSettlement> {
  return vaultTokenAccount(init.vault.address, init.mint).then((vaultAddress) =>
    chainSettlement(components, init, vaultAddress),
  )
}

function chainSettlement(
  components: ChainSettlementComponents,
  init: ChainSettlementInit,
  vaultAddress: string,
): ChainSettlement {
  const { store, rpc, clock } = components
  const commitment = init.commitment ?? 'finalized'
  const pollIntervalMs = init.pollIntervalMs ?? 400
  const confirmWaitMs = init.confirmWaitMs ?? 90_000
  const chainVault = ledgerAccounts.chainVault()
  const reached = (level: ChainCommitment) => commitmentRank[level] >= commitmentRank[commitment]

  const sendAndRecord = async (
    record: Omit<
      OutgoingRecord,
      'signature' | 'wireBase64' | 'lastValidBlockHeight' | 'state' | 'resolvedAtMs'
    >,
    instructions: Parameters<typeof signTransaction>[2],
  ): Promise<OutgoingRecord> => {
    const existing = await store.chain.getOutgoing(record.id)
    if (existing) return existing
    const lifetime = await rpc.latestBlockhash()
    const signed = await signTransaction(init.vault, lifetime, instructions)
    // Stored before it is sent: after a crash from here on, the chain is asked about this signature.
    const stored = await store.chain.putOutgoing({
      ...record,
      ...signed,
      lastValidBlockHeight: lifetime.lastValidBlockHeight,
      state: 'signed',
      resolvedAtMs: null,
    })
    return stored
  }

  /** Makes a stored transaction final if the chain allows it now; returns its state. */
  const settleOnce = async (record: OutgoingRecord): Promise<OutgoingRecord['state']> => {
    if (record.state !== 'signed') return record.state
    const status = await rpc.signatureStatus(record.signature)
    if (status && reached(status.commitment)) return finish(record, status.failed ? 'failed' : 'landed')
    if (status) return 'signed'
    // Unseen: once the chain is past the blockhash's last valid height, these bytes can never land.
    if ((await rpc.blockHeight()) > record.lastValidBlockHeight) {
      if ((await rpc.signatureStatus(record.signature)) === null) return finish(record, 'expired')
      return 'signed'
    }
    // A refused send (preflight) is not final: the signature is asked about again until its blockhash expires.
    await rpc.sendTransaction(record.wireBase64)
    return 'signed'
  }

  const finish = async (record: OutgoingRecord, state: 'landed' | 'failed' | 'expired') => {
    const ledger: TransferRequest[] =
      record.kind !== 'withdrawal'
        ? []
        : state === 'landed'
          ? [
              {
                id: `${record.id}:post`,
                kind: 'post',
                pendingId: record.id,
                code: 'chain_withdrawal',
                reference: record.signature,
              },
            ]
          : [
              {
                id: `${record.id}:void`,
                kind: 'void',
                pendingId: record.id,
                code: `chain_withdrawal_${state}`,
                reference: record.signature,
              },
            ]
    await store.chain.resolveOutgoing(record.id, state, clock.nowMs(), ledger)
    return (await store.chain.getOutgoing(record.id))!.state
  }

  /** Sends and waits, up to confirmWaitMs, for a stored transaction to become final. */
  const settle = async (record: OutgoingRecord) => {
    const deadline = clock.nowMs() + confirmWaitMs
    for (;;) {
      const state = await settleOnce(record)
      if (state !== 'signed' || clock.nowMs() >= deadline) return state
      await clock.sleepMs(pollIntervalMs)
    }
  }

  const sweep = async (
    accountId: string,
    depositAddress: string,
    depositTransferId: string,
    amount: bigint,
  ) => {
    const record = await sendAndRecord(
      {
        id: `sweep:${depositTransferId}`,
        kind: 'sweep',
        accountId,
        source: depositAddress,
        destination: vaultAddress,
        amount,
        createdAtMs: clock.nowMs(),
      },
      await sweepInstructions({
        vault: init.vault,
        mint: init.mint,
        decimals: gmtDecimals,
        depositAddress,
        amount,
        memo: `sweep:${depositTransferId}`,
      }),
    )
    return settle(record)
  }

  /** Sends a one-off setup transaction (an account's creation) and waits until it is final. */
  const sendSetup = async (instructions: Parameters<typeof signTransaction>[2]) => {
    const lifetime = await rpc.latestBlockhash()
    const signed = await signTransaction(init.vault, lifetime, instructions)
    await rpc.sendTransaction(signed.wireBase64)
    const deadline = clock.nowMs() + confirmWaitMs
    while (clock.nowMs() < deadline) {
      const status = await rpc.signatureStatus(signed.signature)
      if (status && reached(status.commitment)) return !status.failed
      if (!status && (await rpc.blockHeight()) > lifetime.lastValidBlockHeight) return false
      await clock.sleepMs(pollIntervalMs)
    }
    return false
  }

  const tokenAccountReady = async (tokenAccount: string) => {
    const [account] = await rpc.getAccounts([tokenAccount])
    if (!account) return false
    const state = decodeTokenAccount(account.data)
    if (
      account.owner !== tokenProgramAddress ||
      state.mint !== init.mint ||
      state.owner !== init.vault.address
    )
      throw new ConflictError(`${tokenAccount} exists on chain but is not a GMT account of this vault`)
    return true
  }

  const adapter: ChainSettlement = {
    name: 'solana',
    vaultAddress,
    mint: init.mint,
    commitment,

    async open() {
      const [mint] = await rpc.getAccounts([init.mint])
      if (!mint || mint.owner !== tokenProgramAddress)
        throw new ValidationError([{ field: 'chain.mint', message: `${init.mint} is not an SPL token mint` }])
      const decimals = decodeMintDecimals(mint.data)
      if (decimals !== gmtDecimals)
        throw new ValidationError([
          { field: 'chain.mint', message: `the mint has ${decimals} decimals; GMT has ${gmtDecimals}` },
        ])
      await store.ledger.createAccounts([chainVault], clock.nowMs())
      if (await tokenAccountReady(vaultAddress)) return
      const { instructions } = await withdrawalInstructions({
        vault: init.vault,
        mint: init.mint,
        decimals: gmtDecimals,
        ownerAddress: init.vault.address,
        amount: 0n,
        memo: 'vault',
      })
      if (!(await sendSetup(instructions.slice(0, 1))) && !(await tokenAccountReady(vaultAddress)))
        throw new ChainUnavailableError(`could not create the vault's token account ${vaultAddress}`)
    },

    async depositAddress(accountId) {
      const known = await store.chain.getDepositAddress(accountId)
      const seed = known?.seed ?? depositSeed(accountId)
      const depositAddress =
        known?.address ??
        (await createAddressWithSeed({
          baseAddress: init.vault.address,
          programAddress: address(tokenProgramAddress),
          seed,
        }))
      if (!known)
        await store.chain.putDepositAddress({
          accountId,
          address: depositAddress,
          seed,
          createdAtMs: clock.nowMs(),
        })
      if (await tokenAccountReady(depositAddress)) return depositAddress
      const created = await sendSetup(
        depositAccountInstructions({
          vault: init.vault,
          mint: init.mint,
          depositAddress,
          seed,
          rentLamports: await rpc.rentExemptLamports(165),
        }),
      )
      // Another coordinator may have created it first; either way it must exist now.
      if (!created && !(await tokenAccountReady(depositAddress)))
        throw new ChainUnavailableError(`could not create the deposit address ${depositAddress}`)
      return depositAddress
    },

    async creditDeposit(signature) {
      if (!signaturePattern.test(signature))
        throw new ValidationError([{ field: 'signature', message: 'not a Solana transaction signature' }])
      const landed = await rpc.getTransaction(signature, commitment)
      if (!landed) return { status: 'unconfirmed' }
      if (landed.failed)
        throw new ChainDepositError(`transaction ${signature} failed on chain: nothing moved`)
      const transfers = tokenTransfersIn(landed.wireBase64)
      const known = new Map(
        (await store.chain.depositAddressesOf(transfers.map((transfer) => transfer.destination))).map(
          (record) => [record.address, record],
        ),
      )
      const ours = transfers.filter((transfer) => known.has(transfer.destination) && transfer.amount > 0n)
      if (ours.length === 0)
        throw new ChainDepositError(
          `transaction ${signature} pays no deposit address of this network: nothing was credited`,
        )
      await store.ledger.createAccounts([chainVault], clock.nowMs())
      const credits: DepositCredit[] = []
      for (const transfer of ours) {
        const { accountId } = known.get(transfer.destination)!
        const transferId = `chain-deposit:${signature}:${transfer.index}`
        await store.ledger.createAccounts([ledgerAccounts.user(accountId)], clock.nowMs())
        const result = await store.chain.creditDeposit(
          {
            signature,
            instructionIndex: transfer.index,
            accountId,
            address: transfer.destination,
            amount: transfer.amount,
            transferId,
            creditedAtMs: clock.nowMs(),
          },
          {
            id: transferId,
            kind: 'single',
            debitAccountId: chainVault.id,
            creditAccountId: ledgerAccounts.user(accountId).id,
            amount: transfer.amount,
            code: 'chain_deposit',
            reference: signature,
          },
        )
        if (result !== 'ok' && result !== 'exists')
          throw new ChainDepositError(`the ledger refused deposit ${transferId}: ${result}`)
        credits.push({
          accountId,
          depositAddress: transfer.destination,
          amountUnits: transfer.amount,
          transferId,
          newlyCredited: result === 'ok',
        })
        await sweep(accountId, transfer.destination, transferId, transfer.amount)
      }
      return { status: 'credited', credits }
    },

    async scanDeposits(accountId) {
      const known = await store.chain.getDepositAddress(accountId)
      if (!known) return { status: 'credited', credits: [] }
      const credits: DepositCredit[] = []
      let unconfirmed = false
      for (const signature of await rpc.signaturesFor(known.address, scanLimit)) {
        if ((await store.chain.listDeposits(signature)).length > 0) continue
        try {
          const outcome = await adapter.creditDeposit(signature)
          if (outcome.status === 'unconfirmed') unconfirmed = true
          else credits.push(...outcome.credits)
        } catch (error) {
          // Our own sweeps, the address's creation, failed transfers: they touch the address but pay nothing in.
          if (!(error instanceof ChainDepositError)) throw error
        }
      }
      return credits.length === 0 && unconfirmed ? { status: 'unconfirmed' } : { status: 'credited', credits }
    },

    async deposit() {
      throw new ConflictError(
        'on a chain-settled network GMT enters only by a deposit on chain (gpumesh wallet deposit --chain)',
      )
    },

    async withdraw(request) {
      if (request.destination === undefined)
        throw new ValidationError([
          { field: 'to', message: 'a withdrawal on chain needs a destination address' },
        ])
      try {
        await adapter.withdrawTo({ ...request, destination: request.destination })
        return 'ok'
      } catch (error) {
        if (error instanceof HoldRefused) return error.result
        throw error
      }
    },

    async withdrawTo(request) {
      if (!isAddress(request.destination))
        throw new ValidationError([{ field: 'to', message: 'not a Solana address (base58, 32 bytes)' }])
      if (request.destination === init.vault.address || request.destination === vaultAddress)
        throw new ValidationError([{ field: 'to', message: "that is the network's own vault" }])
      const user = ledgerAccounts.user(request.accountId)
      await store.ledger.createAccounts([user, chainVault], clock.nowMs())
      const hold = await store.ledger.createTransfers(
        [
          {
            id: request.transferId,
            kind: 'pending',
            debitAccountId: user.id,
            creditAccountId: chainVault.id,
            amount: request.amountUnits,
            code: 'chain_withdrawal',
            reference: request.destination,
          },
        ],
        clock.nowMs(),
      )
      if (hold[0] !== 'ok' && hold[0] !== 'exists') throw new HoldRefused(hold[0]!)
      const { destination, instructions } = await withdrawalInstructions({
        vault: init.vault,
        mint: init.mint,
        decimals: gmtDecimals,
        ownerAddress: request.destination,
        amount: request.amountUnits,
        memo: request.transferId,
      })
      const record = await sendAndRecord(
        {
          id: request.transferId,
          kind: 'withdrawal',
          accountId: request.accountId,
          source: vaultAddress,
          destination,
          amount: request.amountUnits,
          createdAtMs: clock.nowMs(),
        },
        instructions,
      )
      const state = await settle(record)
      if (state === 'failed' || state === 'expired')
        throw new ChainWithdrawalFailedError(
          `the withdrawal of ${formatGmtUnits(record.amount)} GMT ${state === 'failed' ? 'failed on chain' : 'expired before it landed'}; the funds are back in the wallet`,
          { signature: record.signature, state },
        )
      return { transferId: record.id, signature: record.signature, state, destination }
    },

    async resume() {
      let settled = 0
      for (const record of await store.chain.listUnresolved(1_000))
        if ((await settleOnce(record)) !== 'signed') settled += 1
      return settled
    },

    async verify() {
      await adapter.resume()
      const [vaultAccount] = await store.ledger.getAccounts([chainVault.id])
      const ledgerUnits = vaultAccount ? vaultAccount.debitsPosted - vaultAccount.creditsPosted : 0n
      const books = await store.chain.depositBooks()
      const onChain = await rpc.getAccounts([vaultAddress, ...books.map((book) => book.address)])
      const balance = (index: number) => {
        const account = onChain[index]
        return account ? decodeTokenAccount(account.data).amount : null
      }
      const mismatches: ChainMismatch[] = []
      let chainUnits = 0n
      let depositsExpected = 0n
      books.forEach((book, index) => {
        const chain = balance(index + 1)
        const expected = book.credited - book.sweptLanded
        chainUnits += chain ?? 0n
        depositsExpected += expected
        if (chain !== expected)
          mismatches.push({
            kind: 'deposit_address',
            address: book.address,
            accountId: book.accountId,
            ledgerUnits: expected,
            chainUnits: chain,
            detail:
              chain !== null && chain > expected
                ? `${formatGmtUnits(chain - expected)} GMT arrived that no deposit credited (report its signature)`
                : book.sweepsUnresolved > 0
                  ? 'a sweep into the vault is not final yet'
                  : 'the chain holds less than the ledger credited',
          })
      })
      const vaultChainUnits = balance(0) ?? 0n
      chainUnits += vaultChainUnits
      const vaultExpected = ledgerUnits - depositsExpected
      if (vaultChainUnits !== vaultExpected)
        mismatches.push({
          kind: 'vault',
          address: vaultAddress,
          accountId: null,
          ledgerUnits: vaultExpected,
          chainUnits: vaultChainUnits,
          detail: 'the vault balance differs from sweeps in minus withdrawals paid',
        })
      for (const record of await store.chain.listUnresolved(1_000))
        if (record.kind === 'withdrawal')
          mismatches.push({
            kind: 'withdrawal_in_flight',
            address: record.destination,
            accountId: record.accountId,
            ledgerUnits: record.amount,
            chainUnits: null,
            detail: `withdrawal ${record.id} (signature ${record.signature}) is not final yet`,
          })
      return {
        ok: mismatches.length === 0 && chainUnits === ledgerUnits,
        vaultAddress,
        ledgerUnits,
        chainUnits,
        vaultChainUnits,
        depositAddresses: books.length,
        mismatches,
      }
    },
  }
  return adapter
}

/** The ledger refused the withdrawal's hold (not enough funds, a reused request id): nothing was sent. */
export class HoldRefused extends Error {
  readonly result: TransferResult
  constructor(result: TransferResult) {
    super(`the ledger refused the withdrawal hold: ${result}`)
    this.result = result
  }
}
