import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { gpuModelById, seededRandom } from '@gpumesh/core'
import {
  buildTree,
  challengeSize,
  checkRowOpening,
  commitDeadlineMs,
  defaultChallengePolicy,
  entry,
  fromHex,
  fullProduct,
  leafHash,
  matrixColumn,
  matrixRow,
  mix32,
  productEntry,
  proofFor,
  proveReference,
  rootOf,
  sampleColumns,
  seedWords,
  toHex,
  verifyProof,
} from './index.ts'

const seed = fromHex('00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff')!
const policy = { ...defaultChallengePolicy, entriesCheckedPerRow: 16 }

describe('challenge matrices', () => {
  it('match the written specification on known values', () => {
    // Pinned (and checked against an independent Python computation) so every prover implementation can be
    // held to the same numbers.
    assert.equal(mix32(0), 0)
    assert.equal(mix32(1), 1_753_845_952)
    assert.equal(mix32(0xdeadbeef), 3_861_431_939)
    assert.deepEqual(seedWords(seed), { a: 785_478_471, b: 2_478_534_947 })
    const values = Array.from({ length: 8 }, (_, col) => entry(0x12345678, 8, 3, col))
    assert.deepEqual(values, [-3, 1, 1, -2, -2, 0, -3, -2])
    assert.deepEqual([...matrixRow(0x12345678, 8, 3)], values)
    assert.equal(
      toHex(proveReference(seed, 16).root),
      '67581181c2fa4b067fd3d0d6814f153eec6d4de4db6c6f6d3340d48604986c0c',
    )
    assert.equal(matrixColumn(0x12345678, 8, 5)[3], values[5])
  })

  it('compute product entries that agree with the full product', () => {
    const { a, b } = seedWords(seed)
    const product = fullProduct(a, b, 24)
    for (const [row, col] of [
      [0, 0],
      [5, 17],
      [23, 23],
    ] as const)
      assert.equal(product[row]![col], productEntry(a, b, 24, row, col))
  })
})

describe('Merkle commitments', () => {
  it('prove every leaf of trees of any width, and nothing else', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 40 }), fc.nat(), (width, pick) => {
        const leaves = Array.from({ length: width }, (_, index) =>
          leafHash(index, Int32Array.of(index, width)),
        )
        const levels = buildTree(leaves)
        const index = pick % width
        const proof = proofFor(levels, index)
        assert.ok(verifyProof(leaves[index]!, index, width, proof, rootOf(levels)))
        const other = leafHash(index, Int32Array.of(index + 1, width))
        assert.ok(!verifyProof(other, index, width, proof, rootOf(levels)))
        if (width > 1)
          assert.ok(!verifyProof(leaves[index]!, (index + 1) % width, width, proof, rootOf(levels)))
      }),
    )
  })

  it('round-trips hex', () => {
    assert.equal(toHex(fromHex('00ff10')!), '00ff10')
    assert.equal(fromHex('0g'), undefined)
  })
})

describe('row checks', () => {
  const n = 48
  const honest = proveReference(seed, n)
  const sampled = sampleColumns(seed, n, policy, seededRandom(1))
  const context = (requestedRows: number[]) => ({ n, seed, root: honest.root, requestedRows, sampled })

  it('pass an honest opening', () => {
    const opening = { row: 7, ...honest.open(7) }
    assert.deepEqual(checkRowOpening(opening, context([7])), { ok: true })
  })

  it('catch fake values under the right root', () => {
    const { values, proof } = honest.open(7)
    const fake = Int32Array.from(values)
    fake[3] = fake[3]! + 1
    const result = checkRowOpening({ row: 7, values: fake, proof }, context([7]))
    assert.equal(result.ok || result.reason, 'bad_proof')
  })

  it('check the same sampled columns in every row, all of them when n is small', () => {
    assert.equal(sampled.columns.length, policy.entriesCheckedPerRow)
    assert.equal(new Set(sampled.columns).size, sampled.columns.length)
    assert.equal(sampleColumns(seed, 8, policy, seededRandom(1)).columns.length, 8)
  })

  it('catch a wrong product committed consistently', () => {
    const { a, b } = seedWords(seed)
    const wrong = fullProduct(a, b, n).map((row) => row.map((value) => value + 1))
    const levels = buildTree(wrong.map((row, index) => leafHash(index, row)))
    const opening = { row: 2, values: wrong[2]!, proof: proofFor(levels, 2) }
    const result = checkRowOpening(opening, { ...context([2]), root: rootOf(levels) })
    assert.equal(result.ok || result.reason, 'wrong_product')
  })

  it('refuse rows that were not asked for and rows of the wrong length', () => {
    const opening = { row: 9, ...honest.open(9) }
    const notAsked = checkRowOpening(opening, context([7]))
    assert.equal(notAsked.ok || notAsked.reason, 'unrequested_row')
    const short = checkRowOpening({ ...opening, values: opening.values.slice(1) }, context([9]))
    assert.equal(short.ok || short.reason, 'malformed_response')
  })
})

describe('challenge sizing', () => {
  it('fills a share of the claimed VRAM and gives faster cards shorter deadlines', () => {
    const h100 = gpuModelById('h100')!
    const t4 = gpuModelById('t4')!
    const big = challengeSize({ gpuModel: h100, vramMib: 81_559 }, defaultChallengePolicy)
    assert.ok(big > challengeSize({ gpuModel: t4, vramMib: 15_360 }, defaultChallengePolicy))
    assert.ok(big % 256 === 0 && big <= defaultChallengePolicy.maxMatrixSize)
    assert.equal(
      challengeSize({ gpuModel: undefined, vramMib: 0 }, defaultChallengePolicy),
      defaultChallengePolicy.cpuMatrixSize,
    )
    const n = 8192
    assert.ok(
      commitDeadlineMs(n, { gpuModel: h100, vramMib: 81_559 }, defaultChallengePolicy) <
        commitDeadlineMs(n, { gpuModel: t4, vramMib: 15_360 }, defaultChallengePolicy),
    )
  })
})
