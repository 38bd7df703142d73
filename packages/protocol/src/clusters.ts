import Type, { type Static } from 'typebox'
import { UsdAmount } from './common.ts'
import { Offer } from './api.ts'
import {
  JobStatusName,
  maxJobEntrypointLength,
  maxWorkingDirBytes,
  WireguardPublicKey,
} from './cluster-messages.ts'

// A renter's cluster request. A dry run answers whether it can be placed, on which nodes, at what price,
// and if not, which constraint blocks it and what the market offers instead; a real one creates it.

export const maxClusterNodes = 64
export const maxClusterDurationHours = 24 * 30

export const ClusterRequestBody = Type.Object(
  {
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 64, pattern: '^[a-z0-9][a-z0-9-]*$' })),
    nodes: Type.Optional(
      Type.Integer({ minimum: 1, maximum: maxClusterNodes, description: 'number of nodes' }),
    ),
    /** "A100:8" (model and total GPUs), or a number of GPUs of any model. */
    gpus: Type.Optional(
      Type.Union([
        Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9 -]{0,40}:[1-9][0-9]{0,3}$' }),
        Type.Integer({ minimum: 1, maximum: maxClusterNodes * 16 }),
      ]),
    ),
    gpusPerNode: Type.Optional(Type.Integer({ minimum: 0, maximum: 16 })),
    gpuModel: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    minVramGb: Type.Optional(Type.Number({ minimum: 0, maximum: 4096 })),
    minFp16TflopsPerGpu: Type.Optional(Type.Number({ minimum: 0 })),
    region: Type.Optional(Type.String({ minLength: 1, maxLength: 63 })),
    country: Type.Optional(Type.String({ pattern: '^[A-Za-z]{2}$' })),
    minBandwidthTier: Type.Optional(
      Type.Union([Type.Literal('low'), Type.Literal('medium'), Type.Literal('high')]),
    ),
    maxPricePerGpuHourUsd: Type.Optional(UsdAmount),
    verifiedOnly: Type.Optional(
      Type.Boolean({ description: 'only devices that passed proof-of-compute (default true)' }),
    ),
    durationHours: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: maxClusterDurationHours })),
    rayVersion: Type.Optional(Type.String({ pattern: '^[0-9]+\\.[0-9]+\\.[0-9]+$' })),
  },
  { additionalProperties: false },
)
export type ClusterRequestBody = Static<typeof ClusterRequestBody>

const RejectionCounts = Type.Record(Type.String(), Type.Integer())

/** GET /v1/quotes: a cluster request in the query string (no name or Ray version: nothing is created). */
export const QuoteQuery = Type.Omit(ClusterRequestBody, ['name', 'rayVersion'])
export type QuoteQuery = Static<typeof QuoteQuery>

/** One step of a price's making (see docs/pricing.md). */
export const PriceFactorView = Type.Object({
  factor: Type.String({
    description:
      'fixed, reference, network_share, performance, bandwidth, location, demand, peak_hours, commitment or floor',
  }),
  /** The multiplier applied, e.g. "1.10"; null for a starting price or a floor. */
  multiplier: Type.Union([Type.String(), Type.Null()]),
  priceAfterUsd: UsdAmount,
  detail: Type.String(),
})
export type PriceFactorView = Static<typeof PriceFactorView>

/** A node's quoted price for the rental's length, with every factor that made it. */
export const NodeQuote = Type.Object({
  deviceId: Type.String(),
  gpuModel: Type.String(),
  gpuCount: Type.Integer(),
  pricingMode: Type.Union([Type.Literal('fixed'), Type.Literal('auto')]),
  pricePerGpuHourUsd: UsdAmount,
  pricePerHourUsd: UsdAmount,
  factors: Type.Array(PriceFactorView),
})
export type NodeQuote = Static<typeof NodeQuote>

