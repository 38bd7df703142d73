import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { seededRandom } from '@gpumesh/core'
import { filterPlugins, scorePlugins } from './registry.ts'
import { candidatePoolSize, gangSeeds, placeCluster } from './place.ts'
import { roundTripMs } from './scores/latency.ts'
import type { ClusterRequest, NodeCandidate, SupplySnapshot } from './types.ts'

function node(id: string, overrides: Partial<NodeCandidate> = {}): NodeCandidate {
  return {
    deviceId: id,
    supplierAccountId: 'acc',
    online: true,
    verified: true,
    reserved: false,
    gpuModel: 'a100-80gb',
    gpuCount: 8,
    vramMibPerGpu: 81_920,
    fp16TflopsPerGpu: 312,
    cpuCores: 64,
    memoryMib: 512 * 1024,
    region: 'eu-west',
    country: 'DE',
    bandwidthRank: 3,
    pricePerGpuHourMicroUsd: 1_500_000n,
    reliability: 0.99,
    runsClusterNodes: true,
    ...overrides,
  }
}

const snapshotOf = (nodes: NodeCandidate[], rtt: Record<string, number> = {}): SupplySnapshot => ({
  nodes,
  roundTripMs: (a, b) => rtt[`${a}|${b}`],
})

const request = (overrides: Partial<ClusterRequest> = {}): ClusterRequest => ({
  nodeCount: 2,
  gpusPerNode: 1,
  ...overrides,
})

const nodeArbitrary = fc.record({
  online: fc.boolean(),
  verified: fc.boolean(),
  reserved: fc.boolean(),
  gpuModel: fc.constantFrom('a100-80gb', 'a100-40gb', 'h100', 'rtx-4090', 'cpu'),
  gpuCount: fc.integer({ min: 0, max: 8 }),
  region: fc.constantFrom('eu-west', 'us-east', 'ap-south'),
  country: fc.constantFrom('DE', 'US', 'IN'),
  bandwidthRank: fc.integer({ min: 0, max: 3 }),
  pricePerGpuHourMicroUsd: fc.bigInt({ min: 100_000n, max: 5_000_000n }),
  reliability: fc.double({ min: 0, max: 1, noNaN: true }),
  runsClusterNodes: fc.boolean(),
})
const requestArbitrary = fc.record({
  nodeCount: fc.integer({ min: 1, max: 6 }),
  gpusPerNode: fc.integer({ min: 0, max: 8 }),
  gpuModel: fc.option(fc.constantFrom('a100', 'h100', 'rtx-4090'), { nil: undefined }),
  region: fc.option(fc.constantFrom('eu-west', 'us-east'), { nil: undefined }),
  maxPricePerGpuHourMicroUsd: fc.option(fc.bigInt({ min: 100_000n, max: 5_000_000n }), { nil: undefined }),
  verifiedOnly: fc.option(fc.boolean(), { nil: undefined }),
})

