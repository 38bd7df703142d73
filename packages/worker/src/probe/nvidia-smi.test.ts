import assert from 'node:assert/strict'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { GpuInfo, maxGpusPerDevice } from '@gpumesh/protocol'
import fc from 'fast-check'
import { Compile } from 'typebox/compile'
import { parseNvidiaSmiXml, type NvidiaSmiReading } from './nvidia-smi.ts'
import { maxProbeWarningLength, maxProbeWarnings } from './warnings.ts'

const repoRoot = path.resolve(import.meta.dirname, '../../../..')
const ownFixturesDir = path.join(repoRoot, 'packages/worker/test/fixtures/nvidia-smi')
// Real captures live beside the repository, not in it; the tests that need them skip when they are absent.
const sharedFixturesDir = path.resolve(repoRoot, '../shared/fixtures/nvidia-smi')
const sharedFixturesPresent = existsSync(sharedFixturesDir)

const gpuInfoSchema = Compile(GpuInfo)

function readFixture(directory: string, name: string): NvidiaSmiReading {
  return parseNvidiaSmiXml(readFileSync(path.join(directory, name), 'utf8'))
}

function assertSchemaValid(reading: NvidiaSmiReading): void {
  for (const gpu of reading.gpus) {
    assert.ok(
      gpuInfoSchema.Check(gpu),
      `GpuInfo ${gpu.uuid} invalid: ${JSON.stringify([...gpuInfoSchema.Errors(gpu)])}`,
    )
    assertNoUndefinedKeys(gpu)
  }
  assertNoUndefinedKeys(reading)
  assert.ok(reading.gpus.length <= maxGpusPerDevice)
  assert.ok(reading.warnings.length <= maxProbeWarnings)
  for (const warning of reading.warnings) assert.ok(warning.length <= maxProbeWarningLength)
}

function assertNoUndefinedKeys(value: unknown, where = '(reading)'): void {
  if (Array.isArray(value)) {
    value.forEach((item, position) => assertNoUndefinedKeys(item, `${where}[${position}]`))
  } else if (typeof value === 'object' && value !== null) {
    for (const [key, child] of Object.entries(value)) {
      assert.notEqual(child, undefined, `${where}.${key} is present but undefined`)
      assertNoUndefinedKeys(child, `${where}.${key}`)
    }
  }
}

function onlyGpu(reading: NvidiaSmiReading): GpuInfo {
  assert.equal(reading.gpus.length, 1)
  const [gpu] = reading.gpus
  assert.ok(gpu)
  return gpu
}

/** A minimal nvidia_smi_log around hand-written <gpu> elements. */
function smiLog(...gpuElements: string[]): string {
  return `<?xml version="1.0" ?>
<nvidia_smi_log>
  <driver_version>550.54.15</driver_version>
  <cuda_version>12.4</cuda_version>
  <attached_gpus>${gpuElements.length}</attached_gpus>
  ${gpuElements.join('\n')}
</nvidia_smi_log>`
}

function gpuElement(fields: { uuid?: string; extra?: string } = {}): string {
  const uuid = fields.uuid ?? 'GPU-00000000-0000-0000-0000-000000000001'
  return `<gpu id="00000000:01:00.0">
    <product_name>NVIDIA A10G</product_name>
    <uuid>${uuid}</uuid>
    <fb_memory_usage><total>23028 MiB</total></fb_memory_usage>
    ${fields.extra ?? ''}
  </gpu>`
}

