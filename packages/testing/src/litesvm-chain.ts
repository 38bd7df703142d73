import type { ChainCommitment, ChainRpc } from '@gpumesh/coordinator'
import { ChainUnavailableError } from '@gpumesh/coordinator'
import {
  address,
  appendTransactionMessageInstructions,
  createKeyPairSignerFromPrivateKeyBytes,
  createTransactionMessage,
  generateKeyPairSigner,
  getAddressEncoder,
  getSignatureFromTransaction,
  getTransactionDecoder,
  lamports,
  pipe,
  setTransactionMessageFeePayerSigner,
  setTransactionMessageLifetimeUsingBlockhash,
  signTransactionMessageWithSigners,
  getBase64EncodedWireTransaction,
  getCompiledTransactionMessageDecoder,
  type Instruction,
  type KeyPairSigner,
} from '@solana/kit'
import { getCreateAccountInstruction } from '@solana-program/system'
import {
  TOKEN_PROGRAM_ADDRESS,
  findAssociatedTokenPda,
  getCreateAssociatedTokenIdempotentInstruction,
  getInitializeMintInstruction,
  getMintSize,
  getMintToCheckedInstruction,
  getTokenDecoder,
  getTransferCheckedInstruction,
} from '@solana-program/token'
import { LiteSVM } from 'litesvm'
import { randomBytes } from 'node:crypto'
import { chmod, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

// A Solana cluster in-process for tests: LiteSVM runs the real SPL Token program, and this file gives it the
// adapter's RPC seam (ChainRpc). Commitment is modelled on slots: a transaction is processed in its slot,
// confirmed one slot later and finalized 32 later; `advance` moves the clock (or every poll does, with
// autoAdvance). Faults are switches: sends that are lost, transactions that fail, an RPC that times out or
// answers garbage.

const alreadyProcessed = 6
const lifetimeSlots = 150n
const finalizedAfterSlots = 32n

type Landed = { readonly wireBase64: string; readonly failed: boolean; readonly slot: bigint }

export type LiteSvmChainFaults = {
  /** Sends are accepted and lost (as a dropped packet is). */
  loseSends: boolean
  /** The next n transactions land with an error and move nothing. */
  failNextTransactions: number
  /** Every call fails as an RPC that timed out (timeout) or answered nonsense (garbage) does. */
  rpc: 'ok' | 'timeout' | 'garbage'
  /** Called before each send; throwing from it is a crash at that moment. */
  beforeSend: (() => void) | null
  /** Called after each send reached the chain; throwing from it is a crash before the answer came back. */
  afterSend: (() => void) | null
}

export type LiteSvmChain = {
  readonly svm: LiteSVM
  readonly rpc: ChainRpc
  readonly mint: string
  readonly faults: LiteSvmChainFaults
  /** Each poll (status, block height) moves one slot on when true; default true. */
  autoAdvance: boolean
  advance(slots: number): void
  /** A wallet outside the network with SOL for fees and `units` GMT in its token account. */
  wallet(units: bigint): Promise<{ signer: KeyPairSigner; tokenAccount: string }>
  /** The wallet sends GMT to a token account (a deposit); returns the signature. */
  transfer(from: KeyPairSigner, toTokenAccount: string, units: bigint): Promise<string>
  tokenBalance(tokenAccount: string): bigint | null
  tokenAccountOf(owner: string): Promise<string>
  /** Gives the vault key SOL for fees and rent. */
  fundFees(owner: string): void
}

export async function createLiteSvmChain(): Promise<LiteSvmChain> {
  const svm = new LiteSVM()
  const landed = new Map<string, Landed>()
  /** Per account address, the signatures of transactions naming it, oldest first. */
  const touching = new Map<string, string[]>()
  const record = (signature: string, wireBase64: string, entry: Landed) => {
    landed.set(signature, entry)
    const transaction = getTransactionDecoder().decode(Buffer.from(wireBase64, 'base64'))
    const message = getCompiledTransactionMessageDecoder().decode(transaction.messageBytes)
    for (const key of message.staticAccounts) touching.set(key, [...(touching.get(key) ?? []), signature])
  }
  const mintAuthority = await generateKeyPairSigner()
  const mint = await generateKeyPairSigner()
  svm.airdrop(mintAuthority.address, lamports(100_000_000_000n))
  const faults: LiteSvmChainFaults = {
    loseSends: false,
    failNextTransactions: 0,
    rpc: 'ok',
    beforeSend: null,
    afterSend: null,
  }
  const slot = () => svm.getClock().slot
  const advance = (slots: number) => svm.warpToSlot(slot() + BigInt(slots))

  const submit = (wireBase64: string) => {
    const transaction = getTransactionDecoder().decode(Buffer.from(wireBase64, 'base64'))
    const signature = getSignatureFromTransaction(transaction)
    if (landed.has(signature)) return signature
    if (faults.failNextTransactions > 0) {
      faults.failNextTransactions -= 1
      record(signature, wireBase64, { wireBase64, failed: true, slot: slot() })
      return signature
    }
    const result = svm.sendTransaction(transaction)
    if ('err' in result) {
      if (result.err() === alreadyProcessed) return signature
      record(signature, wireBase64, { wireBase64, failed: true, slot: slot() })
    } else record(signature, wireBase64, { wireBase64, failed: false, slot: slot() })
    return signature
  }
  const levelOf = (entry: Landed): ChainCommitment => {
    const age = slot() - entry.slot
    return age >= finalizedAfterSlots ? 'finalized' : age >= 1n ? 'confirmed' : 'processed'
  }
  const rank = { processed: 0, confirmed: 1, finalized: 2 } as const
  const gate = async () => {
    if (faults.rpc === 'timeout') throw new ChainUnavailableError("the chain's RPC timed out (a test fault)")
    if (faults.rpc === 'garbage')
      throw new ChainUnavailableError("the chain's RPC answered with something that is not a Solana reply")
  }

  const chain: LiteSvmChain = {
    svm,
    mint: mint.address,
    faults,
    autoAdvance: true,
    advance,
    rpc: {
      async latestBlockhash() {
        await gate()
        return { blockhash: svm.latestBlockhash(), lastValidBlockHeight: slot() + lifetimeSlots }
      },
      async blockHeight() {
        await gate()
        if (chain.autoAdvance) advance(1)
        return slot()
      },
      async sendTransaction(wireBase64) {
        await gate()
        faults.beforeSend?.()
        if (faults.loseSends) return
        submit(wireBase64)
        faults.afterSend?.()
      },
      async signatureStatus(signature) {
        await gate()
        if (chain.autoAdvance) advance(1)
        const entry = landed.get(signature)
        return entry ? { commitment: levelOf(entry), failed: entry.failed } : null
      },
      async getTransaction(signature, commitment) {
        await gate()
        if (chain.autoAdvance) advance(1)
        const entry = landed.get(signature)
        if (!entry || rank[levelOf(entry)] < rank[commitment]) return null
        return { wireBase64: entry.wireBase64, failed: entry.failed }
      },
      async getAccounts(addresses) {
        await gate()
        return addresses.map((text) => {
          const account = svm.getAccount(address(text))
          return account.exists ? { owner: account.programAddress, data: account.data } : null
        })
      },
      async signaturesFor(target, limit) {
        await gate()
        return (touching.get(target) ?? []).slice(-limit).reverse()
      },
      async rentExemptLamports(space) {
        await gate()
        return svm.minimumBalanceForRentExemption(BigInt(space))
      },
    },
    async wallet(units) {
      const signer = await generateKeyPairSigner()
      svm.airdrop(signer.address, lamports(1_000_000_000n))
      const tokenAccount = await chain.tokenAccountOf(signer.address)
      await send(mintAuthority, [
        getCreateAssociatedTokenIdempotentInstruction({
          payer: mintAuthority,
          owner: signer.address,
          mint: mint.address,
          ata: address(tokenAccount),
        }),
        ...(units > 0n
          ? [
              getMintToCheckedInstruction({
                mint: mint.address,
                token: address(tokenAccount),
                mintAuthority,
                amount: units,
                decimals: 6,
              }),
            ]
          : []),
      ])
      return { signer, tokenAccount }
    },
    async transfer(from, toTokenAccount, units) {
      return send(from, [
        getTransferCheckedInstruction({
          source: address(await chain.tokenAccountOf(from.address)),
          mint: mint.address,
          destination: address(toTokenAccount),
          authority: from,
          amount: units,
          decimals: 6,
        }),
      ])
    },
    tokenBalance(tokenAccount) {
      const account = svm.getAccount(address(tokenAccount))
      return account.exists ? getTokenDecoder().decode(account.data).amount : null
    },
    async tokenAccountOf(owner) {
      const [ata] = await findAssociatedTokenPda({
        owner: address(owner),
        mint: mint.address,
        tokenProgram: TOKEN_PROGRAM_ADDRESS,
      })
      return ata
    },
    fundFees(owner) {
      svm.airdrop(address(owner), lamports(100_000_000_000n))
    },
  }

  /** Test-side transactions (mint setup, a user's deposit) go straight in, untouched by the faults. */
  async function send(payer: KeyPairSigner, instructions: Instruction[]): Promise<string> {
    const message = pipe(
      createTransactionMessage({ version: 0 }),
      (draft) => setTransactionMessageFeePayerSigner(payer, draft),
      (draft) =>
        setTransactionMessageLifetimeUsingBlockhash(
          { blockhash: svm.latestBlockhash(), lastValidBlockHeight: slot() + lifetimeSlots },
          draft,
        ),
      (draft) => appendTransactionMessageInstructions(instructions, draft),
    )
    const transaction = await signTransactionMessageWithSigners(message)
    const wireBase64 = getBase64EncodedWireTransaction(transaction)
    const signature = getSignatureFromTransaction(transaction)
    const result = svm.sendTransaction(transaction)
    if ('err' in result) throw new Error(`test transaction failed: ${result.toString()}`)
    record(signature, wireBase64, { wireBase64, failed: false, slot: slot() })
    // A fresh blockhash per transaction, so two identical test transfers are two transactions.
    svm.expireBlockhash()
    return signature
  }

  await send(mintAuthority, [
    getCreateAccountInstruction({
      payer: mintAuthority,
      newAccount: mint,
      lamports: svm.minimumBalanceForRentExemption(BigInt(getMintSize())),
      space: getMintSize(),
      programAddress: TOKEN_PROGRAM_ADDRESS,
    }),
    getInitializeMintInstruction({ mint: mint.address, decimals: 6, mintAuthority: mintAuthority.address }),
  ])
  return chain
}

/** Writes a vault key file in the solana-keygen format (mode 0600) and returns its path and signer. */
export async function writeVaultKeyFile(
  directory: string,
  mode = 0o600,
): Promise<{ path: string; signer: KeyPairSigner }> {
  const seed = randomBytes(32)
  const signer = await createKeyPairSignerFromPrivateKeyBytes(seed)
  const bytes = [...seed, ...getAddressEncoder().encode(signer.address)]
  const path = join(directory, `vault-${randomBytes(4).toString('hex')}.json`)
  await writeFile(path, JSON.stringify(bytes), { mode })
  await chmod(path, mode)
  return { path, signer }
}
