import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { Presence } from './presence.ts'
import { mergeBuckets, splitIntoBuckets, uptimeBucketMs } from './uptime.ts'

const t0 = Date.UTC(2026, 0, 1)
const rules = { offlineAfterMs: 30_000, restartGraceMs: 120_000 }
const total = (entries: { uptimeBuckets: readonly { onlineMs: number }[] }[]) =>
  entries.reduce(
    (sum, entry) => sum + entry.uptimeBuckets.reduce((inner, bucket) => inner + bucket.onlineMs, 0),
    0,
  )

describe('uptime buckets', () => {
  it('splits an interval at hour boundaries without losing a millisecond', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 10 * uptimeBucketMs }),
        fc.integer({ min: 0, max: 5 * uptimeBucketMs }),
        (offset, length) => {
          const buckets = splitIntoBuckets(t0 + offset, t0 + offset + length)
          assert.equal(
            buckets.reduce((sum, bucket) => sum + bucket.onlineMs, 0),
            length,
          )
          for (const bucket of buckets) {
            assert.equal(bucket.bucketStartMs % uptimeBucketMs, 0)
            assert.ok(bucket.onlineMs > 0 && bucket.onlineMs <= uptimeBucketMs)
          }
        },
      ),
    )
  })

  it('merges durations of the same bucket', () => {
    assert.deepEqual(
      mergeBuckets([
        [{ bucketStartMs: t0, onlineMs: 5 }],
        [
          { bucketStartMs: t0, onlineMs: 7 },
          { bucketStartMs: t0 + uptimeBucketMs, onlineMs: 1 },
        ],
      ]),
      [
        { bucketStartMs: t0, onlineMs: 12 },
        { bucketStartMs: t0 + uptimeBucketMs, onlineMs: 1 },
      ],
    )
  })
})

describe('presence', () => {
  it('counts uptime up to the last heartbeat, once', () => {
    const presence = new Presence(rules)
    presence.connect('dev_a', 's1', t0, null, 'test')
    presence.heartbeat('dev_a', 's1', t0 + 10_000)
    presence.heartbeat('dev_a', 's1', t0 + 20_000)
    const first = presence.drainFlush()
    assert.equal(total(first), 20_000)
    assert.equal(first[0]?.lastSeenAtMs, t0 + 20_000)
    assert.equal(total(presence.drainFlush()), 0)
  })

  it('expires a silent device after the window; its uptime ends at its last heartbeat', () => {
    const presence = new Presence(rules)
    presence.connect('dev_a', 's1', t0, null, 'test')
    presence.heartbeat('dev_a', 's1', t0 + 10_000)
    assert.deepEqual(presence.expire(t0 + 40_000), [])
    const expired = presence.expire(t0 + 40_001)
    assert.equal(expired.length, 1)
    assert.equal(expired[0]?.change.reasonCode, 'missed_heartbeats')
    assert.match(expired[0]?.change.reason ?? '', /no heartbeat for 30 s/)
    assert.equal(presence.isConnected('dev_a'), false)
    assert.equal(total(presence.drainFlush()), 10_000)
  })

  it('credits a restart inside the grace window, and not one outside it', () => {
    const presence = new Presence(rules)
    const quick = presence.connect('dev_a', 's2', t0 + 60_000, t0, 'test')
    assert.equal(quick.creditedGapMs, 60_000)
    assert.match(quick.change.reason, /restart grace/)
    assert.equal(total(presence.drainFlush()), 60_000)
    const slow = presence.connect('dev_b', 's3', t0 + 200_000, t0, 'test')
    assert.equal(slow.creditedGapMs, 0)
    assert.equal(total(presence.drainFlush()), 0)
  })

  it('ignores heartbeats and closes from a replaced session', () => {
    const presence = new Presence(rules)
    presence.connect('dev_a', 'old', t0, null, 'test')
    presence.connect('dev_a', 'new', t0 + 1_000, null, 'test')
    assert.equal(presence.heartbeat('dev_a', 'old', t0 + 2_000), false)
    assert.equal(presence.disconnect('dev_a', 'old', t0 + 3_000, { kind: 'closed', detail: 'x' }), undefined)
    assert.equal(presence.sessionOf('dev_a'), 'new')
    assert.equal(presence.connectedCount, 1)
  })

  it('never credits more uptime than wall time, whatever the event order', () => {
    type Event = { kind: 'heartbeat' | 'disconnect' | 'connect' | 'expire' | 'flush'; advanceMs: number }
    const event = fc.record({
      kind: fc.constantFrom<Event['kind']>(
        'heartbeat',
        'heartbeat',
        'heartbeat',
        'disconnect',
        'connect',
        'expire',
        'flush',
      ),
      advanceMs: fc.integer({ min: 0, max: 60_000 }),
    })
    fc.assert(
      fc.property(fc.array(event, { maxLength: 60 }), (events) => {
        const presence = new Presence(rules)
        let now = t0
        let session = 0
        let lastSeen: number | null = null
        let credited = 0
        presence.connect('dev', `s${session}`, now, null, 'test')
        for (const step of events) {
          now += step.advanceMs
          if (step.kind === 'heartbeat') presence.heartbeat('dev', `s${session}`, now)
          if (step.kind === 'disconnect')
            presence.disconnect('dev', `s${session}`, now, { kind: 'closed', detail: 'x' })
          if (step.kind === 'expire') presence.expire(now)
          if (step.kind === 'connect' && !presence.isConnected('dev')) {
            session += 1
            presence.connect('dev', `s${session}`, now, lastSeen, 'test')
          }
          const drained = presence.drainFlush()
          credited += total(drained)
          for (const entry of drained) lastSeen = Math.max(lastSeen ?? 0, entry.lastSeenAtMs)
        }
        assert.ok(credited <= now - t0, `credited ${credited} ms in ${now - t0} ms`)
      }),
    )
  })
})
