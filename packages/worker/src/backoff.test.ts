import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { seededRandom } from '@gpumesh/core'
import { reconnectDelayMs } from './backoff.ts'

describe('reconnect backoff', () => {
  it('stays within [initial, min(max, initial·2^(attempt+1))]', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 100 }),
        fc.integer({ min: 1, max: 1000 }),
        fc.integer({ min: 0, max: 2 ** 31 }),
        (attempt, initial, seed) => {
          const max = initial * 60
          const delay = reconnectDelayMs(attempt, initial, max, seededRandom(seed))
          assert.ok(delay >= initial && delay <= Math.min(max, initial * 2 ** (attempt + 1)), `${delay}`)
        },
      ),
    )
  })

  it('spreads workers that reconnect at the same moment', () => {
    const delays = Array.from({ length: 100 }, (_, seed) =>
      reconnectDelayMs(0, 500, 30_000, seededRandom(seed)),
    )
    // even the first retry after a healthy session is spread over [500, 1000] ms
    assert.ok(Math.max(...delays) - Math.min(...delays) > 400)
    assert.ok(new Set(delays).size > 70)
  })
})
