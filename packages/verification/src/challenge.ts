import type { GpuModelSpec, Random } from '@gpumesh/core'
import { matrixColumn, matrixRow } from './matrix.ts'
import { leafHash, verifyProof, type Hash } from './merkle.ts'
import { sha256 } from './sha256.ts'

// Proof-of-compute, decided in pure code. A challenge asks for the Merkle root of C = A·B, both matrices
// drawn from a fresh seed; then it opens a few random rows. The coordinator checks each opened row's
// proof against the committed root (O(n) hashing) and recomputes a sample of that row's entries (O(n) each),
// so checking costs O(rows · samples · n) against the prover's O(n³). The prover cannot know which rows and
// entries will be checked before it has committed to all of them.

export const ChallengeFailure = {
  lateCommitment: 'late_commitment',
  lateOpening: 'late_opening',
  badProof: 'bad_proof',
  wrongProduct: 'wrong_product',
  unrequestedRow: 'unrequested_row',
  malformedResponse: 'malformed_response',
  replayedResponse: 'replayed_response',
  gpuUuidConflict: 'gpu_uuid_conflict',
  disconnected: 'disconnected',
} as const
export type ChallengeFailure = (typeof ChallengeFailure)[keyof typeof ChallengeFailure]

export type ChallengePolicy = {
  /** Matrix size for a node without GPUs (the CPU path). */
  readonly cpuMatrixSize: number
  /** Fraction of the smallest GPU's claimed VRAM that A, B and C (fp32) must fill. */
  readonly vramFraction: number
  readonly minMatrixSize: number
  readonly maxMatrixSize: number
  /** The claimed FP32 throughput must be reached at least this well to meet the deadline. */
  readonly minEfficiency: number
  /** Throughput assumed for a node without GPUs, in FLOP/s. */
  readonly cpuFlops: number
  /** Rate at which the prover must hash C, in bytes/s. */
  readonly hashBytesPerSecond: number
  /** Added to every deadline: process start, matrix generation, network. */
  readonly fixedOverheadMs: number
  readonly rowsToOpen: number
  /** Columns checked in every opened row (the same columns for all rows of a challenge). */
  readonly entriesCheckedPerRow: number
  readonly openingTimeoutMs: number
}

export const defaultChallengePolicy: ChallengePolicy = {
  cpuMatrixSize: 1024,
  vramFraction: 0.2,
  minMatrixSize: 256,
  maxMatrixSize: 32_768,
  minEfficiency: 0.2,
  cpuFlops: 2e9,
  hashBytesPerSecond: 2e8,
  fixedOverheadMs: 10_000,
  rowsToOpen: 4,
  entriesCheckedPerRow: 32,
  openingTimeoutMs: 30_000,
}

export type ChallengeClaim = {
  /** The catalog entry of the claimed GPU model; undefined for a CPU node or an unknown model. */
  readonly gpuModel: GpuModelSpec | undefined
  /** Smallest claimed VRAM among the GPUs; 0 for a CPU node. */
  readonly vramMib: number
}

export function challengeSize(claim: ChallengeClaim, policy: ChallengePolicy): number {
  if (!claim.gpuModel || claim.vramMib === 0) return policy.cpuMatrixSize
  const bytes = claim.vramMib * 1024 * 1024 * policy.vramFraction
  const n = Math.floor(Math.sqrt(bytes / 12) / 256) * 256
  return Math.min(policy.maxMatrixSize, Math.max(policy.minMatrixSize, n))
}

export function matrixFlops(n: number): number {
  return 2 * n ** 3
}

/** How long the prover has, from the challenge being sent to its commitment arriving. */
export function commitDeadlineMs(n: number, claim: ChallengeClaim, policy: ChallengePolicy): number {
  const flops = claim.gpuModel ? claim.gpuModel.fp32Tflops * 1e12 * policy.minEfficiency : policy.cpuFlops
  const computeMs = (matrixFlops(n) / flops) * 1000
  const hashMs = ((n * n * 4) / policy.hashBytesPerSecond) * 1000
  return Math.ceil(policy.fixedOverheadMs + computeMs + hashMs)
}

/** Two 32-bit seed words for A and B from the 32-byte challenge seed. */
export function seedWords(seed: Uint8Array): { a: number; b: number } {
  const digest = sha256(seed)
  const view = new DataView(digest.buffer, digest.byteOffset, digest.byteLength)
  return { a: view.getUint32(0, true), b: view.getUint32(4, true) }
}

/** Distinct row indexes drawn uniformly. */
export function pickRows(n: number, count: number, random: Random): number[] {
  const picked = new Set<number>()
  while (picked.size < Math.min(count, n)) picked.add(Math.floor(random.next() * n))
  return [...picked].sort((a, b) => a - b)
}

export type RowOpening = {
  readonly row: number
  readonly values: Int32Array
  readonly proof: readonly Hash[]
}

export type RowCheck =
  { readonly ok: true } | { readonly ok: false; readonly reason: ChallengeFailure; readonly detail: string }

/**
 * The columns a challenge checks, with B's columns computed once: every opened row is checked on the same
 * columns, so the coordinator generates (columns + rows) · n entries instead of rows · columns · n.
 * Chosen after the commitment, so the prover cannot know them.
 */
export type SampledColumns = { readonly columns: readonly number[]; readonly bColumns: readonly Int32Array[] }

export function sampleColumns(
  seed: Uint8Array,
  n: number,
  policy: ChallengePolicy,
  random: Random,
): SampledColumns {
  const columns =
    n <= policy.entriesCheckedPerRow
      ? Array.from({ length: n }, (_, col) => col)
      : pickRows(n, policy.entriesCheckedPerRow, random)
  const { b } = seedWords(seed)
  return { columns, bColumns: columns.map((col) => matrixColumn(b, n, col)) }
}

/** Checks one opened row: its proof against the committed root, then the sampled entries. */
export function checkRowOpening(
  opening: RowOpening,
  context: {
    n: number
    seed: Uint8Array
    root: Hash
    requestedRows: readonly number[]
    sampled: SampledColumns
  },
): RowCheck {
  const { n } = context
  if (!context.requestedRows.includes(opening.row)) {
    return {
      ok: false,
      reason: ChallengeFailure.unrequestedRow,
      detail: `row ${opening.row} was not asked for`,
    }
  }
  if (opening.values.length !== n) {
    return {
      ok: false,
      reason: ChallengeFailure.malformedResponse,
      detail: `row ${opening.row} has ${opening.values.length} values, expected ${n}`,
    }
  }
  if (!verifyProof(leafHash(opening.row, opening.values), opening.row, n, opening.proof, context.root)) {
    return {
      ok: false,
      reason: ChallengeFailure.badProof,
      detail: `row ${opening.row} does not match the committed root`,
    }
  }
  const aRow = matrixRow(seedWords(context.seed).a, n, opening.row)
  for (let index = 0; index < context.sampled.columns.length; index += 1) {
    const col = context.sampled.columns[index]!
    const bColumn = context.sampled.bColumns[index]!
    let expected = 0
    for (let k = 0; k < n; k += 1) expected += aRow[k]! * bColumn[k]!
    if (opening.values[col] !== expected) {
      return {
        ok: false,
        reason: ChallengeFailure.wrongProduct,
        detail: `C[${opening.row}][${col}] is ${opening.values[col]}, expected ${expected}`,
      }
    }
  }
  return { ok: true }
}
