import Type, { type Static } from 'typebox'
import { RewardEpochView, RewardPayoutView } from './rewards.ts'

// The public network explorer's JSON: what anyone can see without logging in. Counts are split honestly:
// connected (online now), verified (online and proof-of-compute passed), hired (in a running cluster).
// Every reply says when it was computed; replies are cached for a few seconds.

const Units = Type.String({ pattern: '^[0-9]+$', description: 'integer amount of the smallest GMT unit' })
const TimestampMs = Type.Integer({ minimum: 0 })

export const SupplyCounts = Type.Object({
  /** Every enrolled device (online or not, not blocked). */
  enrolled: Type.Integer({ minimum: 0 }),
  connected: Type.Integer({ minimum: 0 }),
  verified: Type.Integer({ minimum: 0 }),
  hired: Type.Integer({ minimum: 0 }),
})
export type SupplyCounts = Static<typeof SupplyCounts>

export const ExplorerSummary = Type.Object({
  generatedAtMs: TimestampMs,
  devices: SupplyCounts,
  gpus: SupplyCounts,
  /** GPUs by model (devices without GPUs are counted under modelKey "cpu", as devices). */
  byModel: Type.Array(Type.Object({ modelKey: Type.String(), name: Type.String(), gpus: SupplyCounts })),
  /** Connected devices and GPUs by ISO country code ("unknown" when not reported). */
  byCountry: Type.Array(
    Type.Object({ country: Type.String(), devices: Type.Integer(), gpus: Type.Integer() }),
  ),
  computeHours: Type.Object({
    /** Node-hours served to clusters (from the recorded service periods), all time. */
    totalNodeHours: Type.Number(),
    totalGpuHours: Type.Number(),
    /** The last 30 UTC days, oldest first. */
    daily: Type.Array(Type.Object({ day: Type.String(), nodeHours: Type.Number(), gpuHours: Type.Number() })),
  }),
  clusters: Type.Object({
    running: Type.Integer({ minimum: 0 }),
    /** Running clusters by node count. */
    bySize: Type.Array(Type.Object({ nodes: Type.Integer(), clusters: Type.Integer() })),
    total: Type.Integer({ minimum: 0 }),
  }),
  rewards: Type.Object({
    epochsClosed: Type.Integer({ minimum: 0 }),
    emittedUnits: Units,
    paidUnits: Units,
    latest: Type.Union([RewardEpochView, Type.Null()]),
  }),
  /** Network earnings from the ledger: what suppliers earned from rentals, from rewards, and the fees. */
  ledger: Type.Object({
    rentalEarningsUnits: Units,
    rewardEarningsUnits: Units,
    feesUnits: Units,
  }),
})
export type ExplorerSummary = Static<typeof ExplorerSummary>

export const PriceIndexQuery = Type.Object(
  { days: Type.Integer({ minimum: 1, maximum: 90, default: 7 }) },
  { additionalProperties: false },
)
export type PriceIndexQuery = Static<typeof PriceIndexQuery>

/** The median asked price per GPU-hour of each model's offers, sampled over time. */
export const PriceIndexReply = Type.Object({
  generatedAtMs: TimestampMs,
  models: Type.Array(
    Type.Object({
      modelKey: Type.String(),
      name: Type.String(),
      points: Type.Array(
        Type.Object({
          atMs: TimestampMs,
          medianUsdPerGpuHour: Type.String(),
          offers: Type.Integer({ minimum: 0 }),
        }),
      ),
    }),
  ),
})
export type PriceIndexReply = Static<typeof PriceIndexReply>

export const ExplorerDevicesQuery = Type.Object(
  {
    modelKey: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    country: Type.Optional(Type.String({ minLength: 2, maxLength: 2 })),
    state: Type.Optional(Type.Union([Type.Literal('online'), Type.Literal('offline')])),
    limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
    offset: Type.Integer({ minimum: 0, maximum: 1_000_000, default: 0 }),
  },
  { additionalProperties: false },
)
export type ExplorerDevicesQuery = Static<typeof ExplorerDevicesQuery>

export const ExplorerDeviceRow = Type.Object({
  id: Type.String(),
  /** Null to the public; the hostname only on the device detail read with a key of the device's account. */
  hostname: Type.Union([Type.String(), Type.Null()]),
  state: Type.String(),
  verificationState: Type.String(),
  hired: Type.Boolean(),
  country: Type.Union([Type.String(), Type.Null()]),
  region: Type.Union([Type.String(), Type.Null()]),
  gpuModelKey: Type.Union([Type.String(), Type.Null()]),
  gpuCount: Type.Integer({ minimum: 0 }),
  bandwidthTier: Type.Union([Type.String(), Type.Null()]),
  measuredFp32Tflops: Type.Union([Type.Number(), Type.Null()]),
  /** Null: a new device, without an hour of history. */
  reliability: Type.Union([Type.Number(), Type.Null()]),
})
export type ExplorerDeviceRow = Static<typeof ExplorerDeviceRow>

export const ExplorerDevicePage = Type.Object({
  generatedAtMs: TimestampMs,
  total: Type.Integer({ minimum: 0 }),
  devices: Type.Array(ExplorerDeviceRow),
})
export type ExplorerDevicePage = Static<typeof ExplorerDevicePage>

export const ExplorerDeviceDetail = Type.Object({
  generatedAtMs: TimestampMs,
  device: ExplorerDeviceRow,
  enrolledAtMs: TimestampMs,
  lastSeenAtMs: Type.Union([TimestampMs, Type.Null()]),
  /**
   * "public": the machine as a renter needs it (PublicHardwareInventory). "owner": read with a key of the
   * device's account, so the whole HardwareInventory the worker reported (hostname, OS, disk, warnings).
   */
  view: Type.Union([Type.Literal('public'), Type.Literal('owner')]),
  /** The hardware the worker reported, as `view` says: PublicHardwareInventory or HardwareInventory. */
  inventory: Type.Union([Type.Unknown(), Type.Null()]),
  speedtest: Type.Union([
    Type.Object({
      measuredAtMs: TimestampMs,
      /** Null where a stored figure is not a finite number (records from before the edge refused them). */
      latencyMs: Type.Union([Type.Number(), Type.Null()]),
      downloadMbps: Type.Union([Type.Number(), Type.Null()]),
      uploadMbps: Type.Union([Type.Number(), Type.Null()]),
      bandwidthTier: Type.Union([Type.String(), Type.Null()]),
    }),
    Type.Null(),
  ]),
  verifications: Type.Array(
    Type.Object({
      issuedAtMs: TimestampMs,
      outcome: Type.String(),
      reasonCode: Type.Union([Type.String(), Type.Null()]),
      reason: Type.String(),
      effectiveTflops: Type.Union([Type.Number(), Type.Null()]),
      backend: Type.Union([Type.String(), Type.Null()]),
    }),
  ),
  /** The last 30 UTC days, oldest first: share of each day online (0..1). */
  uptimeDaily: Type.Array(Type.Object({ day: Type.String(), onlineRatio: Type.Number() })),
  /** Income per UTC day and source ("rental", "reward", …). */
  earningsDaily: Type.Array(Type.Object({ day: Type.String(), source: Type.String(), units: Units })),
  rewards: Type.Array(RewardPayoutView),
})
export type ExplorerDeviceDetail = Static<typeof ExplorerDeviceDetail>
