import { fullProduct } from './matrix.ts'
import { buildTree, leafHash, proofFor, rootOf, type Hash } from './merkle.ts'
import { seedWords } from './challenge.ts'

/**
 * The reference prover, in plain TypeScript: O(n³) on one core. The worker uses the Python prover (numpy,
 * or torch on a GPU); this one is the specification's executable form, for tests and as a fallback.
 */
export type CommittedProduct = {
  readonly root: Hash
  open(row: number): { values: Int32Array; proof: Hash[] }
}

/** Past this the reference prover refuses: it runs on the caller's thread and is O(n³). */
export const referenceProverMaxMatrixSize = 2_048

export function proveReference(seed: Uint8Array, n: number): CommittedProduct {
  if (n > referenceProverMaxMatrixSize) {
    throw new Error(
      `the reference prover handles n ≤ ${referenceProverMaxMatrixSize}; use the Python prover for n = ${n}`,
    )
  }
  const words = seedWords(seed)
  const rows = fullProduct(words.a, words.b, n)
  const levels = buildTree(rows.map((row, index) => leafHash(index, row)))
  return {
    root: rootOf(levels),
    open: (row) => ({ values: rows[row]!, proof: proofFor(levels, row) }),
  }
}
