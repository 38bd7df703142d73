import Type, { type Static } from 'typebox'
import { Role, UsdAmount } from './common.ts'
import { DeviceLocation, HardwareInventory } from './hardware.ts'
import { WorkerCapabilities } from './capabilities.ts'
import { Ed25519PublicKey, Ed25519Signature } from './worker-messages.ts'

// HTTP bodies and replies of /v1. These schemas validate requests, type the handlers, build the OpenAPI
// document and type the SDK: one definition, so the four cannot disagree.

const Name = Type.String({ minLength: 1, maxLength: 64, pattern: '^[^\\u0000-\\u001f]+$' })
const Roles = Type.Array(Role, { minItems: 1, maxItems: 3, uniqueItems: true })
const TimestampMs = Type.Integer({ minimum: 0, description: 'milliseconds since the Unix epoch' })

// Accounts and API keys

export const CreateAccountBody = Type.Object({ name: Name, roles: Roles }, { additionalProperties: false })
export type CreateAccountBody = Static<typeof CreateAccountBody>

export const AccountView = Type.Object({
  id: Type.String(),
  name: Type.String(),
  roles: Type.Array(Role),
  createdAtMs: TimestampMs,
})
export type AccountView = Static<typeof AccountView>

export const CreatedApiKey = Type.Object({
  id: Type.String(),
  name: Type.String(),
  roles: Type.Array(Role),
  /** The secret, shown once: only its hash is stored. */
  key: Type.String(),
})
export type CreatedApiKey = Static<typeof CreatedApiKey>

export const CreateAccountReply = Type.Object({ account: AccountView, apiKey: CreatedApiKey })
export type CreateAccountReply = Static<typeof CreateAccountReply>

export const MeReply = Type.Object({
  account: AccountView,
  apiKey: Type.Object({ id: Type.String(), name: Type.String(), roles: Type.Array(Role) }),
})
export type MeReply = Static<typeof MeReply>

export const CreateApiKeyBody = Type.Object(
  { name: Name, roles: Type.Optional(Roles) },
  { additionalProperties: false },
)
export type CreateApiKeyBody = Static<typeof CreateApiKeyBody>

export const ApiKeyView = Type.Object({
  id: Type.String(),
  name: Type.String(),
  roles: Type.Array(Role),
  createdAtMs: TimestampMs,
  lastUsedAtMs: Type.Union([TimestampMs, Type.Null()]),
  revokedAtMs: Type.Union([TimestampMs, Type.Null()]),
})
export type ApiKeyView = Static<typeof ApiKeyView>

export const ApiKeyList = Type.Object({ apiKeys: Type.Array(ApiKeyView) })
export type ApiKeyList = Static<typeof ApiKeyList>

// Enrollment

export const maxEnrollmentTokenTtlSeconds = 30 * 24 * 3600
export const defaultEnrollmentTokenTtlSeconds = 24 * 3600

export const CreateEnrollmentTokenBody = Type.Object(
  {
    label: Type.Optional(Name),
    ttlSeconds: Type.Optional(Type.Integer({ minimum: 60, maximum: maxEnrollmentTokenTtlSeconds })),
  },
  { additionalProperties: false },
)
export type CreateEnrollmentTokenBody = Static<typeof CreateEnrollmentTokenBody>

export const EnrollmentTokenView = Type.Object({
  id: Type.String(),
  label: Type.Union([Type.String(), Type.Null()]),
  createdAtMs: TimestampMs,
  expiresAtMs: TimestampMs,
  usedAtMs: Type.Union([TimestampMs, Type.Null()]),
  deviceId: Type.Union([Type.String(), Type.Null()]),
})
export type EnrollmentTokenView = Static<typeof EnrollmentTokenView>

export const CreatedEnrollmentToken = Type.Object({
  ...EnrollmentTokenView.properties,
  /** Shown once. */
  token: Type.String(),
  /** The command a supplier runs on the new machine. */
  command: Type.String(),
})
export type CreatedEnrollmentToken = Static<typeof CreatedEnrollmentToken>

