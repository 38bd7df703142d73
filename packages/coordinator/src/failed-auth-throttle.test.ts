import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { FailedAuthTally, FailedAuthThrottle } from './failed-auth-throttle.ts'

describe('FailedAuthThrottle', () => {
  const init = { burst: 3, windowMs: 30_000, maxSubjects: 100 }

  it('lets a subject fail `burst` times, then names the wait until one try is earned back', () => {
    const throttle = new FailedAuthThrottle(init)
    for (let failure = 0; failure < 3; failure += 1) {
      assert.equal(throttle.retryAfterMs('10.0.0.1', 1_000), 0)
      throttle.recordFailure('10.0.0.1', 1_000)
    }
    // One try comes back every 10 s (3 per 30 s).
    assert.equal(throttle.retryAfterMs('10.0.0.1', 1_000), 10_000)
    assert.equal(throttle.retryAfterMs('10.0.0.1', 7_000), 4_000)
    assert.equal(throttle.retryAfterMs('10.0.0.1', 11_000), 0)
    assert.equal(throttle.retryAfterMs('10.0.0.2', 1_000), 0, 'another subject is not affected')
  })

  it('earns tries back up to the burst only, and not from a clock that steps back', () => {
    const throttle = new FailedAuthThrottle(init)
    throttle.recordFailure('k', 0)
    throttle.recordFailure('k', 0)
    throttle.recordFailure('k', 0)
    assert.equal(throttle.retryAfterMs('k', -5_000), 10_000)
    // A day later: full again, and three more failures block it again.
    for (let failure = 0; failure < 3; failure += 1) throttle.recordFailure('k', 86_400_000)
    assert.ok(throttle.retryAfterMs('k', 86_400_000) > 0)
  })

  it('remembers at most maxSubjects, forgetting the one idle longest', () => {
    const throttle = new FailedAuthThrottle({ ...init, burst: 1, maxSubjects: 2 })
    throttle.recordFailure('a', 0)
    throttle.recordFailure('b', 1)
    throttle.recordFailure('c', 2)
    assert.equal(throttle.trackedSubjects, 2)
    assert.equal(throttle.retryAfterMs('a', 3), 0, 'a was forgotten')
    assert.ok(throttle.retryAfterMs('b', 3) > 0)
    assert.ok(throttle.retryAfterMs('c', 3) > 0)
  })

  it('prunes subjects whose tries are all back', () => {
    const throttle = new FailedAuthThrottle(init)
    throttle.recordFailure('a', 0)
    throttle.recordFailure('b', 20_000)
    throttle.prune(10_000)
    assert.equal(throttle.trackedSubjects, 1, 'a has its one lost try back after 10 s; b has not')
    assert.ok(throttle.retryAfterMs('b', 10_000) === 0, 'b still has 2 of 3 tries')
    throttle.prune(30_000)
    assert.equal(throttle.trackedSubjects, 0)
  })

  it('refuses settings that cannot work', () => {
    assert.throws(() => new FailedAuthThrottle({ ...init, burst: 0 }), RangeError)
    assert.throws(() => new FailedAuthThrottle({ ...init, windowMs: 0 }), RangeError)
  })
})

describe('FailedAuthTally', () => {
  it('sums failures since the last drain into one summary, busiest first, then starts over', () => {
    const tally = new FailedAuthTally()
    for (let i = 0; i < 5; i += 1)
      tally.record({ reason: 'unknown_key', source: '10.0.0.9', keyId: 'ak_x' }, 1_000 + i)
    tally.record({ reason: 'malformed', source: '10.0.0.8' }, 2_000)
    tally.record({ reason: 'throttled', source: '10.0.0.9' }, 61_000)
    assert.deepEqual(tally.drain(61_000), {
      failures: 7,
      periodMs: 60_000,
      byReason: { unknown_key: 5, malformed: 1, throttled: 1 },
      distinctSources: 2,
      topSources: [
        { subject: '10.0.0.9', failures: 6 },
        { subject: '10.0.0.8', failures: 1 },
      ],
      topKeyIds: [{ subject: 'ak_x', failures: 5 }],
    })
    assert.equal(tally.drain(62_000), undefined)
    assert.equal(tally.total, 0)
  })

  it('keeps at most maxListed sources, still counting every failure', () => {
    const tally = new FailedAuthTally(2)
    for (const source of ['a', 'b', 'c', 'd']) tally.record({ reason: 'unknown_key', source }, 0)
    const summary = tally.drain(1)
    assert.equal(summary?.failures, 4)
    assert.equal(summary?.distinctSources, 2)
  })
})
