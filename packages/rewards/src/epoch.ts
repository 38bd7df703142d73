import type { BandwidthTier } from '@gpumesh/core'
import { poolOf, type RewardPolicy, type RewardPoolName } from './policy.ts'

// One epoch's payouts, from measured records only: when each device was online (its recorded state changes),
// how long clusters used it (their recorded service periods), its proof-of-compute results, its measured
// bandwidth tier and the GPUs it reported. Nothing a supplier claims is taken on trust.

/** What the coordinator measured about one device over one epoch. */
export type EpochDeviceRecord = {
  readonly deviceId: string
  readonly accountId: string
  readonly blocked: boolean
  /** The newest passed proof-of-compute challenge at or before the epoch's end. */
  readonly lastPassedVerificationAtMs: number | null
  /** A challenge failed during the epoch or at its close (a spot check): such a device gets nothing. */
  readonly failedSpotCheck: { readonly atMs: number; readonly reason: string } | null
  /** Online intervals [startMs, endMs); they may reach outside the epoch and overlap. */
  readonly onlineIntervals: readonly (readonly [number, number])[]
  /** Hired intervals (cluster service periods) [startMs, endMs); may reach outside the epoch and overlap. */
  readonly hiredIntervals: readonly (readonly [number, number])[]
  readonly bandwidthTier: BandwidthTier | null
  /** Catalog model id of each GPU (an unknown model is carried as it is and scores 0). */
  readonly gpuModelKeys: readonly string[]
}

export const IneligibleReason = {
  blocked: 'blocked',
  notVerified: 'not_verified',
  failedSpotCheck: 'failed_spot_check',
  offline: 'offline',
  unsupportedHardware: 'unsupported_hardware',
} as const
export type IneligibleReason = (typeof IneligibleReason)[keyof typeof IneligibleReason]

export type RewardFactors = {
  readonly hiredPpm: bigint
  readonly uptimePpm: bigint
  readonly bandwidthTier: BandwidthTier | null
  readonly bandwidthMilli: bigint
  readonly gpus: readonly {
    readonly modelKey: string
    readonly count: number
    readonly multiplierMilli: bigint
  }[]
  readonly hardwareMilli: bigint
  readonly hiredMilli: bigint
}

export type DevicePayout = {
  readonly deviceId: string
  readonly accountId: string
  readonly pool: RewardPoolName
  readonly eligible: boolean
  readonly ineligibleReasonCode: IneligibleReason | null
  readonly ineligibleReason: string | null
  readonly factors: RewardFactors
  /** hardware × bandwidth × hired × uptime (thousandths, thousandths, thousandths, ppm); 0 when ineligible. */
  readonly score: bigint
  /** floor(pool emission × score ÷ pool total score). */
  readonly amountUnits: bigint
}

export type PoolTotals = {
  readonly pool: RewardPoolName
  readonly shareBp: bigint
  readonly emissionUnits: bigint
  readonly totalScore: bigint
  readonly paidUnits: bigint
  readonly devicesPaid: number
}

export type EpochPayouts = {
  readonly epoch: number
  readonly startsAtMs: number
  readonly endsAtMs: number
  readonly emissionUnits: bigint
  readonly paidUnits: bigint
  readonly pools: readonly PoolTotals[]
  /** One per record, in the order given. */
  readonly payouts: readonly DevicePayout[]
}

const ppm = 1_000_000n

/** Total length of the union of `intervals` inside [fromMs, toMs). */
export function coveredMs(
  intervals: readonly (readonly [number, number])[],
  fromMs: number,
  toMs: number,
): number {
  let total = 0
  for (const [start, end] of mergedWithin(intervals, fromMs, toMs)) total += end - start
  return total
}

/** The union of `intervals` clipped to [fromMs, toMs), sorted, with gaps shorter than `bridgeMs` closed. */
export function mergedWithin(
  intervals: readonly (readonly [number, number])[],
  fromMs: number,
  toMs: number,
  bridgeMs = 0,
): [number, number][] {
  const clipped = intervals
    .map(([start, end]): [number, number] => [Math.max(start, fromMs), Math.min(end, toMs)])
    .filter(([start, end]) => end > start)
    .sort((a, b) => a[0] - b[0])
  const merged: [number, number][] = []
  for (const [start, end] of clipped) {
    const last = merged.at(-1)
    if (last && start - last[1] < Math.max(bridgeMs, 1)) last[1] = Math.max(last[1], end)
    else merged.push([start, end])
  }
  return merged
}

/** Online time with short gaps forgiven, including a short gap at either end of the epoch. */
function onlineWithGraceMs(record: EpochDeviceRecord, fromMs: number, toMs: number, graceMs: number): number {
  const merged = mergedWithin(record.onlineIntervals, fromMs, toMs, graceMs)
  const first = merged[0]
  const last = merged.at(-1)
  if (!first || !last) return 0
  if (first[0] - fromMs < graceMs) first[0] = fromMs
  if (toMs - last[1] < graceMs) last[1] = toMs
  return merged.reduce((sum, [start, end]) => sum + (end - start), 0)
}