export const EnrollmentTokenList = Type.Object({ enrollmentTokens: Type.Array(EnrollmentTokenView) })
export type EnrollmentTokenList = Static<typeof EnrollmentTokenList>

export const EnrollBody = Type.Object(
  {
    token: Type.String({ minLength: 1, maxLength: 256 }),
    publicKey: Ed25519PublicKey,
    /** Signature over enrollmentSigningPayload(token): proves the worker holds the private key. */
    signature: Ed25519Signature,
  },
  { additionalProperties: false },
)
export type EnrollBody = Static<typeof EnrollBody>

export const EnrollReply = Type.Object({
  deviceId: Type.String(),
  accountId: Type.String(),
  /** True when this key was already enrolled: the machine keeps its identity. */
  reenrolled: Type.Boolean(),
})
export type EnrollReply = Static<typeof EnrollReply>

// Devices

const DeviceStateSchema = Type.Union([
  Type.Literal('online'),
  Type.Literal('offline'),
  Type.Literal('blocked'),
])
const VerificationStateSchema = Type.Union([
  Type.Literal('unverified'),
  Type.Literal('verifying'),
  Type.Literal('verified'),
  Type.Literal('failed'),
])
const BandwidthTierSchema = Type.Union([Type.Literal('low'), Type.Literal('medium'), Type.Literal('high')])

export const DeviceView = Type.Object({
  id: Type.String(),
  hostname: Type.String(),
  state: DeviceStateSchema,
  stateReasonCode: Type.String(),
  stateReason: Type.String(),
  stateChangedAtMs: TimestampMs,
  verificationState: VerificationStateSchema,
  verificationReason: Type.String(),
  location: Type.Union([DeviceLocation, Type.Null()]),
  askingPricePerGpuHourUsd: Type.Union([UsdAmount, Type.Null()]),
  bandwidthTier: Type.Union([BandwidthTierSchema, Type.Null()]),
  inventory: Type.Union([HardwareInventory, Type.Null()]),
  /**
   * Share of time online since enrollment, over the last 30 days, from recorded uptime; null ("new") until the
   * device has an hour of history.
   */
  reliability: Type.Union([Type.Number({ minimum: 0, maximum: 1 }), Type.Null()]),
  /** Effective FP32 TFLOPS from the last passed proof-of-compute (a lower bound: it includes overheads). */
  measuredFp32Tflops: Type.Union([Type.Number(), Type.Null()]),
  uptimeMsTotal: Type.Integer({ minimum: 0 }),
  enrolledAtMs: TimestampMs,
  lastSeenAtMs: Type.Union([TimestampMs, Type.Null()]),
  /** What the machine's self-test found it can do, with the reason and fix for what it cannot; null until reported. */
  capabilities: Type.Union([WorkerCapabilities, Type.Null()]),
})
export type DeviceView = Static<typeof DeviceView>

export const DeviceList = Type.Object({ devices: Type.Array(DeviceView) })

export const ChallengeView = Type.Object({
  id: Type.String(),
  issuedAtMs: TimestampMs,
  matrixSize: Type.Integer(),
  outcome: Type.Union([Type.Literal('issued'), Type.Literal('passed'), Type.Literal('failed')]),
  reasonCode: Type.Union([Type.String(), Type.Null()]),
  reason: Type.String(),
  commitDeadlineAtMs: TimestampMs,
  committedAtMs: Type.Union([TimestampMs, Type.Null()]),
  finishedAtMs: Type.Union([TimestampMs, Type.Null()]),
  backend: Type.Union([Type.String(), Type.Null()]),
  effectiveTflops: Type.Union([Type.Number(), Type.Null()]),
})
export const ChallengeList = Type.Object({ challenges: Type.Array(ChallengeView) })
export type ChallengeList = Static<typeof ChallengeList>
export type DeviceList = Static<typeof DeviceList>

export const DeviceEventView = Type.Object({
  atMs: TimestampMs,
  state: DeviceStateSchema,
  reasonCode: Type.String(),
  reason: Type.String(),
})
export const DeviceEventList = Type.Object({ events: Type.Array(DeviceEventView) })
export type DeviceEventList = Static<typeof DeviceEventList>