/** PUT /v1/devices/:id/pricing: how the supplier prices one device. */
export const DevicePricingBody = Type.Union([
  Type.Object(
    { mode: Type.Literal('fixed'), pricePerGpuHourUsd: Type.Union([UsdAmount, Type.Null()]) },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      mode: Type.Literal('auto'),
      minimumPricePerGpuHourUsd: Type.Optional(Type.Union([UsdAmount, Type.Null()])),
    },
    { additionalProperties: false },
  ),
])
export type DevicePricingBody = Static<typeof DevicePricingBody>

export const DeviceQuoteQuery = Type.Object(
  { hours: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: maxClusterDurationHours })) },
  { additionalProperties: false },
)
export type DeviceQuoteQuery = Static<typeof DeviceQuoteQuery>

/** A device's price as the network quotes it now, and what automatic pricing would make of it. */
export const DeviceQuoteReply = Type.Object({
  deviceId: Type.String(),
  pricingMode: Type.Union([Type.Literal('fixed'), Type.Literal('auto')]),
  /** Fixed: the price; auto: the minimum; null: none. */
  askingPricePerGpuHourUsd: Type.Union([UsdAmount, Type.Null()]),
  commitmentHours: Type.Number(),
  /** The price renters are quoted; null when the device has none (then it is not listed). */
  pricePerGpuHourUsd: Type.Union([UsdAmount, Type.Null()]),
  /** Why it has no price, when it has none. */
  unpricedReason: Type.Union([Type.String(), Type.Null()]),
  factors: Type.Array(PriceFactorView),
  /** The engine's price for this device with automatic pricing and the same minimum, for comparison. */
  automatic: Type.Object({
    pricePerGpuHourUsd: Type.Union([UsdAmount, Type.Null()]),
    factors: Type.Array(PriceFactorView),
  }),
  policyVersion: Type.String(),
})
export type DeviceQuoteReply = Static<typeof DeviceQuoteReply>

export const ClusterQuote = Type.Object({
  policyVersion: Type.String(),
  /** The rental's length, which sets the commitment discount. */
  commitmentHours: Type.Number(),
  /** The rate USD quotes settle at. */
  gmtPerUsd: Type.String(),
  pricePerHourGmt: Type.String(),
  totalGmt: Type.String(),
  nodes: Type.Array(NodeQuote),
})
export type ClusterQuote = Static<typeof ClusterQuote>

export const ClusterPlan = Type.Object({
  placeable: Type.Boolean(),
  /** What was asked, after shorthands were resolved. */
  request: Type.Object({
    nodes: Type.Integer(),
    gpusPerNode: Type.Integer(),
    gpuModel: Type.Union([Type.String(), Type.Null()]),
    durationHours: Type.Number(),
  }),
  nodes: Type.Array(Offer),
  /** For the whole rental length (commitment discounts included), when placeable. */
  pricePerHourUsd: Type.Union([UsdAmount, Type.Null()]),
  totalUsd: Type.Union([UsdAmount, Type.Null()]),
  /** How each node's price was made, when placeable. */
  quote: Type.Union([ClusterQuote, Type.Null()]),
  blockingConstraint: Type.Union([Type.String(), Type.Null()]),
  detail: Type.String(),
  rejections: RejectionCounts,
  /** Without the blocking constraint: the price such a cluster would have, when one can be placed. */
  withoutBlockingConstraint: Type.Union([
    Type.Object({ pricePerHourUsd: UsdAmount, nodes: Type.Array(Offer) }),
    Type.Null(),
  ]),
  /** Listed devices per GPU model, with the lowest asking price. */
  market: Type.Array(
    Type.Object({
      gpuModel: Type.String(),
      nodes: Type.Integer(),
      gpus: Type.Integer(),
      minPricePerGpuHourUsd: UsdAmount,
    }),
  ),
})
export type ClusterPlan = Static<typeof ClusterPlan>

// Clusters once created: what the renter sees and drives.

