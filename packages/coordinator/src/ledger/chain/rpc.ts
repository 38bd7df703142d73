import { GpumeshError } from '@gpumesh/core'
import {
  address,
  createSolanaRpc,
  signature as toSignature,
  type Base64EncodedWireTransaction,
} from '@solana/kit'

// The seam between the chain adapter and a Solana cluster: the handful of calls the adapter makes, with the
// answers it needs and nothing else. In production it is a JSON-RPC endpoint through @solana/kit
// (solanaRpc below); in tests packages/testing implements it over LiteSVM, an in-process Solana runtime that
// runs the real SPL Token program, so the adapter's code path is the same in both.

export type ChainCommitment = 'processed' | 'confirmed' | 'finalized'

export const commitmentRank: Readonly<Record<ChainCommitment, number>> = {
  processed: 0,
  confirmed: 1,
  finalized: 2,
}

export type ChainAccount = { readonly owner: string; readonly data: Uint8Array }

export interface ChainRpc {
  latestBlockhash(): Promise<{ blockhash: string; lastValidBlockHeight: bigint }>
  blockHeight(): Promise<bigint>
  /** Sends signed bytes; the same bytes sent again can only land once (one signature). */
  sendTransaction(wireBase64: string): Promise<void>
  /** null: the cluster has not seen the signature. `failed`: it landed with an error (and moved nothing). */
  signatureStatus(signature: string): Promise<{ commitment: ChainCommitment; failed: boolean } | null>
  /** The transaction's bytes once it has reached `commitment`; null before that or when unknown. */
  getTransaction(
    signature: string,
    commitment: ChainCommitment,
  ): Promise<{ wireBase64: string; failed: boolean } | null>
  /** One entry per address, null where no account exists. */
  getAccounts(addresses: readonly string[]): Promise<(ChainAccount | null)[]>
  rentExemptLamports(space: number): Promise<bigint>
  /** The newest `limit` signatures of transactions that touched the address, newest first. */
  signaturesFor(address: string, limit: number): Promise<string[]>
}

/** The chain's RPC did not answer in time, or answered something that is not a Solana reply. */
export class ChainUnavailableError extends GpumeshError {
  readonly code = 'GPUMESH_ERR_CHAIN_UNAVAILABLE'
  readonly httpStatus = 503
}

export type SolanaRpcInit = {
  readonly url: string
  /** Commitment for reads and preflight; default confirmed. */
  readonly commitment?: ChainCommitment
  /** Per call; default 10 s. */
  readonly timeoutMs?: number
}

const maxAccountsPerCall = 100

/** The production seam: a Solana JSON-RPC endpoint. Every answer is shape-checked before it is believed. */
export function solanaRpc(init: SolanaRpcInit): ChainRpc {
  const rpc = createSolanaRpc(init.url)
  const commitment = init.commitment ?? 'confirmed'
  const timeoutMs = init.timeoutMs ?? 10_000
  const call = async <T>(
    what: string,
    request: { send(options: { abortSignal: AbortSignal }): Promise<T> },
  ) => {
    try {
      return await request.send({ abortSignal: AbortSignal.timeout(timeoutMs) })
    } catch (error) {
      throw new ChainUnavailableError(`the chain's RPC failed on ${what}: ${(error as Error).message}`, {
        call: what,
      })
    }
  }
  const garbage = (what: string): never => {
    throw new ChainUnavailableError(
      `the chain's RPC answered ${what} with something that is not a Solana reply`,
      {
        call: what,
      },
    )
  }
  return {
    async latestBlockhash() {
      const { value } = await call('getLatestBlockhash', rpc.getLatestBlockhash({ commitment }))
      if (typeof value?.blockhash !== 'string' || typeof value.lastValidBlockHeight !== 'bigint')
        return garbage('getLatestBlockhash')
      return { blockhash: value.blockhash, lastValidBlockHeight: value.lastValidBlockHeight }
    },
    async blockHeight() {
      const height = await call('getBlockHeight', rpc.getBlockHeight({ commitment }))
      return typeof height === 'bigint' ? height : garbage('getBlockHeight')
    },
    async sendTransaction(wireBase64) {
      await call(
        'sendTransaction',
        rpc.sendTransaction(wireBase64 as Base64EncodedWireTransaction, {
          encoding: 'base64',
          preflightCommitment: commitment,
        }),
      )
    },
    async signatureStatus(signature) {
      const { value } = await call(
        'getSignatureStatuses',
        rpc.getSignatureStatuses([toSignature(signature)], { searchTransactionHistory: true }),
      )
      if (!Array.isArray(value)) return garbage('getSignatureStatuses')
      const status = value[0]
      if (!status) return null
      const level = status.confirmationStatus
      if (level !== 'processed' && level !== 'confirmed' && level !== 'finalized')
        return garbage('getSignatureStatuses')
      return { commitment: level, failed: status.err !== null }
    },
    async getTransaction(signature, atCommitment) {
      const found = await call(
        'getTransaction',
        rpc.getTransaction(toSignature(signature), {
          commitment: atCommitment === 'processed' ? 'confirmed' : atCommitment,
          encoding: 'base64',
          maxSupportedTransactionVersion: 0,
        }),
      )
      if (found === null) return null
      const wire = found.transaction?.[0]
      if (typeof wire !== 'string' || !found.meta) return garbage('getTransaction')
      return { wireBase64: wire, failed: found.meta.err !== null }
    },
    async getAccounts(addresses) {
      const answers: (ChainAccount | null)[] = []
      for (let start = 0; start < addresses.length; start += maxAccountsPerCall) {
        const chunk = addresses.slice(start, start + maxAccountsPerCall).map((text) => address(text))
        const { value } = await call(
          'getMultipleAccounts',
          rpc.getMultipleAccounts(chunk, { encoding: 'base64', commitment }),
        )
        if (!Array.isArray(value) || value.length !== chunk.length) return garbage('getMultipleAccounts')
        for (const account of value) {
          if (account === null) answers.push(null)
          else if (typeof account.data?.[0] !== 'string') return garbage('getMultipleAccounts')
          else answers.push({ owner: account.owner, data: Buffer.from(account.data[0], 'base64') })
        }
      }
      return answers
    },
    async signaturesFor(target, limit) {
      const found = await call(
        'getSignaturesForAddress',
        rpc.getSignaturesForAddress(address(target), {
          limit,
          commitment: commitment === 'processed' ? 'confirmed' : commitment,
        }),
      )
      if (!Array.isArray(found) || !found.every((entry) => typeof entry?.signature === 'string'))
        return garbage('getSignaturesForAddress')
      return found.map((entry) => entry.signature)
    },
    async rentExemptLamports(space) {
      const lamports = await call(
        'getMinimumBalanceForRentExemption',
        rpc.getMinimumBalanceForRentExemption(BigInt(space)),
      )
      return typeof lamports === 'bigint' ? lamports : garbage('getMinimumBalanceForRentExemption')
    },
  }
}