describe('parseNvidiaSmiXml on the project fixtures', () => {
  it('reads a two-GPU H100 machine, one GPU split by MIG, using each GPU’s own memory total', () => {
    const reading = readFixture(ownFixturesDir, 'h100-sxm-x2.xml')
    assertSchemaValid(reading)
    assert.equal(reading.driverVersion, '550.54.15')
    assert.equal(reading.cudaVersion, '12.4')
    assert.deepEqual(reading.warnings, [])
    assert.deepEqual(reading.gpus, [
      {
        index: 0,
        uuid: 'GPU-0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9',
        productName: 'NVIDIA H100 80GB HBM3',
        modelKey: 'h100',
        vramMib: 81559,
        architecture: 'Hopper',
        serial: '1650123045871',
        pciBusId: '00000000:18:00.0',
        pcieGeneration: 5,
        pcieWidthLanes: 16,
        powerLimitWatts: 700,
        migMode: 'disabled',
        migInstances: [],
      },
      {
        index: 1,
        uuid: 'GPU-9f8e7d6c-5b4a-3928-1706-f5e4d3c2b1a0',
        productName: 'NVIDIA H100 80GB HBM3',
        modelKey: 'h100',
        vramMib: 81559,
        architecture: 'Hopper',
        serial: '1650123046002',
        pciBusId: '00000000:2A:00.0',
        pcieGeneration: 5,
        pcieWidthLanes: 16,
        powerLimitWatts: 650,
        migMode: 'enabled',
        migInstances: [
          { gpuInstanceId: 1, computeInstanceId: 0, vramMib: 40192, multiprocessorCount: 60 },
          { gpuInstanceId: 5, computeInstanceId: 0, vramMib: 20096, multiprocessorCount: 32 },
          { gpuInstanceId: 13, computeInstanceId: 0, vramMib: 9984, multiprocessorCount: 16 },
        ],
      },
    ])
  })

  it('leaves out every field that reads as a placeholder, in each of its spellings', () => {
    const reading = readFixture(ownFixturesDir, 'many-na.xml')
    assertSchemaValid(reading)
    assert.equal(reading.driverVersion, '555.42.02')
    assert.equal('cudaVersion' in reading, false, 'cuda_version "Not Found" is absent')
    assert.deepEqual(reading.warnings, [])
    assert.deepEqual(onlyGpu(reading), {
      index: 0, // minor_number is N/A, so the position in the file
      uuid: 'GPU-5e6f7a8b-9c0d-1e2f-3a4b-5c6d7e8f9a0b',
      productName: 'NVIDIA Graphics Device',
      modelKey: 'graphics-device', // not in the catalog: a slug of the name, and no architecture
      vramMib: 23034,
      pciBusId: '00000000:00:05.0', // pci_bus_id is N/A; the <gpu id> attribute still names the bus
      migMode: 'unsupported',
      migInstances: [],
    })
  })

  it('skips GPUs without uuid or memory and repeated uuids, saying why for each', () => {
    const reading = readFixture(ownFixturesDir, 'missing-fields.xml')
    assertSchemaValid(reading)
    const gpu = onlyGpu(reading)
    assert.equal(gpu.uuid, 'GPU-11111111-2222-3333-4444-555555555555')
    assert.equal(gpu.index, 0)
    assert.equal(gpu.vramMib, 16160)
    assert.equal(reading.warnings.length, 3)
    assert.match(reading.warnings[0] ?? '', /position 1 .*00000000:5E:00\.0.*<uuid> is missing/)
    assert.match(reading.warnings[1] ?? '', /position 2 .*<fb_memory_usage><total> is missing or N\/A/)
    assert.match(reading.warnings[2] ?? '', /position 3: uuid GPU-11111111-.* repeats the GPU at position 0/)
  })

  it('keeps the complete GPUs of a truncated capture and skips the one cut short', () => {
    const reading = readFixture(ownFixturesDir, 'truncated.xml')
    assertSchemaValid(reading)
    const gpu = onlyGpu(reading)
    assert.equal(gpu.uuid, 'GPU-a4c1e7b2-0d3f-4e58-9a61-7b2c8d9e0f13')
    assert.equal(gpu.modelKey, 'l4')
    assert.equal(gpu.powerLimitWatts, 72)
    assert.equal(reading.driverVersion, '535.154.05')
    assert.equal(reading.cudaVersion, '12.2')
    assert.equal(reading.warnings.length, 2)
    assert.match(reading.warnings[0] ?? '', /not well-formed/)
    assert.match(reading.warnings[1] ?? '', /position 1: its <gpu> element is incomplete/)
  })

  it('reads, for every prefix of a capture, only GPUs that the whole capture also has', () => {
    const xml = readFileSync(path.join(ownFixturesDir, 'h100-sxm-x2.xml'), 'utf8')
    const complete = parseNvidiaSmiXml(xml).gpus
    // Every 7th cut point covers each tag and value boundary kind many times at a fraction of the cost.
    for (let length = 0; length < xml.length; length += 7) {
      const reading = parseNvidiaSmiXml(xml.slice(0, length))
      assertSchemaValid(reading)
      assert.ok(reading.warnings.length > 0, `a capture cut at ${length} must say so`)
      for (const gpu of reading.gpus) assert.ok(complete.some((whole) => isDeepEqual(whole, gpu)))
    }
  })
})

