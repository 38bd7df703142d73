import {
  address,
  appendTransactionMessageInstructions,
  createTransactionMessage,
  getBase64EncodedWireTransaction,
  getCompiledTransactionMessageDecoder,
  getSignatureFromTransaction,
  getTransactionDecoder,
  pipe,
  setTransactionMessageFeePayerSigner,
  setTransactionMessageLifetimeUsingBlockhash,
  signTransactionMessageWithSigners,
  type Address,
  type Blockhash,
  type Instruction,
  type KeyPairSigner,
} from '@solana/kit'
import { getCreateAccountWithSeedInstruction } from '@solana-program/system'
import {
  TOKEN_PROGRAM_ADDRESS,
  findAssociatedTokenPda,
  getCreateAssociatedTokenIdempotentInstruction,
  getInitializeAccount3Instruction,
  getMintDecoder,
  getTokenDecoder,
  getTokenSize,
  getTransferCheckedInstruction,
} from '@solana-program/token'

// The SPL Token transactions the vault's key signs, and the decoding of transactions that pay GMT in. Built
// with @solana/kit and @solana-program/token; nothing here talks to a cluster.

export type SignedTransaction = { readonly signature: string; readonly wireBase64: string }

export async function signTransaction(
  feePayer: KeyPairSigner,
  lifetime: { blockhash: string; lastValidBlockHeight: bigint },
  instructions: readonly Instruction[],
): Promise<SignedTransaction> {
  const message = pipe(
    createTransactionMessage({ version: 0 }),
    (draft) => setTransactionMessageFeePayerSigner(feePayer, draft),
    (draft) =>
      setTransactionMessageLifetimeUsingBlockhash(
        { blockhash: lifetime.blockhash as Blockhash, lastValidBlockHeight: lifetime.lastValidBlockHeight },
        draft,
      ),
    (draft) => appendTransactionMessageInstructions(instructions, draft),
  )
  const transaction = await signTransactionMessageWithSigners(message)
  return {
    signature: getSignatureFromTransaction(transaction),
    wireBase64: getBase64EncodedWireTransaction(transaction),
  }
}

/** The vault: the associated token account of the vault key for the mint. */
export async function vaultTokenAccount(vaultOwner: string, mint: string): Promise<string> {
  const [ata] = await findAssociatedTokenPda({
    owner: address(vaultOwner),
    mint: address(mint),
    tokenProgram: TOKEN_PROGRAM_ADDRESS,
  })
  return ata
}

/** Pays `amount` from the vault to the owner's associated token account, creating it when it is missing. */
export async function withdrawalInstructions(init: {
  vault: KeyPairSigner
  mint: string
  decimals: number
  ownerAddress: string
  amount: bigint
  /** The request's id, written on chain: it also makes two equal payments two distinct transactions. */
  memo: string
}): Promise<{ destination: string; instructions: Instruction[] }> {
  const mint = address(init.mint)
  const [destination] = await findAssociatedTokenPda({
    owner: address(init.ownerAddress),
    mint,
    tokenProgram: TOKEN_PROGRAM_ADDRESS,
  })
  return {
    destination,
    instructions: [
      getCreateAssociatedTokenIdempotentInstruction({
        payer: init.vault,
        owner: address(init.ownerAddress),
        mint,
        ata: destination,
      }),
      getTransferCheckedInstruction({
        source: address(await vaultTokenAccount(init.vault.address, init.mint)),
        mint,
        destination,
        authority: init.vault,
        amount: init.amount,
        decimals: init.decimals,
      }),
      memoInstruction(init.memo),
    ],
  }
}

/** Moves a credited deposit from its deposit address into the vault. */
export async function sweepInstructions(init: {
  vault: KeyPairSigner
  mint: string
  decimals: number
  depositAddress: string
  amount: bigint
  memo: string
}): Promise<Instruction[]> {
  return [
    getTransferCheckedInstruction({
      source: address(init.depositAddress),
      mint: address(init.mint),
      destination: address(await vaultTokenAccount(init.vault.address, init.mint)),
      authority: init.vault,
      amount: init.amount,
      decimals: init.decimals,
    }),
    memoInstruction(init.memo),
  ]
}

/** The SPL Memo program (v3): its instruction carries UTF-8 text and needs no accounts. */
export const memoProgramAddress = address('MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr')

export function memoInstruction(text: string): Instruction {
  return { programAddress: memoProgramAddress, data: new TextEncoder().encode(text) }
}

/** Creates an account's deposit address: a token account at (vault key, seed), owned by the vault key. */
export function depositAccountInstructions(init: {
  vault: KeyPairSigner
  mint: string
  depositAddress: string
  seed: string
  rentLamports: bigint
}): Instruction[] {
  return [
    getCreateAccountWithSeedInstruction({
      payer: init.vault,
      newAccount: address(init.depositAddress),
      baseAccount: init.vault,
      base: init.vault.address,
      seed: init.seed,
      amount: init.rentLamports,
      space: getTokenSize(),
      programAddress: TOKEN_PROGRAM_ADDRESS,
    }),
    getInitializeAccount3Instruction({
      account: address(init.depositAddress),
      mint: address(init.mint),
      owner: init.vault.address,
    }),
  ]
}

export const tokenProgramAddress: string = TOKEN_PROGRAM_ADDRESS

export type TokenAccountState = { readonly mint: string; readonly owner: string; readonly amount: bigint }

export function decodeTokenAccount(data: Uint8Array): TokenAccountState {
  const token = getTokenDecoder().decode(data)
  return { mint: token.mint, owner: token.owner, amount: token.amount }
}

export function decodeMintDecimals(data: Uint8Array): number {
  return getMintDecoder().decode(data).decimals
}

/** A top-level SPL Token transfer found in a transaction: its instruction's index, where to, how much. */
export type TokenTransferSeen = {
  readonly index: number
  readonly destination: string
  readonly amount: bigint
}

const transferTag = 3
const transferCheckedTag = 12

/**
 * The SPL Token `Transfer` and `TransferChecked` instructions at the top level of a transaction. Transfers
 * made inside another program (CPI) and accounts loaded from lookup tables are not seen: docs/chain.md says
 * to deposit with a plain token transfer.
 */
export function tokenTransfersIn(wireBase64: string): TokenTransferSeen[] {
  const transaction = getTransactionDecoder().decode(Buffer.from(wireBase64, 'base64'))
  const message = getCompiledTransactionMessageDecoder().decode(transaction.messageBytes)
  // Version 1 messages (a newer layout) are not read: a wallet sending GMT writes legacy or v0.
  if (message.version === 1) return []
  const keys = message.staticAccounts
  const seen: TokenTransferSeen[] = []
  message.instructions.forEach((instruction, index) => {
    if (keys[instruction.programAddressIndex] !== TOKEN_PROGRAM_ADDRESS) return
    const data = instruction.data
    const accounts = instruction.accountIndices ?? []
    if (!data || data.length < 9) return
    const amount = Buffer.from(data.subarray(1, 9)).readBigUInt64LE()
    const destinationIndex =
      data[0] === transferTag ? accounts[1] : data[0] === transferCheckedTag ? accounts[2] : undefined
    const destination = destinationIndex === undefined ? undefined : keys[destinationIndex]
    if (destination !== undefined) seen.push({ index, destination, amount })
  })
  return seen
}

export type { Address }
