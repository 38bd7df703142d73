// How long the coordinator's periodic store calls take at a given fleet size, on PGlite (where they run on the
// coordinator's own thread and block its event loop for their whole duration) or PostgreSQL. Supports the
// findings of worker-connections.ts: what each heartbeat flush, reliability refresh and change-feed read costs.
//
//   node bench/store-ops.ts [--devices 20000] [--store pglite|postgres]
//
// Seeds devices through store.insertEnrollmentToken + store.enroll (the real enrollment path), then times each
// periodic call the coordinator makes with that many connected workers. PGlite uses a temporary dataDir (as a
// deployed coordinator does); everything is removed at the end.

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { openStore, type Store } from '@gpumesh/store'
import { createTestDatabase, type TestDatabase } from '@gpumesh/testing'
import { table } from './common.ts'

const { values: flags } = parseArgs({
  options: { devices: { type: 'string', default: '20000' }, store: { type: 'string', default: 'pglite' } },
})
const count = Number(flags.devices)
if (flags.store !== 'pglite' && flags.store !== 'postgres')
  throw new Error('--store must be pglite or postgres')

const dataDir = mkdtempSync(join(tmpdir(), 'gpumesh-bench-store-ops-'))
let database: TestDatabase | undefined
let store: Store | undefined
const rows: (string | number)[][] = []

async function time(label: string, action: () => Promise<unknown>): Promise<void> {
  const startedAt = performance.now()
  const result = await action()
  const took = performance.now() - startedAt
  rows.push([
    label,
    took.toFixed(0),
    typeof result === 'number' ? result : Array.isArray(result) ? result.length : '',
  ])
}

try {
  if (flags.store === 'postgres') {
    database = await createTestDatabase()
    store = await openStore({ kind: 'postgres', connectionString: database.connectionString })
  } else {
    store = await openStore({ kind: 'pglite', dataDir: join(dataDir, 'pglite') })
  }
  const nowMs = Date.now()
  const ids = Array.from({ length: count }, (_, index) => `dev_bench${String(index).padStart(15, '0')}`)
  await store.createAccount({ id: 'acc_bench', name: 'bench', roles: ['supplier'], createdAtMs: nowMs })
  let startedAt = performance.now()
  for (const [index, id] of ids.entries()) {
    const tokenId = `enr_bench${String(index).padStart(15, '0')}`
    await store.insertEnrollmentToken({
      id: tokenId,
      accountId: 'acc_bench',
      label: null,
      secretSha256: 'bench',
      createdAtMs: nowMs,
      expiresAtMs: nowMs + 3_600_000,
      usedAtMs: null,
      usedByPublicKey: null,
      deviceId: null,
    })
    await store.enroll({
      tokenId,
      tokenSecretSha256: 'bench',
      publicKey: `bench-key-${index}`,
      newDeviceId: id,
      nowMs: nowMs - 3_600_000,
    })
  }
  console.log(
    `store-ops: ${count} devices enrolled on ${store.kind} in ${((performance.now() - startedAt) / 1000).toFixed(1)} s`,
  )

  const online = ids.map((deviceId) => ({
    deviceId,
    state: 'online' as const,
    reasonCode: 'connected' as const,
    reason: 'worker connected',
    atMs: nowMs,
  }))
  await time('applyDeviceStateChanges, 1 change (one connect), x200', async () => {
    for (const change of online.slice(0, 200)) await store!.applyDeviceStateChanges([change])
  })
  await time(`applyDeviceStateChanges, ${count} changes in one call`, () =>
    store!.applyDeviceStateChanges(online),
  )
  startedAt = performance.now()
  for (let flush = 0; flush < 3; flush += 1) {
    const bucketStartMs = Math.floor(Date.now() / 3_600_000) * 3_600_000
    await time(`flushHeartbeats, ${count} entries (every 5 s)`, () =>
      store!.flushHeartbeats(
        ids.map((deviceId) => ({
          deviceId,
          lastSeenAtMs: Date.now(),
          uptimeBuckets: [{ bucketStartMs, onlineMs: 5_000 }],
        })),
      ),
    )
  }
  await time('sweepSilentDevices, none silent (every 5 s)', () =>
    store!.sweepSilentDevices(Date.now() - 40_000, Date.now(), 'bench'),
  )
  await time('refreshReliability, all change (every 60 s)', () =>
    store!.refreshReliability(Date.now(), 30 * 86_400_000, 3_600_000),
  )
  await time('refreshReliability, none change', () =>
    store!.refreshReliability(Date.now(), 30 * 86_400_000, 3_600_000),
  )
  await time('listDevicesChangedSince, nothing new (every 250 ms)', () =>
    store!.listDevicesChangedSince(1n << 60n, 5_000),
  )
  await time('listDevicesChangedSince, a page of 5,000', () => store!.listDevicesChangedSince(0n, 5_000))
  console.log(table(['store call', 'ms', 'rows'], rows))
} finally {
  await store?.close()
  await database?.drop()
  rmSync(dataDir, { recursive: true, force: true })
}
