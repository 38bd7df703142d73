import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Coordinator } from '@gpumesh/coordinator'
import type { HardwareInventory } from '@gpumesh/protocol'
import type { Store } from '@gpumesh/store'
import {
  apiCaller,
  eventually,
  gpuInventory,
  simulatedWorker,
  startTestCoordinator,
  storeBackends,
  type SimulatedWorker,
} from '@gpumesh/testing'

// Issue 22 finding 8: the public explorer showed a machine's hostname, kernel release, distribution, disks
// and the worker's state-dir path. The public sees what a renter needs; the device's account sees it all.

const hostDetails = {
  hostname: 'gpu-box-17.corp.example',
  release: '6.8.0-45-generic',
  distribution: 'Ubuntu 24.04.1 LTS',
  statePath: '/srv/private/gpumesh-state',
  gpuSerial: '1654321098765',
  gpuUuid: 'GPU-6a1f0c2e-private-uuid',
  warning: 'nvidia-smi at /opt/private/bin/nvidia-smi is old',
}

function privateInventory(): HardwareInventory {
  const inventory = gpuInventory('h100', 'NVIDIA H100 80GB HBM3', 1)
  return {
    ...inventory,
    hostname: hostDetails.hostname,
    gpus: inventory.gpus.map((gpu) => ({ ...gpu, uuid: hostDetails.gpuUuid, serial: hostDetails.gpuSerial })),
    disk: { path: hostDetails.statePath, totalMib: 1_900_000, freeMib: 1_234_567 },
    os: { platform: 'linux', release: hostDetails.release, distribution: hostDetails.distribution },
    warnings: [hostDetails.warning],
  }
}

/** Every host detail that appears anywhere in the text. */
const leakedIn = (text: string) =>
  Object.entries(hostDetails)
    .filter(([, value]) => text.includes(value))
    .map(([name]) => name)
    .concat(text.includes('1234567') || text.includes('1900000') ? ['disk sizes'] : [])

for (const backend of storeBackends) {
  describe(`explorer privacy on ${backend.name}`, () => {
    let store: Store
    let cleanup: () => Promise<void>
    let coordinator: Coordinator
    let baseUrl: string
    let ownerKey: string
    let otherKey: string
    let worker: SimulatedWorker
    const call = apiCaller(() => baseUrl)

    before(async () => {
      ;({ store, cleanup } = await backend.open())
      // A long cache: an owner's read must never be what the public is later served from it.
      coordinator = await startTestCoordinator(store, { runBackgroundLoops: false, explorerCacheMs: 60_000 })
      baseUrl = await coordinator.listen()
      const owner = await call('POST', '/v1/accounts', undefined, { name: 'owner', roles: ['supplier'] })
      ownerKey = owner.body.apiKey.key
      otherKey = (await call('POST', '/v1/accounts', undefined, { name: 'other', roles: ['renter'] })).body
        .apiKey.key
      worker = await simulatedWorker(baseUrl, ownerKey, { inventory: privateInventory() })
      await eventually(
        async () => (await store.getDevice(worker.deviceId))?.inventory != null,
        'inventory stored',
      )
    })
    after(async () => {
      worker?.close()
      await coordinator?.stop()
      await cleanup?.()
    })

    it('finding 8: the public device list and detail show no host details', async () => {
      const list = await call('GET', '/v1/explorer/devices')
      assert.equal(list.status, 200)
      assert.deepEqual(leakedIn(JSON.stringify(list.body)), [])
      const row = list.body.devices.find((device: any) => device.id === worker.deviceId)
      assert.equal(row.hostname, null)
      assert.equal(row.gpuModelKey, 'h100')

      for (const key of [undefined, otherKey]) {
        const detail = await call('GET', `/v1/explorer/devices/${worker.deviceId}`, key)
        assert.equal(detail.status, 200)
        assert.deepEqual(leakedIn(JSON.stringify(detail.body)), [], key ? 'another account' : 'no key')
        assert.equal(detail.body.view, 'public')
        assert.equal(detail.body.device.hostname, null)
        // What a renter needs is there.
        assert.deepEqual(
          detail.body.inventory.gpus.map((gpu: any) => [gpu.modelKey, gpu.vramMib]),
          privateInventory().gpus.map((gpu) => [gpu.modelKey, gpu.vramMib]),
        )
        assert.equal(detail.body.inventory.cpu.logicalCores, privateInventory().cpu.logicalCores)
        assert.deepEqual(detail.body.inventory.os, { platform: 'linux' })
        assert.equal(detail.body.inventory.disk, undefined)
        assert.equal(detail.body.inventory.hostname, undefined)
      }
    })

    it("finding 8: the device's own account sees the whole machine, never served to the public after", async () => {
      const owned = await call('GET', `/v1/explorer/devices/${worker.deviceId}`, ownerKey)
      assert.equal(owned.status, 200)
      assert.equal(owned.body.view, 'owner')
      assert.equal(owned.body.device.hostname, hostDetails.hostname)
      assert.deepEqual(owned.body.inventory, privateInventory())
      const publicAfter = await call('GET', `/v1/explorer/devices/${worker.deviceId}`)
      assert.equal(publicAfter.body.view, 'public')
      assert.deepEqual(leakedIn(JSON.stringify(publicAfter.body)), [])
      // A wrong key is refused rather than read as the public.
      const wrong = await call('GET', `/v1/explorer/devices/${worker.deviceId}`, 'gpm_wrong_key')
      assert.equal(wrong.status, 401)
    })
  })
}
