import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { placeCluster, type NodeCandidate, type SupplySnapshot } from '@gpumesh/scheduler'
import { explainRefusal, relax, resolveClusterRequest } from './plan.ts'

const candidate = (
  deviceId: string,
  gpuCount: number,
  overrides: Partial<NodeCandidate> = {},
): NodeCandidate => ({
  deviceId,
  supplierAccountId: 'acc',
  online: true,
  verified: true,
  reserved: false,
  gpuModel: gpuCount === 0 ? 'cpu' : 'rtx-4090',
  gpuCount,
  vramMibPerGpu: gpuCount === 0 ? 0 : 24_564,
  fp16TflopsPerGpu: 0,
  cpuCores: 8,
  memoryMib: 32_768,
  region: 'eu-west',
  country: 'DE',
  bandwidthRank: 0,
  pricePerGpuHourMicroUsd: 1_000_000n,
  reliability: 1,
  runsClusterNodes: true,
  ...overrides,
})
const supply = (nodes: NodeCandidate[]): SupplySnapshot => ({ nodes, roundTripMs: () => undefined })

describe('cluster request shorthands', () => {
  it('reads MODEL:GPUS as whole 8-GPU nodes', () => {
    assert.deepEqual(resolveClusterRequest({ gpus: 'A100:16' }).request, {
      nodeCount: 2,
      gpusPerNode: 8,
      gpuModel: 'a100',
    })
    assert.deepEqual(resolveClusterRequest({ gpus: 'RTX 4090:2', nodes: 2 }).request, {
      nodeCount: 2,
      gpusPerNode: 1,
      gpuModel: 'rtx-4090',
    })
    assert.deepEqual(resolveClusterRequest({ gpus: 4 }).request, { nodeCount: 1, gpusPerNode: 4 })
  })

  it('defaults to one node with one GPU for an hour, and converts units', () => {
    const resolved = resolveClusterRequest({
      minVramGb: 40,
      maxPricePerGpuHourUsd: '2.5',
      minBandwidthTier: 'medium',
      country: 'de',
    })
    assert.equal(resolved.durationHours, 1)
    assert.deepEqual(resolved.request, {
      nodeCount: 1,
      gpusPerNode: 1,
      minVramMibPerGpu: 40_960,
      maxPricePerGpuHourMicroUsd: 2_500_000n,
      minBandwidthRank: 2,
      country: 'DE',
    })
  })

  it('refuses contradictions, naming the field', () => {
    assert.throws(() => resolveClusterRequest({ gpus: 'A100:8', gpuModel: 'h100' }), /gpus: names model A100/)
    assert.throws(
      () => resolveClusterRequest({ gpus: 'A100:16', nodes: 1, gpusPerNode: 8 }),
      /cannot hold 16 GPUs/,
    )
  })

  it('relaxes exactly the blocking constraint', () => {
    const request = {
      nodeCount: 2,
      gpusPerNode: 8,
      gpuModel: 'h100',
      region: 'eu-west',
      maxPricePerGpuHourMicroUsd: 1n,
    }
    assert.deepEqual(relax(request, 'price'), {
      nodeCount: 2,
      gpusPerNode: 8,
      gpuModel: 'h100',
      region: 'eu-west',
    })
    assert.deepEqual(relax(request, 'region'), {
      nodeCount: 2,
      gpusPerNode: 8,
      gpuModel: 'h100',
      maxPricePerGpuHourMicroUsd: 1n,
    })
    assert.equal(relax(request, 'offline'), undefined)
  })
})

describe('a CPU market', () => {
  const cpuOnly = supply([candidate('dev_a', 0), candidate('dev_b', 0), candidate('dev_c', 0)])

  it('places CPU nodes for a request that names no GPUs, when no machine on offer has one', () => {
    const { request } = resolveClusterRequest({ nodes: 2 }, cpuOnly)
    assert.equal(request.gpusPerNode, 0)
    assert.ok(placeCluster(cpuOnly, request).ok)
  })

  it('asks for a GPU per node where the market has GPU machines that can run a node', () => {
    const mixed = supply([candidate('dev_a', 0), candidate('dev_g', 1)])
    assert.equal(resolveClusterRequest({ nodes: 2 }, mixed).request.gpusPerNode, 1)
    // A GPU machine that cannot run a cluster node, or is rented, is not on offer.
    const unrentable = supply([
      candidate('dev_a', 0),
      candidate('dev_g', 1, { runsClusterNodes: false }),
      candidate('dev_h', 1, { reserved: true }),
    ])
    assert.equal(resolveClusterRequest({ nodes: 2 }, unrentable).request.gpusPerNode, 0)
  })

  it('keeps what the renter said about GPUs', () => {
    assert.equal(resolveClusterRequest({ nodes: 2, gpusPerNode: 1 }, cpuOnly).request.gpusPerNode, 1)
    assert.equal(resolveClusterRequest({ nodes: 2, minVramGb: 8 }, cpuOnly).request.gpusPerNode, 1)
  })

  it('says in the refusal which flag rents CPU machines', () => {
    const { request } = resolveClusterRequest({ nodes: 2, gpusPerNode: 1 }, cpuOnly)
    const result = placeCluster(cpuOnly, request)
    assert.ok(!result.ok)
    assert.equal(result.blockingConstraint, 'gpu_count')
    assert.match(explainRefusal(result, request), /--gpus-per-node 0/)
    assert.deepEqual(relax(request, 'gpu_count'), { ...request, gpusPerNode: 0 })
  })
})
