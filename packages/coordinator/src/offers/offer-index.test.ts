import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { capable, incapable, type HardwareInventory } from '@gpumesh/protocol'
import type { DeviceRecord } from '@gpumesh/store'
import { normalizeModelQuery } from '@gpumesh/core'
import { OfferIndex } from './offer-index.ts'

const models = [
  { modelKey: 'h100', productName: 'NVIDIA H100 80GB HBM3', vramMib: 81559 },
  { modelKey: 'a100-40gb', productName: 'NVIDIA A100-SXM4-40GB', vramMib: 40960 },
  { modelKey: 'rtx-4090', productName: 'NVIDIA GeForce RTX 4090', vramMib: 24564 },
]

function device(
  id: string,
  overrides: Partial<DeviceRecord> & { model?: number; gpus?: number } = {},
): DeviceRecord {
  const model = models[overrides.model ?? 0]!
  const gpuCount = overrides.gpus ?? 1
  const inventory: HardwareInventory = {
    hostname: id,
    gpus: Array.from({ length: gpuCount }, (_, index) => ({
      index,
      uuid: `GPU-${id}-${index}`,
      productName: model.productName,
      modelKey: model.modelKey,
      vramMib: model.vramMib,
      migMode: 'disabled' as const,
      migInstances: [],
    })),
    cpu: { model: 'EPYC', logicalCores: 32, architecture: 'x64' },
    memoryMib: 256 * 1024,
    disk: { path: '/', totalMib: 1, freeMib: 1 },
    os: { platform: 'linux', release: '6' },
    probeSource: 'nvidia-smi',
    warnings: [],
  }
  return {
    id,
    accountId: 'acc',
    publicKey: id,
    hostname: id,
    state: 'online',
    stateReasonCode: 'connected',
    stateReason: 'ok',
    reservedByClusterId: null,
    stateChangedAtMs: 0,
    verificationState: 'unverified',
    verificationReason: '',
    region: 'eu-west',
    country: 'DE',
    askingPriceMicroUsd: 2_000_000n,
    pricingMode: 'fixed',
    bandwidthTier: null,
    inventory,
    enrolledAtMs: 0,
    lastSeenAtMs: 0,
    uptimeMsTotal: 0,
    reliability: 0.9,
    changeSeq: 1n,
    verificationFailures: 0,
    nextVerificationAtMs: 0,
    measuredFp32Tflops: null,
    capabilities: {
      clusterNodes: capable(),
      modelReplicas: capable(),
      gpus: capable(),
      checks: [],
      testedAtMs: 0,
    },
    ...overrides,
  }
}

