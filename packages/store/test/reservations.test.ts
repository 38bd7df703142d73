import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import fc from 'fast-check'
import { openStore, type Store } from '@gpumesh/store'
import { createTestDatabase, enrollTestDevice, storeBackends, type TestDatabase } from '@gpumesh/testing'

// Gang reservations: all of a cluster's devices or none, and no device held by two clusters, even when
// many coordinators reserve at once against one PostgreSQL.

const t0 = Date.UTC(2026, 0, 1)
const deviceCount = 12

async function seedDevices(store: Store): Promise<string[]> {
  await store.createAccount({ id: 'acc_renter', name: 'r', roles: ['renter', 'supplier'], createdAtMs: t0 })
  const ids: string[] = []
  for (let index = 0; index < deviceCount; index += 1) {
    const id = `dev_${String(index).padStart(2, '0')}`
    await enrollTestDevice(store, id, 'acc_renter', t0)
    ids.push(id)
  }
  return ids
}

for (const backend of storeBackends) {
  describe(`gang reservations on ${backend.name}`, () => {
    let store: Store
    let cleanup: () => Promise<void>
    let devices: string[]
    before(async () => {
      ;({ store, cleanup } = await backend.open())
      devices = await seedDevices(store)
    })
    after(() => cleanup())

    it('reserves a whole gang, refuses an overlapping one whole, and releases', async () => {
      assert.deepEqual(
        await store.reserveGang({
          clusterId: 'cls_a',
          accountId: 'acc_renter',
          deviceIds: devices.slice(0, 3),
          nowMs: t0,
        }),
        { ok: true },
      )
      const overlap = await store.reserveGang({
        clusterId: 'cls_b',
        accountId: 'acc_renter',
        deviceIds: devices.slice(2, 5),
        nowMs: t0,
      })
      assert.deepEqual(overlap, { ok: false, alreadyReserved: [devices[2]] })
      // nothing of the refused gang was kept
      assert.deepEqual(await store.listReservedDeviceIds(), devices.slice(0, 3))
      assert.deepEqual(await store.releaseReservations('cls_a'), devices.slice(0, 3))
      assert.deepEqual(await store.listReservedDeviceIds(), [])
    })
  })
}

describe('concurrent gang reservations on PostgreSQL', () => {
  let database: TestDatabase
  const stores: Store[] = []
  let devices: string[]
  before(async () => {
    database = await createTestDatabase()
    // Several coordinator processes: separate stores (pools) over one database.
    for (let index = 0; index < 4; index += 1) {
      stores.push(
        await openStore({ kind: 'postgres', connectionString: database.connectionString, maxConnections: 4 }),
      )
    }
    devices = await seedDevices(stores[0]!)
  })
  after(async () => {
    for (const store of stores) await store.close()
    await database.drop()
  })

  it('never gives one device to two clusters, and never splits a gang', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.uniqueArray(fc.integer({ min: 0, max: deviceCount - 1 }), { minLength: 1, maxLength: 5 }),
          {
            minLength: 2,
            maxLength: 16,
          },
        ),
        async (gangs) => {
          const clusterIds = gangs.map((_, index) => `cls_${index}_${Math.random().toString(36).slice(2, 8)}`)
          const outcomes = await Promise.all(
            gangs.map((gang, index) =>
              stores[index % stores.length]!.reserveGang({
                clusterId: clusterIds[index]!,
                accountId: 'acc_renter',
                deviceIds: gang.map((device) => devices[device]!),
                nowMs: t0,
              }),
            ),
          )
          const reserved = await stores[1]!.listReservedDeviceIds()
          const granted = gangs
            .filter((_, index) => outcomes[index]!.ok)
            .map((gang) => gang.map((device) => devices[device]!))
          const grantedDevices = granted.flat().sort()
          // every granted gang is held whole, and nobody else holds anything
          assert.deepEqual(reserved, grantedDevices)
          // no device in two granted gangs
          assert.equal(new Set(grantedDevices).size, grantedDevices.length)
          // the first gang to ask can always be granted something: at least one gang wins
          assert.ok(granted.length >= 1)
          for (const clusterId of clusterIds) await stores[2]!.releaseReservations(clusterId)
        },
      ),
      { numRuns: 25 },
    )
  })
})
