import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ManualClock } from '@gpumesh/testing'
import { createReplyCache } from '../src/explorer/reply-cache.ts'

describe('explorer reply cache', () => {
  it('computes once for concurrent requests, serves stale while refreshing, and never caches a failure', async () => {
    const clock = new ManualClock(0)
    const cache = createReplyCache(clock, 1_000)
    let computations = 0
    let release: () => void = () => {}
    const compute = () => {
      computations += 1
      const value = computations
      return new Promise<number>((resolve) => (release = () => resolve(value)))
    }
    const first = cache.get('/summary', compute)
    const second = cache.get('/summary', compute)
    release()
    assert.deepEqual(await Promise.all([first, second]), [1, 1])
    assert.equal(computations, 1, 'single flight')

    clock.advanceMs(999)
    assert.equal(await cache.get('/summary', compute), 1, 'fresh within the ttl')
    clock.advanceMs(2)
    assert.equal(await cache.get('/summary', compute), 1, 'stale answered at once after the ttl')
    assert.equal(computations, 2, 'while a fresh reply is computed')
    release()
    await new Promise((resolve) => setImmediate(resolve))
    assert.equal(await cache.get('/summary', compute), 2, 'then the fresh one')

    clock.advanceMs(3_001)
    const tooOld = cache.get('/summary', compute)
    release()
    assert.equal(await tooOld, 3, 'past maxStaleMs a request waits for a fresh reply')

    const failing = cache.get('/fails', () => Promise.reject(new Error('store down')))
    await assert.rejects(failing, /store down/)
    assert.equal(await cache.get('/fails', async () => 7), 7, 'a failure is not kept')
  })
})
