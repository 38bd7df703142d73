import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { relax, resolveClusterRequest } from './plan.ts'

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
