import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { heartbeatFlushChunkSize } from '@gpumesh/coordinator'
import { openStore, type HeartbeatFlushEntry, type Store } from '@gpumesh/store'
import { enrollTestDevice, ManualClock, startTestCoordinator } from '@gpumesh/testing'

// Heartbeats of many devices reach the store in chunks, each device's uptime exactly once.

describe('heartbeat flush', () => {
  it('writes many devices in chunks, each once', async () => {
    const inner = await openStore({ kind: 'pglite' })
    const chunks: number[] = []
    const store: Store = new Proxy(inner, {
      get(target, property, receiver) {
        if (property === 'flushHeartbeats') {
          return (entries: readonly HeartbeatFlushEntry[]) => {
            chunks.push(entries.length)
            return target.flushHeartbeats(entries)
          }
        }
        const value = Reflect.get(target, property, receiver)
        return typeof value === 'function' ? value.bind(target) : value
      },
    })
    const clock = new ManualClock(Date.now())
    const deviceCount = heartbeatFlushChunkSize * 2 + 250
    try {
      await inner.createAccount({ id: 'acc_s', name: 's', roles: ['supplier'], createdAtMs: clock.nowMs() })
      for (let index = 0; index < deviceCount; index += 1)
        await enrollTestDevice(inner, `dev_${index}`, 'acc_s', clock.nowMs())
      const coordinator = await startTestCoordinator(store, { runBackgroundLoops: false }, clock)
      const started = clock.nowMs()
      for (let index = 0; index < deviceCount; index += 1) {
        coordinator.presence.connect(`dev_${index}`, `s${index}`, started, null, 'test')
      }
      clock.advanceMs(4_000)
      for (let index = 0; index < deviceCount; index += 1)
        coordinator.presence.heartbeat(`dev_${index}`, `s${index}`, clock.nowMs())
      await coordinator.tick()
      assert.deepEqual(chunks, [heartbeatFlushChunkSize, heartbeatFlushChunkSize, 250])
      for (const id of ['dev_0', `dev_${heartbeatFlushChunkSize}`, `dev_${deviceCount - 1}`]) {
        assert.equal((await inner.getDevice(id))?.uptimeMsTotal, 4_000)
      }
      await coordinator.tick()
      assert.equal(chunks.length, 3 + 3, 'the next flush writes each device once more, with nothing new')
      assert.equal((await inner.getDevice('dev_7'))?.uptimeMsTotal, 4_000)
      await coordinator.stop()
    } finally {
      await inner.close()
    }
  })
})