function factorsOf(
  policy: RewardPolicy,
  record: EpochDeviceRecord,
  fromMs: number,
  toMs: number,
): RewardFactors {
  const lengthMs = BigInt(toMs - fromMs)
  const uptimePpm = (BigInt(coveredMs(record.onlineIntervals, fromMs, toMs)) * ppm) / lengthMs
  const hiredPpm = (BigInt(coveredMs(record.hiredIntervals, fromMs, toMs)) * ppm) / lengthMs
  const bandwidthMilli = policy.bandwidthMilli[record.bandwidthTier ?? 'unmeasured']
  const counts = new Map<string, number>()
  for (const key of record.gpuModelKeys) counts.set(key, (counts.get(key) ?? 0) + 1)
  const gpus = [...counts.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([modelKey, count]) => ({ modelKey, count, multiplierMilli: policy.gpuModelMilli[modelKey] ?? 0n }))
  const hardwareMilli =
    record.gpuModelKeys.length === 0
      ? policy.cpuDeviceMilli
      : gpus.reduce((sum, gpu) => sum + gpu.multiplierMilli * BigInt(gpu.count), 0n)
  const hiredMilli = 1_000n + (policy.hiredBonusMilli * hiredPpm) / ppm
  return {
    hiredPpm,
    uptimePpm,
    bandwidthTier: record.bandwidthTier,
    bandwidthMilli,
    gpus,
    hardwareMilli,
    hiredMilli,
  }
}

function ineligibility(
  policy: RewardPolicy,
  record: EpochDeviceRecord,
  factors: RewardFactors,
  fromMs: number,
  toMs: number,
): { code: IneligibleReason; reason: string } | null {
  if (record.blocked) return { code: IneligibleReason.blocked, reason: 'the device is blocked' }
  if (record.failedSpotCheck) {
    return {
      code: IneligibleReason.failedSpotCheck,
      reason: `failed a proof-of-compute spot check: ${record.failedSpotCheck.reason}`,
    }
  }
  const passedAt = record.lastPassedVerificationAtMs
  if (passedAt === null || passedAt > toMs || toMs - passedAt > policy.verificationValidMs) {
    return {
      code: IneligibleReason.notVerified,
      reason:
        passedAt === null || passedAt > toMs
          ? 'no proof-of-compute challenge passed yet'
          : `last proof-of-compute pass is older than ${policy.verificationValidMs / 3_600_000} h`,
    }
  }
  const lengthMs = toMs - fromMs
  const onlinePpm =
    (BigInt(onlineWithGraceMs(record, fromMs, toMs, policy.restartGraceMs)) * ppm) / BigInt(lengthMs)
  if (onlinePpm < policy.minOnlinePpm) {
    return {
      code: IneligibleReason.offline,
      reason: `online ${formatPercent(onlinePpm)} of the epoch (gaps under ${policy.restartGraceMs / 60_000} min forgiven); needs ${formatPercent(policy.minOnlinePpm)}`,
    }
  }
  if (factors.hardwareMilli === 0n) {
    return {
      code: IneligibleReason.unsupportedHardware,
      reason: `GPU model not in reward table ${policy.version}: ${factors.gpus.map((gpu) => gpu.modelKey).join(', ')}`,
    }
  }
  return null
}

function formatPercent(partsPerMillion: bigint): string {
  return `${(Number(partsPerMillion) / 10_000).toFixed(2)}%`
}

/**
 * Computes every device's payout for one epoch. Each pool's emission is split in proportion to score and
 * rounded down, so the payouts never add up to more than the emission; the remainder stays in the pool.
 */
export function computeEpochPayouts(
  policy: RewardPolicy,
  epoch: number,
  emissionUnits: bigint,
  records: readonly EpochDeviceRecord[],
): EpochPayouts {
  const startsAtMs = policy.genesisMs + epoch * policy.epochLengthMs
  const endsAtMs = startsAtMs + policy.epochLengthMs
  const gpuEmission = (emissionUnits * policy.poolShareBp.gpu) / 10_000n
  const poolEmission: Record<RewardPoolName, bigint> = { gpu: gpuEmission, cpu: emissionUnits - gpuEmission }

  const scored = records.map((record) => {
    const factors = factorsOf(policy, record, startsAtMs, endsAtMs)
    const refusal = ineligibility(policy, record, factors, startsAtMs, endsAtMs)
    const score = refusal
      ? 0n
      : factors.hardwareMilli * factors.bandwidthMilli * factors.hiredMilli * factors.uptimePpm
    return { record, factors, refusal, score, pool: poolOf(record.gpuModelKeys.length) }
  })
  const totalScore: Record<RewardPoolName, bigint> = { gpu: 0n, cpu: 0n }
  for (const entry of scored) totalScore[entry.pool] += entry.score

  const paid: Record<RewardPoolName, bigint> = { gpu: 0n, cpu: 0n }
  const devicesPaid: Record<RewardPoolName, number> = { gpu: 0, cpu: 0 }
  const payouts = scored.map(({ record, factors, refusal, score, pool }): DevicePayout => {
    const total = totalScore[pool]
    const amountUnits = total === 0n ? 0n : (poolEmission[pool] * score) / total
    paid[pool] += amountUnits
    if (amountUnits > 0n) devicesPaid[pool] += 1
    return {
      deviceId: record.deviceId,
      accountId: record.accountId,
      pool,
      eligible: refusal === null,
      ineligibleReasonCode: refusal?.code ?? null,
      ineligibleReason: refusal?.reason ?? null,
      factors,
      score,
      amountUnits,
    }
  })
  const pools = (['gpu', 'cpu'] as const).map((pool): PoolTotals => ({
    pool,
    shareBp: policy.poolShareBp[pool],
    emissionUnits: poolEmission[pool],
    totalScore: totalScore[pool],
    paidUnits: paid[pool],
    devicesPaid: devicesPaid[pool],
  }))
  return { epoch, startsAtMs, endsAtMs, emissionUnits, paidUnits: paid.gpu + paid.cpu, pools, payouts }
}

/** score ÷ total as a decimal with 9 digits, rounded down: what the explorer shows as a device's share. */
export function formatShare(score: bigint, totalScore: bigint): string {
  if (totalScore === 0n) return '0.000000000'
  const scaled = (score * 1_000_000_000n) / totalScore
  const whole = scaled / 1_000_000_000n
  return `${whole}.${(scaled % 1_000_000_000n).toString().padStart(9, '0')}`
}
