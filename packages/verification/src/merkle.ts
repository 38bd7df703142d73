import { sha256 } from './sha256.ts'

// Merkle commitment over the product's rows.
//   leaf(i)   = SHA-256(0x00 ‖ u32le(i) ‖ row i as int32 little-endian)
//   node(l,r) = SHA-256(0x01 ‖ l ‖ r)
//   A level with an odd count carries its last node up unchanged.
// The domain bytes (0x00 leaf, 0x01 node) stop a node from being passed off as a leaf.

export type Hash = Uint8Array

export function leafHash(index: number, row: Int32Array): Hash {
  const bytes = new Uint8Array(1 + 4 + row.length * 4)
  const view = new DataView(bytes.buffer)
  bytes[0] = 0
  view.setUint32(1, index, true)
  for (let col = 0; col < row.length; col += 1) view.setInt32(5 + col * 4, row[col]!, true)
  return sha256(bytes)
}

export function nodeHash(left: Hash, right: Hash): Hash {
  const bytes = new Uint8Array(65)
  bytes[0] = 1
  bytes.set(left, 1)
  bytes.set(right, 33)
  return sha256(bytes)
}

/** All levels, leaves first; the last level holds the root. */
export function buildTree(leaves: readonly Hash[]): Hash[][] {
  if (leaves.length === 0) throw new Error('a Merkle tree needs at least one leaf')
  const levels: Hash[][] = [[...leaves]]
  while (levels[levels.length - 1]!.length > 1) {
    const level = levels[levels.length - 1]!
    const next: Hash[] = []
    for (let i = 0; i < level.length; i += 2)
      next.push(i + 1 < level.length ? nodeHash(level[i]!, level[i + 1]!) : level[i]!)
    levels.push(next)
  }
  return levels
}

export function rootOf(levels: readonly Hash[][]): Hash {
  return levels[levels.length - 1]![0]!
}

/** Sibling hashes from the leaf up; a level where the node had no sibling contributes nothing. */
export function proofFor(levels: readonly Hash[][], index: number): Hash[] {
  const proof: Hash[] = []
  let position = index
  for (let depth = 0; depth < levels.length - 1; depth += 1) {
    const level = levels[depth]!
    const sibling = position ^ 1
    if (sibling < level.length) proof.push(level[sibling]!)
    position >>= 1
  }
  return proof
}

/** Recomputes the root from a leaf and its proof; `leafCount` fixes where levels had no sibling. */
export function verifyProof(
  leaf: Hash,
  index: number,
  leafCount: number,
  proof: readonly Hash[],
  root: Hash,
): boolean {
  if (index < 0 || index >= leafCount) return false
  let hash = leaf
  let position = index
  let width = leafCount
  let used = 0
  while (width > 1) {
    const sibling = position ^ 1
    if (sibling < width) {
      const next = proof[used]
      if (!next || next.length !== 32) return false
      hash = position % 2 === 0 ? nodeHash(hash, next) : nodeHash(next, hash)
      used += 1
    }
    position >>= 1
    width = Math.ceil(width / 2)
  }
  return used === proof.length && equalBytes(hash, root)
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  let difference = 0
  for (let i = 0; i < a.length; i += 1) difference |= a[i]! ^ b[i]!
  return difference === 0
}

export const toHex = (bytes: Uint8Array) =>
  Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('')
export function fromHex(hex: string): Uint8Array | undefined {
  if (!/^(?:[0-9a-f]{2})*$/.test(hex)) return undefined
  const out = new Uint8Array(hex.length / 2)
  for (let i = 0; i < out.length; i += 1) out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16)
  return out
}
