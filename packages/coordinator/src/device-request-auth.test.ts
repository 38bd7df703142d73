import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ReplayGuard } from './device-request-auth.ts'

describe('ReplayGuard', () => {
  it('refuses a signature seen within its window and forgets it once the window has passed', () => {
    const guard = new ReplayGuard(10, 60_000)
    assert.equal(guard.remember('a', 1_000, 1_000), true)
    assert.equal(guard.remember('a', 1_000, 30_000), false)
    assert.equal(guard.remember('a', 1_000, 61_000), false)
    assert.equal(guard.remember('b', 61_000, 61_001), true)
    // past a's window its timestamp is refused by the skew check anyway, so it need not be kept
    assert.equal(guard.size, 1)
  })

  it('holds at most its bound, forgetting the oldest first', () => {
    const guard = new ReplayGuard(3, 60_000)
    for (const key of ['a', 'b', 'c', 'd']) assert.equal(guard.remember(key, 0, 0), true)
    assert.equal(guard.size, 3)
    assert.equal(guard.remember('b', 0, 0), false)
    assert.equal(guard.remember('a', 0, 0), true, 'the oldest was evicted')
  })
})
