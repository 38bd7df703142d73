import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, it } from 'node:test'
import { HardwareInventory } from '@gpumesh/protocol'
import { Compile } from 'typebox/compile'
import { formatInventoryTable, probeHardware } from './index.ts'

const repoRoot = path.resolve(import.meta.dirname, '../../../..')
const fixturesDir = path.join(repoRoot, 'packages/worker/test/fixtures/nvidia-smi')
const inventorySchema = Compile(HardwareInventory)

function assertValidInventory(inventory: HardwareInventory): void {
  assert.ok(
    inventorySchema.Check(inventory),
    `inventory invalid: ${JSON.stringify([...inventorySchema.Errors(inventory)])}`,
  )
}

const missingCommand = 'gpumesh-test-no-such-nvidia-smi'

describe('probeHardware', () => {
  it('reads a saved nvidia-smi capture when given one', async () => {
    const inventory = await probeHardware({
      nvidiaSmiXmlPath: path.join(fixturesDir, 'h100-sxm-x2.xml'),
      diskPath: repoRoot,
      hostname: 'gpu-node-7',
    })
    assertValidInventory(inventory)
    assert.equal(inventory.probeSource, 'nvidia-smi-xml-file')
    assert.equal(inventory.hostname, 'gpu-node-7')
    assert.equal(inventory.driverVersion, '550.54.15')
    assert.equal(inventory.cudaVersion, '12.4')
    assert.deepEqual(
      inventory.gpus.map((gpu) => [gpu.index, gpu.modelKey, gpu.vramMib]),
      [
        [0, 'h100', 81559],
        [1, 'h100', 81559],
      ],
    )
    assert.equal(inventory.disk.path, repoRoot)
    assert.ok(inventory.disk.totalMib > 0)
    assert.ok(inventory.disk.freeMib <= inventory.disk.totalMib)
    assert.ok(inventory.cpu.logicalCores >= 1)
    assert.ok(inventory.memoryMib > 0)
  })

  it('reports a saved capture it cannot read as a warning with no GPUs', async () => {
    const missingPath = path.join(fixturesDir, 'no-such-capture.xml')
    const inventory = await probeHardware({ nvidiaSmiXmlPath: missingPath, diskPath: repoRoot })
    assertValidInventory(inventory)
    assert.equal(inventory.probeSource, 'nvidia-smi-xml-file')
    assert.deepEqual(inventory.gpus, [])
    assert.ok(inventory.warnings.some((warning) => warning.includes(missingPath)))
  })

  it('carries the parser’s warnings for a truncated capture into the inventory', async () => {
    const inventory = await probeHardware({
      nvidiaSmiXmlPath: path.join(fixturesDir, 'truncated.xml'),
      diskPath: repoRoot,
    })
    assertValidInventory(inventory)
    assert.equal(inventory.gpus.length, 1)
    assert.ok(
      inventory.warnings.some((warning) => /position 1: its <gpu> element is incomplete/.test(warning)),
    )
  })

  it('treats a machine without nvidia-smi as a CPU node, with no warning about it', async () => {
    const inventory = await probeHardware({ nvidiaSmiCommand: missingCommand, diskPath: repoRoot })
    assertValidInventory(inventory)
    assert.equal(inventory.probeSource, 'none')
    assert.deepEqual(inventory.gpus, [])
    assert.equal('driverVersion' in inventory, false)
    assert.equal(
      inventory.warnings.some((warning) => warning.includes(missingCommand)),
      false,
    )
  })

  it('runs nvidia-smi -q -x and reads what it prints', async () => {
    const inventory = await probeHardware({
      nvidiaSmiCommand: path.join(fixturesDir, 'nvidia-smi-prints-h100.sh'),
      diskPath: repoRoot,
    })
    assertValidInventory(inventory)
    assert.equal(inventory.probeSource, 'nvidia-smi')
    assert.equal(inventory.gpus.length, 2)
    assert.equal(inventory.gpus[1]?.migInstances.length, 3)
  })

  it('reports a failing nvidia-smi as a warning with no GPUs', async () => {
    const inventory = await probeHardware({ nvidiaSmiCommand: 'false', diskPath: repoRoot })
    assertValidInventory(inventory)
    assert.equal(inventory.probeSource, 'nvidia-smi')
    assert.deepEqual(inventory.gpus, [])
    assert.ok(
      inventory.warnings.includes('false -q -x failed: exit code 1'),
      JSON.stringify(inventory.warnings),
    )
  })

  it('passes on what nvidia-smi says when the driver is not loaded', async () => {
    const command = path.join(fixturesDir, 'nvidia-smi-driver-failure.sh')
    const inventory = await probeHardware({ nvidiaSmiCommand: command, diskPath: repoRoot })
    assertValidInventory(inventory)
    assert.equal(inventory.probeSource, 'nvidia-smi')
    assert.deepEqual(inventory.gpus, [])
    const warning = inventory.warnings.find((text) => text.startsWith(`${command} -q -x failed`))
    assert.match(warning ?? '', /exit code 9: NVIDIA-SMI has failed because it couldn't communicate/)
  })

  it('still returns an inventory when the disk path does not exist', async () => {
    const diskPath = path.join(repoRoot, 'no-such-directory-for-probe-test')
    const inventory = await probeHardware({ nvidiaSmiCommand: missingCommand, diskPath })
    assertValidInventory(inventory)
    assert.deepEqual(inventory.disk, { path: diskPath, totalMib: 0, freeMib: 0 })
    assert.ok(inventory.warnings.some((warning) => warning.includes(diskPath)))
  })
})

describe('formatInventoryTable', () => {
  const inventory: HardwareInventory = {
    hostname: 'gpu-node-7',
    gpus: [
      {
        index: 0,
        uuid: 'GPU-0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9',
        productName: 'NVIDIA H100 80GB HBM3',
        modelKey: 'h100',
        vramMib: 81559,
        pcieGeneration: 5,
        pcieWidthLanes: 16,
        powerLimitWatts: 700,
        migMode: 'enabled',
        migInstances: [{ gpuInstanceId: 1 }, { gpuInstanceId: 2 }],
      },
      {
        index: 1,
        uuid: 'GPU-1',
        productName: 'NVIDIA Graphics Device',
        modelKey: 'graphics-device',
        vramMib: 23034,
        migMode: 'unsupported',
        migInstances: [],
      },
    ],
    driverVersion: '550.54.15',
    cudaVersion: '12.4',
    cpu: { model: 'AMD EPYC 9654 96-Core Processor', logicalCores: 192, architecture: 'x64' },
    memoryMib: 1548288,
    disk: { path: '/var/lib/gpumesh', totalMib: 1907729, freeMib: 1048576 },
    os: { platform: 'linux', release: '6.8.0-45-generic', distribution: 'Ubuntu 24.04.1 LTS' },
    probeSource: 'nvidia-smi',
    warnings: ['GPU at position 3: unreadable power limit "lots"'],
  }

  it('lays out GPUs in aligned columns, then host facts, then warnings', () => {
    assert.equal(
      formatInventoryTable(inventory),
      [
        'Host   gpu-node-7',
        'Probe  nvidia-smi',
        '',
        'GPUs (2): driver 550.54.15, CUDA 12.4',
        '  INDEX  MODEL                   VRAM GiB  UUID                                      PCIE      POWER  MIG',
        '  0      NVIDIA H100 80GB HBM3   79.6      GPU-0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9  gen5 x16  700 W  enabled (2 instances)',
        '  1      NVIDIA Graphics Device  22.5      GPU-1                                     -         -      -',
        '',
        'CPU   AMD EPYC 9654 96-Core Processor, 192 logical cores, x64',
        'RAM   1512.0 GiB',
        'Disk  /var/lib/gpumesh: 1024.0 GiB free of 1863.0 GiB',
        'OS    Ubuntu 24.04.1 LTS, linux 6.8.0-45-generic',
        '',
        'Warnings (1)',
        '  - GPU at position 3: unreadable power limit "lots"',
        '',
      ].join('\n'),
    )
  })

  it('says so when there are no GPUs and leaves out an empty warnings section', () => {
    const text = formatInventoryTable({ ...inventory, gpus: [], probeSource: 'none', warnings: [] })
    assert.match(text, /^Probe {2}none \(nvidia-smi not found: CPU-only node\)$/m)
    assert.match(text, /^GPUs \(0\): driver 550\.54\.15, CUDA 12\.4\n {2}none$/m)
    assert.doesNotMatch(text, /Warnings/)
  })
})