function isDeepEqual(expected: unknown, actual: unknown): boolean {
  try {
    assert.deepEqual(actual, expected)
    return true
  } catch {
    return false
  }
}

describe('parseNvidiaSmiXml on unusable input', () => {
  for (const [description, input] of [
    ['empty output', ''],
    ['whitespace', '  \n\t '],
    ['plain text', "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."],
    ['other XML', '<html><body>502 Bad Gateway</body></html>'],
    ['an unclosed declaration', '<?xml version="1.0" '],
    ['binary noise', '\u0000\u0001\uffff<\u0000>'],
    ['a log without GPUs', '<nvidia_smi_log><attached_gpus>0</attached_gpus></nvidia_smi_log>'],
  ] as const) {
    it(`returns no GPUs and a warning for ${description}`, () => {
      const reading = parseNvidiaSmiXml(input)
      assertSchemaValid(reading)
      assert.deepEqual(reading.gpus, [])
      assert.equal(reading.warnings.length, 1, JSON.stringify(reading.warnings))
    })
  }

  it('never throws on arbitrary mixes of nvidia-smi tags and text', () => {
    const token = fc.constantFrom(
      '<nvidia_smi_log>',
      '</nvidia_smi_log>',
      '<gpu id="00000000:01:00.0">',
      '<gpu>',
      '</gpu>',
      '<uuid>GPU-1</uuid>',
      '<uuid>GPU-2</uuid>',
      '<product_name>Tesla T4</product_name>',
      '<fb_memory_usage><total>15360 MiB</total></fb_memory_usage>',
      '<fb_memory_usage>',
      '<total>',
      '</total>',
      '<mig_devices>None</mig_devices>',
      '<mig_devices><mig_device><gpu_instance_id>1</gpu_instance_id></mig_device></mig_devices>',
      '<minor_number>99999</minor_number>',
      'N/A',
      '&amp;',
      '&bogus;',
      '<![CDATA[x]]>',
      '<!-- c -->',
      '<',
      '>',
    )
    fc.assert(
      fc.property(fc.array(token, { maxLength: 40 }), (tokens) => {
        assertSchemaValid(parseNvidiaSmiXml(tokens.join('')))
      }),
      { seed: 20240312, numRuns: 400 },
    )
  })
})

