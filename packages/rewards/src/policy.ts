import type { BandwidthTier } from '@gpumesh/core'

// The reward policy: every constant of the formula in docs/rewards.md, versioned so that a payout can always be
// recomputed with the policy it was computed with. Multipliers are integers in thousandths (1000 = ×1) and
// ratios in parts per million, so the computation is exact integer arithmetic on every machine.

export type RewardPoolName = 'gpu' | 'cpu'

export type EmissionSchedule = {
  /** Never emitted past this, in total. */
  readonly capUnits: bigint
  /** Emitted over the first month. */
  readonly firstMonthUnits: bigint
  /** Each month emits this share of the month before, in basis points (9880: 1.2% disinflation a month). */
  readonly monthlyRetainBp: bigint
  readonly monthMs: number
}

export type RewardPolicy = {
  readonly version: string
  /** Epoch n covers [genesisMs + n·epochLengthMs, genesisMs + (n+1)·epochLengthMs). */
  readonly genesisMs: number
  readonly epochLengthMs: number
  readonly emission: EmissionSchedule
  /** Each pool's share of an epoch's emission, in basis points; they add up to 10,000. */
  readonly poolShareBp: Readonly<Record<RewardPoolName, bigint>>
  /** A proof-of-compute pass counts for this long after it. */
  readonly verificationValidMs: number
  /** An offline gap shorter than this (a restart, an update) still counts as online for eligibility. */
  readonly restartGraceMs: number
  /** Eligible only when online (short gaps forgiven) at least this much of the epoch, in ppm. */
  readonly minOnlinePpm: bigint
  readonly bandwidthMilli: Readonly<Record<BandwidthTier | 'unmeasured', bigint>>
  /** A device hired the whole epoch scores ×(1 + this/1000); one never hired ×1. */
  readonly hiredBonusMilli: bigint
  /** GPU model multipliers by catalog id; a model that is not listed is not supported and scores 0. */
  readonly gpuModelMilli: Readonly<Record<string, bigint>>
  /** A device without GPUs, in the CPU pool. */
  readonly cpuDeviceMilli: bigint
}

const gmt = (tokens: bigint) => tokens * 1_000_000n

/** The defaults a local network and the tests start with; a network sets its own in the coordinator config. */
export const defaultRewardPolicy: RewardPolicy = {
  version: 'rewards-2026-12',
  genesisMs: Date.UTC(2026, 0, 1),
  epochLengthMs: 3_600_000,
  emission: {
    capUnits: gmt(300_000_000n),
    firstMonthUnits: gmt(5_000_000n),
    monthlyRetainBp: 9_880n,
    monthMs: 30 * 86_400_000,
  },
  poolShareBp: { gpu: 9_000n, cpu: 1_000n },
  verificationValidMs: 24 * 3_600_000,
  restartGraceMs: 5 * 60_000,
  minOnlinePpm: 900_000n,
  bandwidthMilli: { high: 1_200n, medium: 1_000n, low: 800n, unmeasured: 500n },
  hiredBonusMilli: 1_000n,
  gpuModelMilli: {
    h200: 2_200n,
    h100: 2_000n,
    'h100-pcie': 1_800n,
    'a100-80gb': 1_400n,
    'a100-40gb': 1_200n,
    l40s: 1_100n,
    'rtx-6000-ada': 1_000n,
    l40: 950n,
    'rtx-5090': 900n,
    'rtx-a6000': 800n,
    'rtx-4090': 750n,
    l4: 500n,
    a10g: 500n,
    a10: 500n,
    'rtx-4080': 500n,
    'rtx-3090': 450n,
    v100s: 400n,
    v100: 400n,
    'rtx-3080': 300n,
    t4: 250n,
  },
  cpuDeviceMilli: 1_000n,
}

/** Where a device's rewards come from: the GPU pool if it has any GPU, else the CPU pool. */
export function poolOf(gpuCount: number): RewardPoolName {
  return gpuCount > 0 ? 'gpu' : 'cpu'
}

export function epochStartMs(policy: RewardPolicy, epoch: number): number {
  return policy.genesisMs + epoch * policy.epochLengthMs
}

/** The last epoch that has ended by `nowMs`, or -1 when none has. */
export function lastEndedEpoch(policy: RewardPolicy, nowMs: number): number {
  return Math.floor((nowMs - policy.genesisMs) / policy.epochLengthMs) - 1
}
