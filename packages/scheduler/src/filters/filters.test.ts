import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { filterPlugins } from '../registry.ts'
import type { ClusterRequest, NodeCandidate, RejectionReason } from '../types.ts'

const base: NodeCandidate = {
  deviceId: 'dev_a',
  supplierAccountId: 'acc',
  online: true,
  verified: true,
  reserved: false,
  gpuModel: 'a100-40gb',
  gpuCount: 4,
  vramMibPerGpu: 40_960,
  fp16TflopsPerGpu: 312,
  cpuCores: 32,
  memoryMib: 262_144,
  region: 'eu-west',
  country: 'DE',
  bandwidthRank: 2,
  pricePerGpuHourMicroUsd: 1_200_000n,
  reliability: 0.97,
  runsClusterNodes: true,
}
const request: ClusterRequest = { nodeCount: 1, gpusPerNode: 1 }
const firstRejection = (node: NodeCandidate, wanted: ClusterRequest): RejectionReason | undefined => {
  for (const plugin of filterPlugins) {
    const result = plugin.filter(node, wanted)
    if (!result.pass) return result.reason
  }
  return undefined
}

describe('placement filters', () => {
  it('pass a node that meets every constraint', () => {
    assert.equal(
      firstRejection(base, {
        ...request,
        gpusPerNode: 4,
        gpuModel: 'a100',
        minVramMibPerGpu: 40_000,
        minFp16TflopsPerGpu: 300,
        region: 'eu-west',
        country: 'DE',
        minBandwidthRank: 2,
        maxPricePerGpuHourMicroUsd: 1_200_000n,
      }),
      undefined,
    )
  })

  const cases: [string, Partial<NodeCandidate>, Partial<ClusterRequest>, RejectionReason][] = [
    ['offline', { online: false }, {}, 'offline'],
    ['reserved', { reserved: true }, {}, 'reserved'],
    ['cannot run cluster nodes', { runsClusterNodes: false }, {}, 'capability'],
    ['unverified', { verified: false }, {}, 'unverified'],
    ['another model', {}, { gpuModel: 'h100' }, 'gpu_model'],
    ['a model prefix that is not a family', {}, { gpuModel: 'a10' }, 'gpu_model'],
    ['too few GPUs', {}, { gpusPerNode: 8 }, 'gpu_count'],
    ['too little VRAM', {}, { minVramMibPerGpu: 80_000 }, 'vram'],
    ['too slow', {}, { minFp16TflopsPerGpu: 900 }, 'performance'],
    ['another region', {}, { region: 'us-east' }, 'region'],
    ['another country', {}, { country: 'FR' }, 'country'],
    ['too little bandwidth', {}, { minBandwidthRank: 3 }, 'bandwidth'],
    ['too expensive', {}, { maxPricePerGpuHourMicroUsd: 1_199_999n }, 'price'],
  ]
  for (const [name, node, wanted, reason] of cases) {
    it(`turn away a node: ${name}`, () =>
      assert.equal(firstRejection({ ...base, ...node }, { ...request, ...wanted }), reason))
  }

  it('let a renter accept unverified nodes', () => {
    assert.equal(firstRejection({ ...base, verified: false }, { ...request, verifiedOnly: false }), undefined)
  })
})
