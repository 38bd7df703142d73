import Type, { type Static } from 'typebox'

// Epoch rewards as the API shows them: every payout carries the measured factors it was computed from, so a
// supplier can recompute it with the formula in docs/rewards.md. Amounts are integers of GMT's smallest unit
// as decimal strings, with the same amount formatted as GMT beside them.

const Units = Type.String({ pattern: '^[0-9]+$', description: 'integer amount of the smallest GMT unit' })
const TimestampMs = Type.Integer({ minimum: 0 })

export const RewardPoolName = Type.Union([Type.Literal('gpu'), Type.Literal('cpu')])
export type RewardPoolName = Static<typeof RewardPoolName>

export const RewardPoolView = Type.Object({
  pool: RewardPoolName,
  /** Share of the epoch's emission, in basis points. */
  shareBp: Type.Integer({ minimum: 0, maximum: 10_000 }),
  emissionUnits: Units,
  paidUnits: Units,
  /** Σ of the eligible devices' scores: each device's share is its score over this. */
  totalScore: Units,
  devicesPaid: Type.Integer({ minimum: 0 }),
})

export const RewardEpochView = Type.Object({
  epoch: Type.Integer({ minimum: 0 }),
  startsAtMs: TimestampMs,
  endsAtMs: TimestampMs,
  closedAtMs: TimestampMs,
  /** Minted into the reward pool for this epoch, from the emission schedule. */
  emissionUnits: Units,
  emissionGmt: Type.String(),
  /** Paid to devices: at most the emission; the rounding remainder stays in the pool. */
  paidUnits: Units,
  paidGmt: Type.String(),
  devicesConsidered: Type.Integer({ minimum: 0 }),
  devicesEligible: Type.Integer({ minimum: 0 }),
  devicesPaid: Type.Integer({ minimum: 0 }),
  policyVersion: Type.String(),
  pools: Type.Array(RewardPoolView),
})
export type RewardEpochView = Static<typeof RewardEpochView>

/** The measured records a payout was computed from. Ratios are parts per million of the epoch. */
export const RewardFactorsView = Type.Object({
  /** Time hired by clusters in the epoch over the epoch's length. */
  hiredPpm: Type.Integer({ minimum: 0, maximum: 1_000_000 }),
  /** Time online in the epoch over its length. */
  uptimePpm: Type.Integer({ minimum: 0, maximum: 1_000_000 }),
  bandwidthTier: Type.Union([Type.String(), Type.Null()]),
  /** In thousandths: 1000 is ×1. */
  bandwidthMilli: Type.Integer({ minimum: 0 }),
  /** Each GPU model and its multiplier in thousandths from the versioned table (0: not supported). */
  gpus: Type.Array(
    Type.Object({ modelKey: Type.String(), count: Type.Integer(), multiplierMilli: Type.Integer() }),
  ),
  /** Σ of the GPUs' multipliers (or the CPU multiplier for a device without GPUs), in thousandths. */
  hardwareMilli: Type.Integer({ minimum: 0 }),
  /** 1000 + hired bonus × hired ratio, in thousandths. */
  hiredMilli: Type.Integer({ minimum: 0 }),
})

export const RewardPayoutView = Type.Object({
  epoch: Type.Integer({ minimum: 0 }),
  deviceId: Type.String(),
  pool: RewardPoolName,
  eligible: Type.Boolean(),
  /** Why a device was not eligible, or null. */
  ineligibleReasonCode: Type.Union([Type.String(), Type.Null()]),
  ineligibleReason: Type.Union([Type.String(), Type.Null()]),
  factors: RewardFactorsView,
  score: Units,
  /** The device's share of its pool: score ÷ pool total score, as a decimal with 9 digits. */
  share: Type.String(),
  amountUnits: Units,
  amountGmt: Type.String(),
  /** The ledger transfer that paid it (null when nothing was paid). */
  transferId: Type.Union([Type.String(), Type.Null()]),
})
export type RewardPayoutView = Static<typeof RewardPayoutView>

export const RewardEpochList = Type.Object({ epochs: Type.Array(RewardEpochView) })
export type RewardEpochList = Static<typeof RewardEpochList>

export const RewardEpochDetail = Type.Object({
  epoch: RewardEpochView,
  payouts: Type.Array(RewardPayoutView),
})
export type RewardEpochDetail = Static<typeof RewardEpochDetail>

export const DeviceRewardList = Type.Object({
  deviceId: Type.String(),
  payouts: Type.Array(RewardPayoutView),
})
export type DeviceRewardList = Static<typeof DeviceRewardList>

export const RewardEpochsQuery = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: 500, default: 48 }),
    /** Epochs before this one (paging back). */
    before: Type.Optional(Type.Integer({ minimum: 0 })),
  },
  { additionalProperties: false },
)
export type RewardEpochsQuery = Static<typeof RewardEpochsQuery>

export const EpochParams = Type.Object(
  { epoch: Type.Integer({ minimum: 0 }) },
  { additionalProperties: false },
)
export type EpochParams = Static<typeof EpochParams>

export const EpochPayoutsQuery = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }),
    offset: Type.Integer({ minimum: 0, default: 0 }),
  },
  { additionalProperties: false },
)
export type EpochPayoutsQuery = Static<typeof EpochPayoutsQuery>
