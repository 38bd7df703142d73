import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { HardwareInventory } from '@gpumesh/protocol'
import { cpuProverMaxMatrixSize, gpuProverMaxMatrixSize, proverMatrixSizeLimit } from './agent.ts'

const base: HardwareInventory = {
  hostname: 'h',
  gpus: [],
  cpu: { model: 'c', logicalCores: 2, architecture: 'x64' },
  memoryMib: 1,
  disk: { path: '/', totalMib: 1, freeMib: 1 },
  os: { platform: 'linux', release: '6' },
  probeSource: 'none',
  warnings: [],
}
const gpu = {
  index: 0,
  uuid: 'GPU-1',
  productName: 'NVIDIA H100',
  modelKey: 'h100',
  vramMib: 81_559,
  migMode: 'disabled' as const,
  migInstances: [],
}

describe('prover size limit', () => {
  it('attempts production sizes only on GPUs nvidia-smi itself reported', () => {
    assert.equal(proverMatrixSizeLimit(undefined), cpuProverMaxMatrixSize)
    assert.equal(proverMatrixSizeLimit(base), cpuProverMaxMatrixSize)
    assert.equal(
      proverMatrixSizeLimit({ ...base, gpus: [gpu], probeSource: 'nvidia-smi-xml-file' }),
      cpuProverMaxMatrixSize,
    )
    assert.equal(
      proverMatrixSizeLimit({ ...base, gpus: [gpu], probeSource: 'nvidia-smi' }),
      gpuProverMaxMatrixSize,
    )
  })
})