export const UptimeBucketView = Type.Object({
  bucketStartMs: TimestampMs,
  onlineMs: Type.Integer({ minimum: 0 }),
})
export const DeviceUptimeReply = Type.Object({
  bucketMs: Type.Integer(),
  buckets: Type.Array(UptimeBucketView),
})
export type DeviceUptimeReply = Static<typeof DeviceUptimeReply>

// Marketplace

export const maxOffersPageSize = 200
export const defaultOffersPageSize = 50

export const OffersQuery = Type.Object(
  {
    gpuModel: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 64,
        description: 'catalog id or name, e.g. a100 or "RTX 4090"',
      }),
    ),
    minGpus: Type.Optional(Type.Integer({ minimum: 0, maximum: 64, description: 'GPUs per node, at least' })),
    maxGpus: Type.Optional(Type.Integer({ minimum: 0, maximum: 64 })),
    minVramGb: Type.Optional(Type.Number({ minimum: 0, maximum: 4096, description: 'per GPU' })),
    minCpuCores: Type.Optional(Type.Integer({ minimum: 0, maximum: 100_000 })),
    minRamGb: Type.Optional(Type.Number({ minimum: 0, maximum: 1_000_000 })),
    region: Type.Optional(Type.String({ minLength: 1, maxLength: 63 })),
    country: Type.Optional(Type.String({ pattern: '^[A-Za-z]{2}$' })),
    minBandwidthTier: Type.Optional(BandwidthTierSchema),
    maxPricePerGpuHourUsd: Type.Optional(UsdAmount),
    verifiedOnly: Type.Optional(Type.Boolean()),
    minReliability: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
    sort: Type.Optional(
      Type.Union([Type.Literal('price'), Type.Literal('performance'), Type.Literal('reliability')]),
    ),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: maxOffersPageSize })),
    cursor: Type.Optional(Type.String({ maxLength: 64, pattern: '^[0-9]+$' })),
  },
  { additionalProperties: false },
)
export type OffersQuery = Static<typeof OffersQuery>

export const Offer = Type.Object({
  deviceId: Type.String(),
  gpuModel: Type.String({ description: 'catalog id, or "cpu" for a node without GPUs' }),
  gpuModelName: Type.String(),
  gpuCount: Type.Integer(),
  vramMibPerGpu: Type.Integer(),
  cpuCores: Type.Integer(),
  memoryMib: Type.Integer(),
  region: Type.String(),
  country: Type.String(),
  bandwidthTier: Type.Union([BandwidthTierSchema, Type.Null()]),
  /** fixed: the supplier's own price; auto: the pricing engine's (GET /v1/quotes explains it). */
  pricingMode: Type.Union([Type.Literal('fixed'), Type.Literal('auto')]),
  /** The quoted price for an on-demand hour. */
  pricePerGpuHourUsd: UsdAmount,
  pricePerHourUsd: UsdAmount,
  performance: Type.Object({
    fp16TensorTflopsPerGpu: Type.Union([Type.Number(), Type.Null()]),
    /** Effective FP32 TFLOPS from the last passed proof-of-compute: a measured lower bound. */
    measuredFp32Tflops: Type.Union([Type.Number(), Type.Null()]),
    /** "measured": proof-of-compute has measured this device; "catalog": data-sheet figures only. */
    source: Type.Union([Type.Literal('measured'), Type.Literal('catalog'), Type.Literal('unknown')]),
  }),
  /** Measured share of time online over 30 days; null ("new") before an hour of history. */
  reliability: Type.Union([Type.Number(), Type.Null()]),
  verificationState: VerificationStateSchema,
  probeSource: Type.String(),
})
export type Offer = Static<typeof Offer>

export const OffersPage = Type.Object({
  offers: Type.Array(Offer),
  total: Type.Integer({ description: 'offers matching the filters' }),
  nextCursor: Type.Union([Type.String(), Type.Null()]),
})
export type OffersPage = Static<typeof OffersPage>

export const HealthReply = Type.Object({
  status: Type.Literal('ok'),
  version: Type.String(),
  store: Type.String(),
  connectedWorkers: Type.Integer(),
})
export type HealthReply = Static<typeof HealthReply>