describe('parseNvidiaSmiXml field rules', () => {
  it('uses a numeric minor_number as the index and the position otherwise', () => {
    const reading = parseNvidiaSmiXml(
      smiLog(
        gpuElement({ uuid: 'GPU-a', extra: '<minor_number>3</minor_number>' }),
        gpuElement({ uuid: 'GPU-b', extra: '<minor_number>N/A</minor_number>' }),
      ),
    )
    assertSchemaValid(reading)
    assert.deepEqual(
      reading.gpus.map((gpu) => gpu.index),
      [3, 1],
    )
  })

  it('omits a serial of all zeros and keeps a real one', () => {
    const reading = parseNvidiaSmiXml(
      smiLog(
        gpuElement({ uuid: 'GPU-a', extra: '<serial>0000000000000</serial>' }),
        gpuElement({ uuid: 'GPU-b', extra: '<serial>1324321002473</serial>' }),
      ),
    )
    assert.equal('serial' in (reading.gpus[0] ?? {}), false)
    assert.equal(reading.gpus[1]?.serial, '1324321002473')
  })

  it('falls back from an N/A power limit or link value to the next field that has one', () => {
    const gpu = onlyGpu(
      parseNvidiaSmiXml(
        smiLog(
          gpuElement({
            extra: `<power_readings><power_limit>N/A</power_limit><enforced_power_limit>150.50 W</enforced_power_limit></power_readings>
              <pci><pci_gpu_link_info>
                <pcie_gen><max_link_gen>N/A</max_link_gen><current_link_gen>4</current_link_gen></pcie_gen>
                <link_widths><max_link_width>[N/A]</max_link_width><current_link_width>8x</current_link_width></link_widths>
              </pci_gpu_link_info></pci>`,
          }),
        ),
      ),
    )
    assert.equal(gpu.powerLimitWatts, 150.5)
    assert.equal(gpu.pcieGeneration, 4)
    assert.equal(gpu.pcieWidthLanes, 8)
  })

  it('omits a field in an unexpected format and warns about it, keeping the GPU', () => {
    const reading = parseNvidiaSmiXml(
      smiLog(gpuElement({ extra: '<power_readings><power_limit>lots</power_limit></power_readings>' })),
    )
    assertSchemaValid(reading)
    assert.equal('powerLimitWatts' in onlyGpu(reading), false)
    assert.equal(reading.warnings.length, 1)
    assert.match(reading.warnings[0] ?? '', /unreadable power limit "lots"/)
  })

  it('skips a GPU whose memory total has no unit it knows, naming the value', () => {
    const reading = parseNvidiaSmiXml(
      smiLog(`<gpu><product_name>Tesla T4</product_name><uuid>GPU-t</uuid>
        <fb_memory_usage><total>15360 bananas</total></fb_memory_usage></gpu>`),
    )
    assert.deepEqual(reading.gpus, [])
    assert.match(reading.warnings[0] ?? '', /unreadable <fb_memory_usage><total> "15360 bananas"/)
  })

  it('maps MIG modes and keeps only the fields a MIG device reports', () => {
    const reading = parseNvidiaSmiXml(
      smiLog(
        gpuElement({
          uuid: 'GPU-a',
          extra: `<mig_mode><current_mig>Enabled</current_mig></mig_mode>
            <mig_devices><mig_device><gpu_instance_id>N/A</gpu_instance_id><compute_instance_id>0</compute_instance_id></mig_device></mig_devices>`,
        }),
        gpuElement({ uuid: 'GPU-b', extra: '<mig_mode><current_mig>Disabled</current_mig></mig_mode>' }),
        gpuElement({ uuid: 'GPU-c' }),
      ),
    )
    assertSchemaValid(reading)
    assert.deepEqual(
      reading.gpus.map((gpu) => [gpu.migMode, gpu.migInstances]),
      [
        ['enabled', [{ computeInstanceId: 0 }]],
        ['disabled', []],
        ['unsupported', []],
      ],
    )
  })

  it(`reports at most ${maxGpusPerDevice} GPUs and says the rest were left out`, () => {
    const gpus = Array.from({ length: maxGpusPerDevice + 1 }, (_, position) =>
      gpuElement({ uuid: `GPU-${position}` }),
    )
    const reading = parseNvidiaSmiXml(smiLog(...gpus))
    assertSchemaValid(reading)
    assert.equal(reading.gpus.length, maxGpusPerDevice)
    assert.deepEqual(reading.warnings, [`only the first ${maxGpusPerDevice} GPUs are reported`])
  })

  it('bounds the warnings however many GPUs are broken', () => {
    const brokenGpus = Array.from({ length: 200 }, () => '<gpu><product_name>x</product_name></gpu>')
    const reading = parseNvidiaSmiXml(smiLog(...brokenGpus))
    assertSchemaValid(reading)
    assert.equal(reading.warnings.length, maxProbeWarnings)
    assert.equal(reading.warnings.at(-1), 'further warnings omitted')
  })
})