const TimestampMs = Type.Integer({ minimum: 0, description: 'milliseconds since the Unix epoch' })
const NullableTimestampMs = Type.Union([TimestampMs, Type.Null()])

export const ClusterStateName = Type.Union([
  Type.Literal('pending'),
  Type.Literal('provisioning'),
  Type.Literal('ready'),
  Type.Literal('terminating'),
  Type.Literal('terminated'),
  Type.Literal('failed'),
])

export const ClusterNodeView = Type.Object({
  deviceId: Type.String(),
  role: Type.Union([Type.Literal('head'), Type.Literal('worker')]),
  /** reserved → keyed → mesh_up → ray_joined; lost or released when it left. */
  phase: Type.String(),
  phaseReason: Type.String(),
  overlayAddress: Type.Union([Type.String(), Type.Null()]),
  joinedAtMs: TimestampMs,
  leftAtMs: NullableTimestampMs,
  /** What this node costs per hour while it serves. */
  pricePerHourUsd: UsdAmount,
  /** How long it has served (in Ray, from the cluster's first ready until it stopped or now): what it is billed for. */
  servedMs: Type.Integer({ minimum: 0 }),
})
export type ClusterNodeView = Static<typeof ClusterNodeView>

/** What a cluster has cost so far: every figure is an escrow balance in the ledger. */
export const ClusterBillingView = Type.Object({
  /** Charged to the renter so far (paid on to suppliers and the fee). */
  chargedGmt: Type.String(),
  /** Still held from the renter's wallet for the rest of the rental. */
  heldGmt: Type.String(),
  intervalsCharged: Type.Integer(),
  /** Everything before this moment is charged. */
  billedUntilMs: NullableTimestampMs,
})
export type ClusterBillingView = Static<typeof ClusterBillingView>

export const ClusterView = Type.Object({
  id: Type.String(),
  name: Type.String(),
  state: ClusterStateName,
  stateReason: Type.String(),
  desired: Type.Union([Type.Literal('running'), Type.Literal('terminated')]),
  nodeCount: Type.Integer(),
  gpusPerNode: Type.Integer(),
  durationHours: Type.Number(),
  pricePerHourUsd: UsdAmount,
  /** The cluster's private overlay subnet, while it has one. */
  subnet: Type.Union([Type.String(), Type.Null()]),
  /** Where the Ray head listens on the overlay (GCS), once known. */
  rayAddress: Type.Union([Type.String(), Type.Null()]),
  createdAtMs: TimestampMs,
  /**
   * Until it is first ready: the moment it fails if it is not ready by then, releasing every machine and its
   * whole hold, charged nothing (clusterProvisionTimeoutMs after creation). Null once ready or ended.
   */
  provisionDeadlineAtMs: NullableTimestampMs,
  readyAtMs: NullableTimestampMs,
  expiresAtMs: NullableTimestampMs,
  endedAtMs: NullableTimestampMs,
  nodes: Type.Array(ClusterNodeView),
  /** Null for a cluster nobody pays for (a network without billing). */
  billing: Type.Union([ClusterBillingView, Type.Null()]),
})
export type ClusterView = Static<typeof ClusterView>

export const ClusterList = Type.Object({ clusters: Type.Array(ClusterView) })
export type ClusterList = Static<typeof ClusterList>

export const ClusterEventView = Type.Object({
  /** Position in the cluster's event log; pass it back as `after` to get only newer events. */
  seq: Type.String({ pattern: '^[0-9]+$' }),
  atMs: TimestampMs,
  kind: Type.String(),
  deviceId: Type.Union([Type.String(), Type.Null()]),
  message: Type.String(),
})
export type ClusterEventView = Static<typeof ClusterEventView>

export const ClusterEventList = Type.Object({ events: Type.Array(ClusterEventView) })
export type ClusterEventList = Static<typeof ClusterEventList>