describe('offer index', () => {
  it('lists only machines that can run a cluster node, and keeps the others for serving and explanations', () => {
    const index = new OfferIndex()
    const cannot = {
      clusterNodes: incapable('wireguard-go: wireguard-go not found'),
      modelReplicas: capable(),
      gpus: capable(),
      checks: [],
      testedAtMs: 0,
    }
    index.upsert(device('dev_can'))
    index.upsert(device('dev_cannot', { capabilities: cannot }))
    index.upsert(device('dev_untested', { capabilities: null }))
    assert.deepEqual(
      index.search({}).offers.map((offer) => offer.deviceId),
      ['dev_can'],
    )
    const snapshot = index.placementSnapshot().nodes
    const byId = new Map(snapshot.map((node) => [node.deviceId, node]))
    assert.equal(byId.get('dev_can')?.runsClusterNodes, true)
    assert.equal(byId.get('dev_cannot')?.runsClusterNodes, false)
    assert.equal(byId.get('dev_cannot')?.clusterNodesReason, 'wireguard-go: wireguard-go not found')
    assert.match(byId.get('dev_untested')!.clusterNodesReason!, /has not reported/)
    assert.equal(index.offerOf('dev_cannot'), undefined)
    assert.equal(index.idleOfferOf('dev_cannot')?.deviceId, 'dev_cannot')
    assert.equal(index.capabilitiesOf('dev_cannot')?.modelReplicas.available, true)
    // The self-test passes again: back on offer.
    index.upsert(device('dev_cannot', { changeSeq: 2n }))
    assert.equal(index.offerOf('dev_cannot')?.deviceId, 'dev_cannot')
  })

  it('lists only online devices with hardware, location and a price', () => {
    const index = new OfferIndex()
    index.upsert(device('dev_online'))
    index.upsert(device('dev_offline', { state: 'offline' }))
    index.upsert(device('dev_unpriced', { askingPriceMicroUsd: null }))
    index.upsert(device('dev_unreported', { inventory: null }))
    assert.deepEqual(
      index.search({}).offers.map((offer) => offer.deviceId),
      ['dev_online'],
    )
    index.upsert(device('dev_online', { state: 'offline' }))
    assert.equal(index.search({}).total, 0)
  })

  it('filters by model, count, VRAM, place, price and reliability', () => {
    const index = new OfferIndex()
    index.upsert(device('dev_h100x8', { gpus: 8, askingPriceMicroUsd: 2_500_000n }))
    index.upsert(
      device('dev_a100', { model: 1, country: 'US', region: 'us-east', askingPriceMicroUsd: 1_200_000n }),
    )
    index.upsert(device('dev_4090', { model: 2, reliability: 0.5, askingPriceMicroUsd: 400_000n }))
    const ids = (query: Parameters<OfferIndex['search']>[0]) =>
      index.search(query).offers.map((offer) => offer.deviceId)
    assert.deepEqual(ids({ gpuModel: 'H100' }), ['dev_h100x8'])
    assert.deepEqual(ids({ gpuModel: 'a100' }), ['dev_a100'])
    assert.deepEqual(ids({ gpuModel: 'NVIDIA GeForce RTX 4090' }), ['dev_4090'])
    assert.deepEqual(ids({ minGpus: 2 }), ['dev_h100x8'])
    assert.deepEqual(ids({ minVramGb: 40 }), ['dev_a100', 'dev_h100x8'])
    assert.deepEqual(ids({ country: 'us' }), ['dev_a100'])
    assert.deepEqual(ids({ region: 'eu-west' }), ['dev_4090', 'dev_h100x8'])
    assert.deepEqual(ids({ maxPricePerGpuHourUsd: '1.2' }), ['dev_4090', 'dev_a100'])
    assert.deepEqual(ids({ minReliability: 0.8 }), ['dev_a100', 'dev_h100x8'])
    assert.deepEqual(ids({ verifiedOnly: true }), [])
    assert.deepEqual(ids({ sort: 'performance' }), ['dev_h100x8', 'dev_a100', 'dev_4090'])
    assert.deepEqual(ids({ sort: 'reliability' }), ['dev_a100', 'dev_h100x8', 'dev_4090'])
    const h100 = index.search({ gpuModel: 'h100' }).offers[0]!
    assert.equal(h100.pricePerHourUsd, '20.00')
    assert.equal(h100.performance.source, 'catalog')
  })

  it('ignores a record older than the one it holds, even after delisting', () => {
    const index = new OfferIndex()
    index.upsert(device('dev_a', { changeSeq: 5n, state: 'offline' }))
    index.upsert(device('dev_a', { changeSeq: 4n, state: 'online' }))
    assert.equal(index.search({}).total, 0)
    index.upsert(device('dev_a', { changeSeq: 6n, state: 'online' }))
    assert.equal(index.search({}).total, 1)
  })

  it('normalizes model names', () => {
    assert.equal(normalizeModelQuery('NVIDIA GeForce RTX 4090'), 'rtx-4090')
    assert.equal(normalizeModelQuery(' A100 80GB '), 'a100-80gb')
  })

  it('pages through every match exactly once, in order, whatever the updates', () => {
    const update = fc.record({
      id: fc.integer({ min: 0, max: 40 }),
      price: fc.integer({ min: 1, max: 5_000_000 }),
      reliability: fc.double({ min: 0, max: 1, noNaN: true }),
      online: fc.boolean(),
      model: fc.integer({ min: 0, max: 2 }),
    })
    fc.assert(
      fc.property(
        fc.array(update, { maxLength: 120 }),
        fc.constantFrom('price', 'performance', 'reliability' as const),
        fc.integer({ min: 1, max: 7 }),
        (updates, sort, limit) => {
          const index = new OfferIndex()
          const latest = new Map<string, (typeof updates)[number]>()
          for (const change of updates) {
            const id = `dev_${change.id}`
            latest.set(id, change)
            index.upsert(
              device(id, {
                askingPriceMicroUsd: BigInt(change.price),
                reliability: change.reliability,
                state: change.online ? 'online' : 'offline',
                model: change.model,
              }),
            )
          }
          const expected = [...latest.entries()].filter(([, change]) => change.online).map(([id]) => id)
          const seen: string[] = []
          let cursor: string | undefined
          for (;;) {
            const page = index.search({ sort, limit, ...(cursor ? { cursor } : {}) })
            assert.equal(page.total, expected.length)
            seen.push(...page.offers.map((offer) => offer.deviceId))
            if (!page.nextCursor) break
            cursor = page.nextCursor
          }
          assert.deepEqual([...seen].sort(), [...expected].sort())
          const all = index.search({ sort, limit: 200 }).offers
          for (let i = 1; i < all.length; i += 1) {
            const [a, b] = [all[i - 1]!, all[i]!]
            if (sort === 'price') assert.ok(Number(a.pricePerGpuHourUsd) <= Number(b.pricePerGpuHourUsd))
            if (sort === 'reliability') assert.ok((a.reliability ?? -1) >= (b.reliability ?? -1))
          }
        },
      ),
    )
  })
})