// Expected readings of the real captures, per the table in ../shared/fixtures/nvidia-smi/README.md.
const sharedExpectations: Readonly<Record<string, (reading: NvidiaSmiReading) => void>> = {
  'a100-sxm4-40gb-mig-x1.xml': (reading) => {
    assert.equal(reading.driverVersion, '510.47.03')
    assert.equal(reading.cudaVersion, '11.6')
    assert.deepEqual(onlyGpu(reading), {
      index: 0,
      uuid: 'GPU-27b94a00-ed54-5c24-b1fd-1054085de32a',
      productName: 'NVIDIA A100-SXM4-40GB',
      modelKey: 'a100-40gb',
      vramMib: 40960, // the GPU's own total, not its MIG devices' 19968
      architecture: 'Ampere',
      serial: '1324321002473',
      pciBusId: '00000000:00:04.0',
      pcieGeneration: 4,
      pcieWidthLanes: 16,
      powerLimitWatts: 400,
      migMode: 'enabled',
      migInstances: [
        { gpuInstanceId: 1, computeInstanceId: 0, vramMib: 19968, multiprocessorCount: 42 },
        { gpuInstanceId: 2, computeInstanceId: 0, vramMib: 19968, multiprocessorCount: 42 },
      ],
    })
  },
  'rtx4090-x1.xml': (reading) => {
    assert.equal(reading.driverVersion, '535.86.05')
    assert.equal(reading.cudaVersion, '12.2')
    assert.deepEqual(onlyGpu(reading), {
      index: 0,
      uuid: 'GPU-71d1acc2-662d-2166-bf9f-65272d2fc437',
      productName: 'NVIDIA GeForce RTX 4090',
      modelKey: 'rtx-4090',
      vramMib: 24564, // not the 24576 on the box
      architecture: 'Ada Lovelace',
      pciBusId: '00000000:84:00.0',
      pcieGeneration: 3, // max_link_gen: the card does 4, the slot 3
      pcieWidthLanes: 16,
      powerLimitWatts: 450, // from gpu_power_readings, the driver-535 layout
      migMode: 'unsupported',
      migInstances: [],
    })
  },
  'v100s-pcie-32gb-x8.xml': (reading) => {
    assert.equal(reading.driverVersion, '460.73.01')
    assert.equal(reading.cudaVersion, '11.2')
    assert.equal(reading.gpus.length, 8)
    assert.equal(new Set(reading.gpus.map((gpu) => gpu.uuid)).size, 8)
    assert.deepEqual(
      reading.gpus.map((gpu) => gpu.index),
      [0, 1, 2, 3, 4, 5, 6, 7],
    )
    for (const gpu of reading.gpus) {
      assert.equal(gpu.productName, 'Tesla V100S-PCIE-32GB')
      assert.equal(gpu.modelKey, 'v100s')
      assert.equal(gpu.vramMib, 32510) // 32768 in this file is BAR1, not memory
      assert.equal(gpu.architecture, 'Volta') // driver 460 has no product_architecture: from the catalog
      assert.equal(gpu.powerLimitWatts, 250)
      assert.equal(gpu.migMode, 'unsupported')
      assert.deepEqual(gpu.migInstances, [])
    }
  },
  'tesla-t4-x1.xml': (reading) => {
    assert.equal(reading.driverVersion, '515.105.01')
    assert.equal(reading.cudaVersion, '11.7')
    assert.deepEqual(onlyGpu(reading), {
      index: 0,
      uuid: 'GPU-d37e67a5-91dd-3774-a5cb-99096249601a',
      productName: 'Tesla T4',
      modelKey: 't4',
      vramMib: 15360,
      architecture: 'Turing',
      // no serial: it reads 0000000000000
      pciBusId: '00000000:00:1E.0',
      pcieGeneration: 3,
      pcieWidthLanes: 16, // max_link_width; the link currently runs at 8x
      powerLimitWatts: 70,
      migMode: 'unsupported', // current_mig N/A
      migInstances: [],
    })
  },
}

describe(
  'parseNvidiaSmiXml on real captures',
  { skip: !sharedFixturesPresent && 'no ../shared/fixtures' },
  () => {
    const captureNames = sharedFixturesPresent
      ? readdirSync(sharedFixturesDir).filter((name) => name.endsWith('.xml'))
      : []

    for (const name of captureNames) {
      it(`reads ${name} without warnings into valid GPUs`, () => {
        const reading = readFixture(sharedFixturesDir, name)
        assertSchemaValid(reading)
        assert.ok(reading.gpus.length > 0)
        assert.deepEqual(reading.warnings, [])
        sharedExpectations[name]?.(reading)
      })
    }

    it('has an expectation for each capture the README lists', () => {
      for (const name of Object.keys(sharedExpectations)) {
        assert.ok(captureNames.includes(name), `${name} missing`)
      }
    })
  },
)
