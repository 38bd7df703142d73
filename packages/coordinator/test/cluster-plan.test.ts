import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Coordinator } from '@gpumesh/coordinator'
import type { HardwareInventory } from '@gpumesh/protocol'
import type { Store } from '@gpumesh/store'
import {
  enrollTestDevice,
  simulatedCapabilities,
  startTestCoordinator,
  storeBackends,
} from '@gpumesh/testing'

// POST /v1/clusters/dry-run over a real store and the coordinator's own marketplace index.

const t0 = Date.UTC(2026, 0, 1)

function inventory(productName: string, modelKey: string, gpus: number, vramMib: number): HardwareInventory {
  return {
    hostname: 'h',
    gpus: Array.from({ length: gpus }, (_, index) => ({
      index,
      uuid: `GPU-${modelKey}-${index}-${Math.random()}`,
      productName,
      modelKey,
      vramMib,
      migMode: 'disabled' as const,
      migInstances: [],
    })),
    cpu: { model: 'EPYC', logicalCores: 64, architecture: 'x64' },
    memoryMib: 512 * 1024,
    disk: { path: '/', totalMib: 1, freeMib: 1 },
    os: { platform: 'linux', release: '6' },
    probeSource: 'nvidia-smi',
    warnings: [],
  }
}

for (const backend of storeBackends) {
  describe(`cluster dry run on ${backend.name}`, () => {
    let store: Store
    let coordinator: Coordinator
    let cleanup: () => Promise<void>
    let renterKey: string
    let supplierKey: string

    const addDevice = async (
      id: string,
      hardware: HardwareInventory,
      region: string,
      country: string,
      price: bigint,
    ) => {
      await enrollTestDevice(store, id, 'acc_supplier', t0)
      await store.saveDeviceReport(id, {
        hostname: id,
        inventory: hardware,
        region,
        country,
        pricing: { mode: 'fixed', askingPriceMicroUsd: price },
        capabilities: simulatedCapabilities(),
      })
      // seen now: the coordinator's sweep takes devices silent since long ago offline
      await store.applyDeviceStateChanges([
        { deviceId: id, state: 'online', reasonCode: 'connected', reason: 'test', atMs: Date.now() },
      ])
      await store.recordVerificationOutcome(id, {
        state: 'verified',
        reason: 'test',
        failures: 0,
        nextVerificationAtMs: t0,
      })
    }

    before(async () => {
      const opened = await backend.open()
      store = opened.store
      coordinator = await startTestCoordinator(store, { runBackgroundLoops: false })
      cleanup = async () => {
        await coordinator.stop()
        await opened.cleanup()
      }
      const signup = async (roles: string[]) =>
        (
          await coordinator.app.inject({ method: 'POST', url: '/v1/accounts', payload: { name: 'x', roles } })
        ).json().apiKey.key as string
      renterKey = await signup(['renter'])
      supplierKey = await signup(['supplier'])
      await store.createAccount({
        id: 'acc_supplier',
        name: 'supplier',
        roles: ['supplier'],
        createdAtMs: t0,
      })
      const a100 = (gpus: number) => inventory('NVIDIA A100-SXM4-80GB', 'a100-80gb', gpus, 81_920)
      await addDevice('dev_de1', a100(8), 'eu-west', 'DE', 1_600_000n)
      await addDevice('dev_de2', a100(8), 'eu-west', 'DE', 1_700_000n)
      await addDevice('dev_us1', a100(8), 'us-east', 'US', 1_200_000n)
      await addDevice(
        'dev_4090',
        inventory('NVIDIA GeForce RTX 4090', 'rtx-4090', 1, 24_564),
        'eu-west',
        'DE',
        400_000n,
      )
      await coordinator.tick()
    })
    after(() => cleanup())

    const dryRun = (payload: object, key = renterKey) =>
      coordinator.app.inject({
        method: 'POST',
        url: '/v1/clusters/dry-run',
        headers: { authorization: `Bearer ${key}` },
        payload,
      })

    it('places A100:16 on two nodes close together, priced for the duration', async () => {
      const response = await dryRun({ gpus: 'A100:16', durationHours: 2 })
      assert.equal(response.statusCode, 200, response.body)
      const plan = response.json()
      assert.equal(plan.placeable, true)
      assert.deepEqual(plan.request, { nodes: 2, gpusPerNode: 8, gpuModel: 'a100', durationHours: 2 })
      // the two German nodes are nearer each other than the cheaper one in the US
      assert.deepEqual(
        plan.nodes.map((node: { deviceId: string }) => node.deviceId),
        ['dev_de1', 'dev_de2'],
      )
      assert.equal(plan.pricePerHourUsd, '26.40')
      assert.equal(plan.totalUsd, '52.80')
    })

    it('names the blocking constraint and what the market offers without it', async () => {
      const plan = (await dryRun({ gpus: 'A100:16', maxPricePerGpuHourUsd: '1.50' })).json()
      assert.equal(plan.placeable, false)
      assert.equal(plan.blockingConstraint, 'price')
      assert.match(plan.detail, /1 node fit, 2 needed/)
      assert.equal(plan.withoutBlockingConstraint.pricePerHourUsd, '26.40')
      const models = Object.fromEntries(
        plan.market.map((entry: { gpuModel: string; gpus: number }) => [entry.gpuModel, entry.gpus]),
      )
      assert.deepEqual(models, { 'a100-80gb': 24, 'rtx-4090': 1 })
      const noSuchModel = (await dryRun({ gpus: 'H100:8' })).json()
      assert.equal(noSuchModel.blockingConstraint, 'gpu_model')
    })

    it('refuses bad requests naming the field, and suppliers without the renter role', async () => {
      const bad = await dryRun({ gpus: 'A100:0' })
      assert.equal(bad.statusCode, 400)
      assert.match(bad.body, /gpus/)
      const contradiction = await dryRun({ gpus: 'A100:8', gpuModel: 'h100' })
      assert.equal(contradiction.statusCode, 400)
      assert.equal((await dryRun({ nodes: 1 }, supplierKey)).statusCode, 403)
    })
  })
}
