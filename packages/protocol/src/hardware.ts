import Type, { type Static } from 'typebox'

// What a worker reports about its machine. Every field comes from a probe on the machine (or a saved
// nvidia-smi capture, marked as such); fields the tool reads as N/A are simply absent.

export const maxGpusPerDevice = 64

export const MigInstance = Type.Object(
  {
    gpuInstanceId: Type.Optional(Type.Integer({ minimum: 0 })),
    computeInstanceId: Type.Optional(Type.Integer({ minimum: 0 })),
    vramMib: Type.Optional(Type.Integer({ minimum: 0 })),
    multiprocessorCount: Type.Optional(Type.Integer({ minimum: 0 })),
  },
  { additionalProperties: false },
)
export type MigInstance = Static<typeof MigInstance>

export const GpuInfo = Type.Object(
  {
    index: Type.Integer({ minimum: 0, maximum: 1024 }),
    uuid: Type.String({ minLength: 1, maxLength: 128 }),
    productName: Type.String({ minLength: 1, maxLength: 128 }),
    /** Catalog id ("a100-40gb") or a slug of the product name for models the catalog lacks. */
    modelKey: Type.String({ minLength: 1, maxLength: 128 }),
    vramMib: Type.Integer({ minimum: 0, maximum: 16 * 1024 * 1024 }),
    architecture: Type.Optional(Type.String({ maxLength: 64 })),
    serial: Type.Optional(Type.String({ maxLength: 64 })),
    pciBusId: Type.Optional(Type.String({ maxLength: 64 })),
    pcieGeneration: Type.Optional(Type.Integer({ minimum: 1, maximum: 16 })),
    pcieWidthLanes: Type.Optional(Type.Integer({ minimum: 1, maximum: 64 })),
    powerLimitWatts: Type.Optional(Type.Number({ minimum: 0, maximum: 10_000 })),
    migMode: Type.Union([Type.Literal('enabled'), Type.Literal('disabled'), Type.Literal('unsupported')]),
    migInstances: Type.Array(MigInstance, { maxItems: 64 }),
  },
  { additionalProperties: false },
)
export type GpuInfo = Static<typeof GpuInfo>

export const ProbeSource = Type.Union([
  Type.Literal('nvidia-smi'),
  Type.Literal('nvidia-smi-xml-file'),
  Type.Literal('none'),
])
export type ProbeSource = Static<typeof ProbeSource>

export const HardwareInventory = Type.Object(
  {
    hostname: Type.String({ minLength: 1, maxLength: 255 }),
    gpus: Type.Array(GpuInfo, { maxItems: maxGpusPerDevice }),
    driverVersion: Type.Optional(Type.String({ maxLength: 64 })),
    cudaVersion: Type.Optional(Type.String({ maxLength: 64 })),
    cpu: Type.Object(
      {
        model: Type.String({ maxLength: 256 }),
        logicalCores: Type.Integer({ minimum: 1, maximum: 100_000 }),
        architecture: Type.String({ maxLength: 32 }),
      },
      { additionalProperties: false },
    ),
    memoryMib: Type.Integer({ minimum: 0 }),
    disk: Type.Object(
      {
        path: Type.String({ maxLength: 4096 }),
        totalMib: Type.Integer({ minimum: 0 }),
        freeMib: Type.Integer({ minimum: 0 }),
      },
      { additionalProperties: false },
    ),
    os: Type.Object(
      {
        platform: Type.String({ maxLength: 64 }),
        release: Type.String({ maxLength: 256 }),
        distribution: Type.Optional(Type.String({ maxLength: 256 })),
      },
      { additionalProperties: false },
    ),
    probeSource: ProbeSource,
    warnings: Type.Array(Type.String({ maxLength: 1024 }), { maxItems: 64 }),
  },
  { additionalProperties: false },
)
export type HardwareInventory = Static<typeof HardwareInventory>

/**
 * A machine as the public explorer shows it: what a renter needs to choose it (GPU models, VRAM, PCIe, CPU,
 * memory, driver and CUDA versions). Not its hostname, kernel release, distribution, disks, state-dir path,
 * warnings or GPU serials and UUIDs: those go to the device's own account only.
 */
export const PublicHardwareInventory = Type.Object(
  {
    gpus: Type.Array(
      Type.Object(
        {
          index: GpuInfo.properties.index,
          productName: GpuInfo.properties.productName,
          modelKey: GpuInfo.properties.modelKey,
          vramMib: GpuInfo.properties.vramMib,
          architecture: GpuInfo.properties.architecture,
          pcieGeneration: GpuInfo.properties.pcieGeneration,
          pcieWidthLanes: GpuInfo.properties.pcieWidthLanes,
          migMode: GpuInfo.properties.migMode,
        },
        { additionalProperties: false },
      ),
      { maxItems: maxGpusPerDevice },
    ),
    driverVersion: HardwareInventory.properties.driverVersion,
    cudaVersion: HardwareInventory.properties.cudaVersion,
    cpu: HardwareInventory.properties.cpu,
    memoryMib: HardwareInventory.properties.memoryMib,
    os: Type.Object({ platform: Type.String({ maxLength: 64 }) }, { additionalProperties: false }),
    probeSource: ProbeSource,
  },
  { additionalProperties: false },
)
export type PublicHardwareInventory = Static<typeof PublicHardwareInventory>

export const regionPattern = '^[a-z0-9][a-z0-9-]{0,62}$'
export const countryPattern = '^[A-Z]{2}$'

export const DeviceLocation = Type.Object(
  {
    region: Type.String({ pattern: regionPattern, description: 'e.g. eu-west, us-east' }),
    country: Type.String({ pattern: countryPattern, description: 'ISO 3166-1 alpha-2, e.g. DE' }),
  },
  { additionalProperties: false },
)
export type DeviceLocation = Static<typeof DeviceLocation>
