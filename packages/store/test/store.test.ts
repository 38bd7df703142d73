import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { storeBackends } from '@gpumesh/testing'
import { openStore, type Store } from '@gpumesh/store'

// One compliance suite, run on every backend: the embedded default cannot drift from PostgreSQL.

const t0 = Date.UTC(2026, 0, 1)
const hourMs = 3_600_000

for (const backend of storeBackends) {
  describe(`store on ${backend.name}`, () => {
    let store: Store
    let cleanup: () => Promise<void>
    before(async () => {
      ;({ store, cleanup } = await backend.open())
      await store.createAccount({
        id: 'acc_supplier',
        name: 'supplier',
        roles: ['supplier'],
        createdAtMs: t0,
      })
      await store.createAccount({
        id: 'acc_other',
        name: 'other',
        roles: ['supplier', 'renter'],
        createdAtMs: t0,
      })
    })
    after(() => cleanup())

    const issueToken = async (id: string, accountId = 'acc_supplier', expiresAtMs = t0 + hourMs) => {
      await store.insertEnrollmentToken({
        id,
        accountId,
        label: null,
        secretSha256: `hash-${id}`,
        createdAtMs: t0,
        expiresAtMs,
        usedAtMs: null,
        usedByPublicKey: null,
        deviceId: null,
      })
    }

    it('counts accounts by role', async () => {
      assert.equal(await store.countAccountsWithRole('supplier'), 2)
      assert.equal(await store.countAccountsWithRole('operator'), 0)
    })

    it('revokes only the owner account key, once', async () => {
      await store.insertApiKey({
        id: 'key_a',
        accountId: 'acc_supplier',
        name: 'ci',
        roles: ['supplier'],
        secretSha256: 'x',
        createdAtMs: t0,
        lastUsedAtMs: null,
        revokedAtMs: null,
      })
      assert.equal(await store.revokeApiKey('acc_other', 'key_a', t0 + 1), false)
      assert.equal((await store.getApiKey('key_a'))?.revokedAtMs, null)
      assert.equal(await store.revokeApiKey('acc_supplier', 'key_a', t0 + 2), true)
      assert.equal(await store.revokeApiKey('acc_supplier', 'key_a', t0 + 3), true)
      assert.equal((await store.getApiKey('key_a'))?.revokedAtMs, t0 + 2)
    })

    it('records key use at most once per interval', async () => {
      await store.touchApiKey('key_a', t0 + 10_000, 60_000)
      await store.touchApiKey('key_a', t0 + 20_000, 60_000)
      assert.equal((await store.getApiKey('key_a'))?.lastUsedAtMs, t0 + 10_000)
      await store.touchApiKey('key_a', t0 + 80_000, 60_000)
      assert.equal((await store.getApiKey('key_a'))?.lastUsedAtMs, t0 + 80_000)
    })

    it('enrolls once per token and keeps a machine identity across re-enrollment', async () => {
      await issueToken('enr_1')
      const request = {
        tokenId: 'enr_1',
        tokenSecretSha256: 'hash-enr_1',
        publicKey: 'pk-1',
        newDeviceId: 'dev_1',
        nowMs: t0,
      }
      assert.deepEqual(await store.enroll({ ...request, tokenSecretSha256: 'wrong' }), {
        ok: false,
        reason: 'unknown_token',
      })
      assert.deepEqual(await store.enroll(request), {
        ok: true,
        deviceId: 'dev_1',
        accountId: 'acc_supplier',
        reenrolled: false,
      })
      // the same worker retrying (its reply was lost) gets the same device back
      assert.deepEqual(await store.enroll({ ...request, newDeviceId: 'dev_retry' }), {
        ok: true,
        deviceId: 'dev_1',
        accountId: 'acc_supplier',
        reenrolled: true,
      })
      // another key presenting a used token is refused
      assert.deepEqual(await store.enroll({ ...request, publicKey: 'pk-2', newDeviceId: 'dev_2' }), {
        ok: false,
        reason: 'already_used',
      })
      // a fresh token with the known key is the same device, not a duplicate
      await issueToken('enr_2')
      assert.deepEqual(
        await store.enroll({
          ...request,
          tokenId: 'enr_2',
          tokenSecretSha256: 'hash-enr_2',
          newDeviceId: 'dev_dup',
        }),
        { ok: true, deviceId: 'dev_1', accountId: 'acc_supplier', reenrolled: true },
      )
      assert.equal(await store.getDevice('dev_dup'), undefined)
      assert.equal((await store.listDevices('acc_supplier')).length, 1)
    })

    it('refuses expired tokens and keys enrolled to another account', async () => {
      await issueToken('enr_old', 'acc_supplier', t0 - 1)
      assert.deepEqual(
        await store.enroll({
          tokenId: 'enr_old',
          tokenSecretSha256: 'hash-enr_old',
          publicKey: 'pk-9',
          newDeviceId: 'dev_9',
          nowMs: t0,
        }),
        { ok: false, reason: 'expired' },
      )
      await issueToken('enr_other', 'acc_other')
      assert.deepEqual(
        await store.enroll({
          tokenId: 'enr_other',
          tokenSecretSha256: 'hash-enr_other',
          publicKey: 'pk-1',
          newDeviceId: 'dev_x',
          nowMs: t0,
        }),
        { ok: false, reason: 'key_of_other_account' },
      )
      // the refused attempt did not consume the token
      const tokens = await store.listEnrollmentTokens('acc_other')
      assert.equal(tokens.find((token) => token.id === 'enr_other')?.usedAtMs, null)
    })

    it('moves devices between states with a reason, and publishes each change', async () => {
      const before = await store.getDevice('dev_1')
      assert.ok(before)
      assert.equal(before.state, 'offline')
      assert.equal(before.stateReasonCode, 'enrolled')
      await store.applyDeviceStateChanges([
        {
          deviceId: 'dev_1',
          state: 'online',
          reasonCode: 'connected',
          reason: 'worker connected',
          atMs: t0 + 1000,
        },
      ])
      const changed = await store.listDevicesChangedSince(before.changeSeq, 10)
      assert.deepEqual(
        changed.map((device) => [device.id, device.state, device.stateReason]),
        [['dev_1', 'online', 'worker connected']],
      )
      const events = await store.listDeviceEvents('dev_1', 10)
      assert.deepEqual(
        events.map((event) => event.reasonCode),
        ['connected', 'enrolled'],
      )
    })

    it('keeps the newest state when changes arrive out of order, and records the time seen on going online', async () => {
      await store.applyDeviceStateChanges([
        {
          deviceId: 'dev_1',
          state: 'offline',
          reasonCode: 'connection_closed',
          reason: 'late retry',
          atMs: t0 + 500,
        },
      ])
      const device = await store.getDevice('dev_1')
      assert.equal(device?.state, 'online')
      assert.equal(device?.lastSeenAtMs, t0 + 1000)
      assert.equal((await store.listDeviceEvents('dev_1', 10)).length, 2)
    })

    it('stores the hardware report', async () => {
      const inventory = {
        hostname: 'gpu-box',
        gpus: [],
        cpu: { model: 'cpu', logicalCores: 8, architecture: 'x64' },
        memoryMib: 1024,
        disk: { path: '/', totalMib: 10, freeMib: 5 },
        os: { platform: 'linux', release: '6' },
        probeSource: 'none' as const,
        warnings: [],
      }
      await store.saveDeviceReport('dev_1', {
        hostname: 'gpu-box',
        inventory,
        region: 'eu-west',
        country: 'DE',
        pricing: { mode: 'fixed', askingPriceMicroUsd: 12_345_678_901_234_567n },
      })
      const device = await store.getDevice('dev_1')
      assert.deepEqual(device?.inventory, inventory)
      assert.equal(device?.askingPriceMicroUsd, 12_345_678_901_234_567n)
      assert.equal(device?.pricingMode, 'fixed')
      assert.equal(device?.country, 'DE')

      // A report without pricing keeps the device's; pricing set through the API is kept the same way.
      await store.saveDeviceReport('dev_1', {
        hostname: 'gpu-box',
        inventory,
        region: 'eu-west',
        country: 'DE',
      })
      assert.equal((await store.getDevice('dev_1'))?.askingPriceMicroUsd, 12_345_678_901_234_567n)
      assert.equal(
        await store.setDevicePricing('dev_1', { mode: 'auto', askingPriceMicroUsd: 900_000n }),
        true,
      )
      assert.equal(
        await store.setDevicePricing('dev_nope', { mode: 'auto', askingPriceMicroUsd: null }),
        false,
      )
      await store.saveDeviceReport('dev_1', {
        hostname: 'gpu-box',
        inventory,
        region: 'eu-west',
        country: 'DE',
      })
      const repriced = await store.getDevice('dev_1')
      assert.deepEqual([repriced?.pricingMode, repriced?.askingPriceMicroUsd], ['auto', 900_000n])
    })

    it('accumulates uptime per bucket across flushes and computes reliability from it', async () => {
      await store.flushHeartbeats([
        {
          deviceId: 'dev_1',
          lastSeenAtMs: t0 + 5000,
          uptimeBuckets: [{ bucketStartMs: t0, onlineMs: 4000 }],
        },
      ])
      await store.flushHeartbeats([
        {
          deviceId: 'dev_1',
          lastSeenAtMs: t0 + hourMs + 1000,
          uptimeBuckets: [
            { bucketStartMs: t0, onlineMs: hourMs - 5000 },
            { bucketStartMs: t0 + hourMs, onlineMs: 1000 },
          ],
        },
      ])
      assert.deepEqual(await store.listUptimeBuckets('dev_1', t0), [
        { bucketStartMs: t0, onlineMs: hourMs - 1000 },
        { bucketStartMs: t0 + hourMs, onlineMs: 1000 },
      ])
      const device = await store.getDevice('dev_1')
      assert.equal(device?.uptimeMsTotal, hourMs)
      assert.equal(device?.lastSeenAtMs, t0 + hourMs + 1000)

      // enrolled at t0; 2 h later it has been up 1 h: reliability 0.5
      await store.refreshReliability(t0 + 2 * hourMs, 30 * 24 * hourMs, hourMs)
      assert.equal((await store.getDevice('dev_1'))?.reliability, 0.5)
      // With less history than asked for, the device is new: no figure rather than a misleading one.
      await store.refreshReliability(t0 + 2 * hourMs, 30 * 24 * hourMs, 3 * hourMs)
      assert.equal((await store.getDevice('dev_1'))?.reliability, null)
      await store.refreshReliability(t0 + 2 * hourMs, 30 * 24 * hourMs, hourMs)
      assert.equal((await store.getDevice('dev_1'))?.reliability, 0.5)
    })

    it('sums duplicate entries for one device in a flush', async () => {
      const before = (await store.getDevice('dev_1'))!.uptimeMsTotal
      await store.flushHeartbeats([
        {
          deviceId: 'dev_1',
          lastSeenAtMs: t0 + hourMs + 1000,
          uptimeBuckets: [{ bucketStartMs: t0 + hourMs, onlineMs: 100 }],
        },
        {
          deviceId: 'dev_1',
          lastSeenAtMs: t0 + hourMs + 1000,
          uptimeBuckets: [{ bucketStartMs: t0 + hourMs, onlineMs: 200 }],
        },
      ])
      assert.equal((await store.getDevice('dev_1'))!.uptimeMsTotal, before + 300)
      const buckets = await store.listUptimeBuckets('dev_1', t0 + hourMs)
      assert.deepEqual(buckets, [{ bucketStartMs: t0 + hourMs, onlineMs: 1300 }])
    })

    it('sweeps online devices that nobody has heard from', async () => {
      assert.deepEqual(await store.sweepSilentDevices(t0 + hourMs, t0 + 2 * hourMs, 'silent'), [])
      assert.deepEqual(
        await store.sweepSilentDevices(t0 + 2 * hourMs, t0 + 2 * hourMs, 'no heartbeat for 30 s'),
        ['dev_1'],
      )
      const device = await store.getDevice('dev_1')
      assert.equal(device?.state, 'offline')
      assert.equal(device?.stateReason, 'no heartbeat for 30 s')
    })
  })
}

describe('embedded store', () => {
  it('keeps its data across restarts and migrates once', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'gpumesh-store-'))
    try {
      const first = await openStore({ kind: 'pglite', dataDir })
      await first.createAccount({ id: 'acc_1', name: 'a', roles: ['renter'], createdAtMs: t0 })
      await first.close()
      const second = await openStore({ kind: 'pglite', dataDir })
      assert.equal((await second.getAccount('acc_1'))?.name, 'a')
      await second.close()
    } finally {
      rmSync(dataDir, { recursive: true, force: true })
    }
  })
})
