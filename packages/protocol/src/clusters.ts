import Type, { type Static } from 'typebox'
import { UsdAmount } from './common.ts'
import { Offer } from './api.ts'

// A renter's cluster request. Today the coordinator answers it as a dry run: can it be placed, on which
// nodes, at what price, and if not, which constraint blocks it and what the market offers instead.

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
  pricePerHourUsd: Type.Union([UsdAmount, Type.Null()]),
  totalUsd: Type.Union([UsdAmount, Type.Null()]),
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