export const ClusterEventsQuery = Type.Object(
  {
    after: Type.Optional(Type.String({ pattern: '^[0-9]{1,19}$' })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 200 })),
    /** Hold the request open up to this long when there is nothing newer (long polling). */
    waitMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 30_000, default: 0 })),
  },
  { additionalProperties: false },
)
export type ClusterEventsQuery = Static<typeof ClusterEventsQuery>

export const ExtendClusterBody = Type.Object(
  { hours: Type.Number({ exclusiveMinimum: 0, maximum: maxClusterDurationHours }) },
  { additionalProperties: false },
)
export type ExtendClusterBody = Static<typeof ExtendClusterBody>

export const SubmitJobBody = Type.Object(
  {
    entrypoint: Type.String({ minLength: 1, maxLength: maxJobEntrypointLength }),
    /** The working directory as a gzipped tar, base64; the driver runs in it and Ray ships it to every node. */
    workingDirTarGz: Type.Optional(
      Type.String({ maxLength: Math.ceil(maxWorkingDirBytes / 3) * 4, pattern: '^[A-Za-z0-9+/]*={0,2}$' }),
    ),
  },
  { additionalProperties: false },
)
export type SubmitJobBody = Static<typeof SubmitJobBody>

export const JobView = Type.Object({
  id: Type.String(),
  clusterId: Type.String(),
  entrypoint: Type.String(),
  status: JobStatusName,
  message: Type.String(),
  exitCode: Type.Union([Type.Integer(), Type.Null()]),
  createdAtMs: TimestampMs,
  finishedAtMs: NullableTimestampMs,
})
export type JobView = Static<typeof JobView>

export const JobList = Type.Object({ jobs: Type.Array(JobView) })
export type JobList = Static<typeof JobList>

export const JobLogQuery = Type.Object(
  {
    after: Type.Optional(Type.Integer({ minimum: 0, default: 0 })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 500 })),
    waitMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 30_000, default: 0 })),
  },
  { additionalProperties: false },
)
export type JobLogQuery = Static<typeof JobLogQuery>

export const JobLogReply = Type.Object({
  chunks: Type.Array(Type.Object({ seq: Type.Integer(), text: Type.String() })),
  /** The job has finished and every chunk up to here has been returned. */
  complete: Type.Boolean(),
  job: JobView,
})
export type JobLogReply = Static<typeof JobLogReply>

// A renter's own machine joined to the cluster's mesh as a WireGuard peer.

export const ConnectClientBody = Type.Object(
  {
    /** Made on the renter's machine; the private key never leaves it. */
    publicKey: WireguardPublicKey,
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9._ -]+$' })),
  },
  { additionalProperties: false },
)
export type ConnectClientBody = Static<typeof ConnectClientBody>

export const RemoveClientBody = Type.Object(
  { publicKey: WireguardPublicKey },
  { additionalProperties: false },
)
export type RemoveClientBody = Static<typeof RemoveClientBody>

export const ClusterClientConfig = Type.Object({
  clusterId: Type.String(),
  name: Type.String(),
  publicKey: Type.String(),
  /** This machine's overlay address, with the cluster subnet's prefix length (e.g. 100.64.3.200/24). */
  address: Type.String(),
  subnet: Type.String(),
  /** Every node now in the mesh; fetch again after a node is replaced. */
  peers: Type.Array(
    Type.Object({ publicKey: Type.String(), endpoint: Type.String(), overlayAddress: Type.String() }),
  ),
  /** Ray's GCS and its client server (ray://) on the head, over the mesh. */
  rayAddress: Type.Union([Type.String(), Type.Null()]),
  rayClientAddress: Type.Union([Type.String(), Type.Null()]),
})
export type ClusterClientConfig = Static<typeof ClusterClientConfig>

export const ClusterClientList = Type.Object({ clients: Type.Array(ClusterClientConfig) })
export type ClusterClientList = Static<typeof ClusterClientList>
