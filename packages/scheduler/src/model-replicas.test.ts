import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { planModelReplicas, type ServingDevice, type ServedModelSpec } from './model-replicas.ts'

const device = (deviceId: string, floor: bigint, overrides: Partial<ServingDevice> = {}): ServingDevice => ({
  deviceId,
  eligible: true,
  gpuCount: 1,
  vramMibPerGpu: 24_576,
  memoryMib: 65_536,
  floorMicroUsdPerGpuHour: floor,
  ...overrides,
})
const model = (modelId: string, overrides: Partial<ServedModelSpec> = {}): ServedModelSpec => ({
  modelId,
  requiredVramMib: 8,
  minReplicas: 1,
  maxReplicas: 4,
  ...overrides,
})

describe('model replica placement', () => {
  it('starts the minimum on the cheapest idle devices that fit', () => {
    const decisions = planModelReplicas(
      [model('m1', { minReplicas: 2, requiredVramMib: 30_000 }), model('m2')],
      [
        device('d-cheap', 100_000n),
        device('d-big', 400_000n, { vramMibPerGpu: 81_920 }),
        device('d-big2', 300_000n, { vramMibPerGpu: 81_920 }),
        device('d-mid', 200_000n),
      ],
      [],
    )
    assert.deepEqual(decisions.stop, [])
    assert.deepEqual(decisions.start, [
      { deviceId: 'd-big2', modelId: 'm1' },
      { deviceId: 'd-big', modelId: 'm1' },
      { deviceId: 'd-cheap', modelId: 'm2' },
    ])
  })

  it('serves small models from the memory of CPU-only devices', () => {
    const cpu = (deviceId: string, memoryMib: number) =>
      device(deviceId, 1n, { gpuCount: 0, vramMibPerGpu: 0, memoryMib })
    const decisions = planModelReplicas(
      [model('m1', { minReplicas: 2, requiredVramMib: 1_000 })],
      [cpu('small', 2_000), cpu('large', 8_000)],
      [],
    )
    assert.deepEqual(decisions.start, [{ deviceId: 'large', modelId: 'm1' }])
  })

  it('stops replicas on devices that were hired, and those no longer wanted, least busy first', () => {
    const decisions = planModelReplicas(
      [model('m1', { minReplicas: 1, wantedByLoad: 1 })],
      [
        device('d1', 100n, { eligible: false, ineligibleReason: 'rented for a cluster' }),
        device('d2', 100n),
        device('d3', 200n),
      ],
      [
        { replicaId: 'mr_1', deviceId: 'd1', modelId: 'm1', draining: false, inFlight: 0 },
        { replicaId: 'mr_2', deviceId: 'd2', modelId: 'm1', draining: false, inFlight: 3 },
        { replicaId: 'mr_3', deviceId: 'd3', modelId: 'm1', draining: false, inFlight: 1 },
      ],
    )
    assert.deepEqual(decisions.stop, [
      { replicaId: 'mr_1', reason: 'rented for a cluster' },
      { replicaId: 'mr_3', reason: 'fewer replicas wanted' },
    ])
    assert.deepEqual(decisions.start, [])
  })

  it('never starts two replicas on one device, nor on a device still draining one, nor beyond max', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            min: fc.integer({ min: 0, max: 3 }),
            extra: fc.integer({ min: 0, max: 3 }),
            load: fc.integer({ min: 0, max: 8 }),
          }),
          { minLength: 1, maxLength: 4 },
        ),
        fc.array(fc.record({ eligible: fc.boolean(), floor: fc.bigInt({ min: 0n, max: 10n }) }), {
          maxLength: 12,
        }),
        fc.array(fc.record({ device: fc.nat(11), model: fc.nat(3), draining: fc.boolean() }), {
          maxLength: 6,
        }),
        (modelSpecs, deviceSpecs, replicaSpecs) => {
          const models = modelSpecs.map((spec, index) =>
            model(`m${index}`, {
              minReplicas: spec.min,
              maxReplicas: spec.min + spec.extra,
              wantedByLoad: spec.load,
            }),
          )
          const devices = deviceSpecs.map((spec, index) =>
            device(`d${index}`, spec.floor, { eligible: spec.eligible }),
          )
          const seen = new Set<string>()
          const replicas = replicaSpecs
            .filter(
              (spec) =>
                spec.device < devices.length && !seen.has(`d${spec.device}`) && seen.add(`d${spec.device}`),
            )
            .map((spec, index) => ({
              replicaId: `mr_${index}`,
              deviceId: `d${spec.device}`,
              modelId: `m${spec.model}`,
              draining: spec.draining,
              inFlight: 0,
            }))
          const { start, stop } = planModelReplicas(models, devices, replicas)
          const startedOn = start.map((entry) => entry.deviceId)
          assert.equal(new Set(startedOn).size, startedOn.length)
          for (const entry of start) {
            assert.ok(!replicas.some((replica) => replica.deviceId === entry.deviceId))
            assert.ok(devices.find((candidate) => candidate.deviceId === entry.deviceId)!.eligible)
          }
          const stopped = new Set(stop.map((entry) => entry.replicaId))
          for (const spec of models) {
            const kept = replicas.filter(
              (r) => r.modelId === spec.modelId && !r.draining && !stopped.has(r.replicaId),
            ).length
            const started = start.filter((entry) => entry.modelId === spec.modelId).length
            assert.ok(kept + started <= spec.maxReplicas)
          }
        },
      ),
    )
  })
})