describe('offer index against a plain filter-and-sort', () => {
  it('answers every query like a full scan would, through any sequence of changes', () => {
    const change = fc.record({
      id: fc.integer({ min: 0, max: 30 }),
      price: fc.integer({ min: 1, max: 3_000_000 }),
      reliability: fc.constantFrom(0.5, 0.9, 0.99),
      online: fc.boolean(),
      model: fc.integer({ min: 0, max: 2 }),
      gpus: fc.integer({ min: 1, max: 8 }),
      place: fc.constantFrom(['eu-west', 'DE'], ['eu-west', 'FR'], ['us-east', 'US']),
    })
    const query = fc.record(
      {
        gpuModel: fc.constantFrom('h100', 'a100', 'rtx-4090', 'RTX 4090', 'a10'),
        country: fc.constantFrom('DE', 'us', 'FR'),
        region: fc.constantFrom('eu-west', 'us-east'),
        minGpus: fc.integer({ min: 1, max: 8 }),
        maxPricePerGpuHourUsd: fc.constantFrom('0.5', '1.5', '2.9'),
        sort: fc.constantFrom('price', 'performance', 'reliability' as const),
      },
      { requiredKeys: [] },
    )
    fc.assert(
      fc.property(fc.array(fc.oneof(change, query), { maxLength: 80 }), (steps) => {
        const index = new OfferIndex()
        const latest = new Map<string, DeviceRecord>()
        let seq = 0n
        for (const step of steps) {
          if ('id' in step) {
            seq += 1n
            const record = device(`dev_${String(step.id).padStart(2, '0')}`, {
              askingPriceMicroUsd: BigInt(step.price),
              reliability: step.reliability,
              state: step.online ? 'online' : 'offline',
              model: step.model,
              gpus: step.gpus,
              region: step.place[0],
              country: step.place[1],
              changeSeq: seq,
            })
            latest.set(record.id, record)
            index.upsert(record)
            continue
          }
          const got = index.search({ ...step, limit: 200 })
          // the reference: a fresh index holding only the latest records, whose first search sorts from scratch
          const fresh = new OfferIndex()
          for (const record of latest.values()) fresh.upsert(record)
          const expected = fresh.search({ ...step, limit: 200 })
          assert.deepEqual(
            got.offers.map((offer) => offer.deviceId),
            expected.offers.map((offer) => offer.deviceId),
          )
          assert.equal(got.total, expected.total)
        }
      }),
    )
  })
})