describe('gang placement', () => {
  it('places whole gangs of distinct, fitting nodes, or none, and only when enough nodes fit', () => {
    fc.assert(
      fc.property(fc.array(nodeArbitrary, { maxLength: 40 }), requestArbitrary, (specs, wanted) => {
        const nodes = specs.map((spec, index) => node(`dev_${String(index).padStart(3, '0')}`, spec))
        const cleanRequest = Object.fromEntries(
          Object.entries(wanted).filter(([, v]) => v !== undefined),
        ) as ClusterRequest
        const fits = (candidate: NodeCandidate) =>
          filterPlugins.every((plugin) => plugin.filter(candidate, cleanRequest).pass)
        const result = placeCluster(snapshotOf(nodes), cleanRequest)
        const fitting = nodes.filter(fits).length
        if (result.ok) {
          assert.equal(result.nodes.length, cleanRequest.nodeCount)
          assert.equal(new Set(result.nodes.map((chosen) => chosen.deviceId)).size, cleanRequest.nodeCount)
          for (const chosen of result.nodes) {
            assert.ok(fits(chosen), `${chosen.deviceId} does not fit`)
            assert.ok(chosen.online && !chosen.reserved && chosen.runsClusterNodes)
          }
        } else {
          assert.ok(fitting < cleanRequest.nodeCount, `${fitting} nodes fit but nothing was placed`)
          assert.equal(result.feasibleNodes, fitting)
        }
      }),
    )
  })

  it('gives the same answer for the same supply in any order', () => {
    fc.assert(
      fc.property(
        fc.array(nodeArbitrary, { minLength: 1, maxLength: 30 }),
        requestArbitrary,
        fc.nat(),
        (specs, wanted, rotation) => {
          const nodes = specs.map((spec, index) => node(`dev_${index}`, spec))
          const cleanRequest = Object.fromEntries(
            Object.entries(wanted).filter(([, v]) => v !== undefined),
          ) as ClusterRequest
          const rotated = [
            ...nodes.slice(rotation % nodes.length),
            ...nodes.slice(0, rotation % nodes.length),
          ].reverse()
          assert.deepEqual(
            placeCluster(snapshotOf(rotated), cleanRequest),
            placeCluster(snapshotOf(nodes), cleanRequest),
          )
        },
      ),
    )
  })

  it('prefers nodes close to each other, then cheaper ones', () => {
    const nodes = [
      node('dev_a', { region: 'eu-west', pricePerGpuHourMicroUsd: 1_000_000n }),
      node('dev_b', { region: 'us-east', country: 'US', pricePerGpuHourMicroUsd: 1_000_000n }),
      node('dev_c', { region: 'eu-west', pricePerGpuHourMicroUsd: 1_400_000n }),
      node('dev_d', { region: 'eu-west', pricePerGpuHourMicroUsd: 1_300_000n }),
    ]
    const placed = placeCluster(snapshotOf(nodes), request())
    assert.ok(placed.ok)
    assert.deepEqual(
      placed.nodes.map((chosen) => chosen.deviceId),
      ['dev_a', 'dev_d'],
    )
    // a measured round trip overrides the estimate
    const measured = placeCluster(snapshotOf(nodes, { 'dev_a|dev_d': 90, 'dev_a|dev_c': 2 }), request())
    assert.ok(measured.ok)
    assert.deepEqual(
      measured.nodes.map((chosen) => chosen.deviceId),
      ['dev_a', 'dev_c'],
    )
    assert.equal(placed.pricePerHourMicroUsd, (1_000_000n + 1_300_000n) * 8n)
  })

  it('never gives a node to a machine that cannot run one, and says why it could not', () => {
    const nodes = [
      node('dev_a', { runsClusterNodes: false, clusterNodesReason: 'wireguard-go: wireguard-go not found' }),
      node('dev_b', { runsClusterNodes: false, clusterNodesReason: 'wireguard-go: wireguard-go not found' }),
      node('dev_c'),
    ]
    const one = placeCluster(snapshotOf(nodes), request({ nodeCount: 1 }))
    assert.ok(one.ok)
    assert.deepEqual(
      one.nodes.map((chosen) => chosen.deviceId),
      ['dev_c'],
    )
    const two = placeCluster(snapshotOf(nodes), request({ nodeCount: 2 }))
    assert.ok(!two.ok)
    assert.equal(two.blockingConstraint, 'capability')
    assert.match(
      two.detail,
      /2 turned away by capability \(2 cannot run cluster nodes: wireguard-go: wireguard-go not found\)/,
    )
  })

  it('names the constraint that blocks a request', () => {
    const nodes = [node('dev_a'), node('dev_b'), node('dev_c', { online: false })]
    const tooCheap = placeCluster(snapshotOf(nodes), request({ maxPricePerGpuHourMicroUsd: 1_000_000n }))
    assert.equal(tooCheap.ok, false)
    if (!tooCheap.ok) {
      assert.equal(tooCheap.blockingConstraint, 'price')
      assert.deepEqual(tooCheap.rejections, { price: 2, offline: 1 })
      assert.match(tooCheap.detail, /2 turned away by price/)
    }
    const noModel = placeCluster(snapshotOf(nodes), request({ gpuModel: 'h100' }))
    assert.equal(!noModel.ok && noModel.blockingConstraint, 'gpu_model')
    const tooMany = placeCluster(snapshotOf(nodes), request({ nodeCount: 5 }))
    assert.equal(!tooMany.ok && tooMany.blockingConstraint, 'offline')
    assert.equal(!tooMany.ok && tooMany.feasibleNodes, 2)
  })

  it('never places reserved or unverified nodes unless the renter allows unverified ones', () => {
    const nodes = [node('dev_a', { reserved: true }), node('dev_b', { verified: false }), node('dev_c')]
    assert.equal(placeCluster(snapshotOf(nodes), request()).ok, false)
    const relaxed = placeCluster(snapshotOf(nodes), request({ verifiedOnly: false }))
    assert.ok(relaxed.ok)
    assert.deepEqual(
      relaxed.nodes.map((chosen) => chosen.deviceId),
      ['dev_b', 'dev_c'],
    )
  })

  it('chooses what the plain algorithm chooses: every node judged in order, every seed sorts the pool', () => {
    // The plain algorithm, written out as the oracle: the candidate pool is the first fitting nodes in
    // preference order; each seed takes its nearest by sorting the pool. placeCluster keeps per-snapshot
    // lists and selects instead of sorting; on the same snapshot, cache warm or cold, it must agree.
    const preference = (a: NodeCandidate, b: NodeCandidate) =>
      a.pricePerGpuHourMicroUsd !== b.pricePerGpuHourMicroUsd
        ? a.pricePerGpuHourMicroUsd < b.pricePerGpuHourMicroUsd
          ? -1
          : 1
        : b.reliability - a.reliability || (a.deviceId < b.deviceId ? -1 : 1)
    const oracle = (snapshot: SupplySnapshot, wanted: ClusterRequest) => {
      const fits = [...snapshot.nodes]
        .sort(preference)
        .filter((candidate) => filterPlugins.every((plugin) => plugin.filter(candidate, wanted).pass))
      const pool = fits.slice(0, candidatePoolSize(wanted.nodeCount))
      if (pool.length < wanted.nodeCount) return { ok: false, feasibleNodes: fits.length }
      let maxPrice = 0n
      for (const candidate of pool)
        if (candidate.pricePerGpuHourMicroUsd > maxPrice) maxPrice = candidate.pricePerGpuHourMicroUsd
      let best: { ids: string[]; total: number; key: string } | undefined
      for (const seed of pool.slice(0, gangSeeds)) {
        const nearest = pool
          .filter((candidate) => candidate !== seed)
          .map((candidate, rank) => ({ candidate, rank, distance: roundTripMs(snapshot, seed, candidate) }))
          .sort((a, b) => a.distance - b.distance || a.rank - b.rank)
          .slice(0, wanted.nodeCount - 1)
          .map((entry) => entry.candidate)
        const gang = [seed, ...nearest]
        const total = scorePlugins.reduce(
          (sum, plugin) =>
            sum + plugin.weight * plugin.score(gang, { snapshot, maxPricePerGpuHourMicroUsd: maxPrice }),
          0,
        )
        const ids = gang.map((candidate) => candidate.deviceId).sort()
        const key = ids.join(',')
        if (!best || total < best.total - 1e-12 || (Math.abs(total - best.total) <= 1e-12 && key < best.key))
          best = { ids, total, key }
      }
      return { ok: true, ids: best!.ids }
    }
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 2 ** 31 - 1 }),
        fc.integer({ min: 200, max: 1_500 }),
        fc.array(requestArbitrary, { minLength: 1, maxLength: 6 }),
        (seed, size, requests) => {
          const random = seededRandom(seed)
          const pick = <T>(list: readonly T[]) => list[Math.floor(random.next() * list.length)]!
          const nodes = Array.from({ length: size }, (_, index) =>
            node(`dev_${String(index).padStart(5, '0')}`, {
              online: random.next() < 0.9,
              verified: random.next() < 0.8,
              reserved: random.next() < 0.15,
              runsClusterNodes: random.next() < 0.95,
              gpuModel: pick(['a100-80gb', 'a100-40gb', 'h100', 'rtx-4090', 'cpu']),
              gpuCount: pick([0, 1, 2, 4, 8]),
              region: pick(['eu-west', 'us-east', 'ap-south']),
              country: pick(['DE', 'US', 'IN']),
              bandwidthRank: pick([0, 1, 2, 3]),
              // Few distinct prices and reliabilities, so ties in preference and distance are common.
              pricePerGpuHourMicroUsd: BigInt(pick([500_000, 1_000_000, 1_500_000, 2_000_000])),
              reliability: pick([0.9, 0.95, 1]),
            }),
          )
          const measured = new Map<string, number>()
          for (let pair = 0; pair < size; pair += 1)
            measured.set(`${pick(nodes).deviceId}|${pick(nodes).deviceId}`, Math.floor(random.next() * 200))
          const snapshot: SupplySnapshot = { nodes, roundTripMs: (a, b) => measured.get(`${a}|${b}`) }
          // The same supply with the hint the RTT prober gives: which devices any measured pair involves.
          const measuredDevices = new Set([...measured.keys()].flatMap((pair) => pair.split('|')))
          const hinted: SupplySnapshot = { ...snapshot, isMeasured: (id) => measuredDevices.has(id) }
          for (const wanted of requests) {
            const clean = Object.fromEntries(
              Object.entries(wanted).filter(([, value]) => value !== undefined),
            ) as ClusterRequest
            const expected = oracle(snapshot, clean)
            const placed = placeCluster(snapshot, clean)
            if (!expected.ok) {
              assert.equal(placed.ok, false)
              assert.equal(!placed.ok && placed.feasibleNodes, expected.feasibleNodes)
            } else {
              assert.ok(placed.ok, !placed.ok ? placed.detail : '')
              assert.deepEqual(
                placed.nodes.map((chosen) => chosen.deviceId),
                expected.ids,
              )
              const placedWithHint = placeCluster(hinted, clean)
              assert.deepEqual(placedWithHint.ok && placedWithHint.nodes, placed.nodes)
            }
          }
        },
      ),
      { numRuns: 40 },
    )
  })
})
