// Proof-of-compute matrices. Entry (row, col) of matrix M is a pure function of (seed word, index), so the
// coordinator can produce any single row or column without producing the matrix, while the worker must
// produce all of it. Entries are small integers, so the product is exact in any float format whose
// accumulator holds 24 bits (fp32, tf32 inputs with fp32 accumulation, fp64, int8 with int32 accumulation).
//
// Specification (the Python prover implements the same, bit for bit):
//   mix32(x):  x ^= x >>> 16; x = (x * 0x7feb352d) mod 2^32; x ^= x >>> 15; x = (x * 0x846ca68b) mod 2^32; x ^= x >>> 16
//   entry(seedWord, n, row, col) = (mix32((seedWord ^ mix32(row * n + col)) mod 2^32) mod 7) - 3     ∈ [-3, 3]
//   A uses seedWordA, B uses seedWordB; C = A · B (integers).

export const entryBound = 3
/** n · bound² must stay below 2^24 so an fp32 accumulator is exact. */
export const maxMatrixSize = 16_384

export function mix32(value: number): number {
  let x = value >>> 0
  x ^= x >>> 16
  x = Math.imul(x, 0x7feb352d) >>> 0
  x ^= x >>> 15
  x = Math.imul(x, 0x846ca68b) >>> 0
  x ^= x >>> 16
  return x >>> 0
}

export function entry(seedWord: number, n: number, row: number, col: number): number {
  // row * n + col < 2^32 for n ≤ 65536; mod 2^32 keeps it a u32 either way
  const index = (Math.imul(row, n) + col) >>> 0
  return (mix32((seedWord ^ mix32(index)) >>> 0) % 7) - entryBound
}

export function matrixRow(seedWord: number, n: number, row: number): Int32Array {
  const out = new Int32Array(n)
  for (let col = 0; col < n; col += 1) out[col] = entry(seedWord, n, row, col)
  return out
}

export function matrixColumn(seedWord: number, n: number, col: number): Int32Array {
  const out = new Int32Array(n)
  for (let row = 0; row < n; row += 1) out[row] = entry(seedWord, n, row, col)
  return out
}

/** C[row][col] = A[row,:] · B[:,col], computed in O(n). */
export function productEntry(
  seedWordA: number,
  seedWordB: number,
  n: number,
  row: number,
  col: number,
): number {
  let sum = 0
  for (let k = 0; k < n; k += 1) sum += entry(seedWordA, n, row, k) * entry(seedWordB, n, k, col)
  return sum
}

/** The whole product, O(n³): what an honest prover computes (tests and the reference prover only). */
export function fullProduct(seedWordA: number, seedWordB: number, n: number): Int32Array[] {
  const b: Int32Array[] = Array.from({ length: n }, (_, row) => matrixRow(seedWordB, n, row))
  const rows: Int32Array[] = []
  for (let row = 0; row < n; row += 1) {
    const a = matrixRow(seedWordA, n, row)
    const out = new Int32Array(n)
    for (let k = 0; k < n; k += 1) {
      const weight = a[k]!
      if (weight === 0) continue
      const bRow = b[k]!
      for (let col = 0; col < n; col += 1) out[col]! += weight * bRow[col]!
    }
    rows.push(out)
  }
  return rows
}
