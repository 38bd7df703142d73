import { formatMicroUsd } from '@gpumesh/core'
import type { PricingPolicy } from './policy.ts'
import { demandMultiplierBp } from './quote.ts'

// Per-token prices for inference: what a million prompt and output tokens of a model cost, from the devices
// serving it. Pure: the replicas, the demand for the model and the exchange rate are inputs.
//
// A replica's supplier is paid per GPU-hour, and a replica is only partly busy, so its hour must be paid by
// the tokens of a partly busy hour: its cost per million output tokens is its minimum per hour over the
// tokens it makes in `targetBusyBp` of an hour. The model is priced at its costliest replica, so whichever
// replica serves a request, its supplier's minimum is met. Demand then adjusts the price (never below that
// floor), and the price is converted to GMT units. Every step rounds up, so a supplier is never short by a
// rounding. A request is charged once, exactly, rounded up to the unit: never per token.

export type InferencePricingPolicy = {
  /** Named in every price, so a breakdown can be checked against the policy it was made with. */
  readonly version: string
  /** A replica is priced as if busy this share of the time (a supplier's hour must be paid by the tokens of a partly busy hour). */
  readonly targetBusyBp: number
  /** Input (prompt) tokens cost this share of an output token: prefill is cheaper than decoding. */
  readonly inputShareBp: number
  /** No model is priced below this per million output tokens (micro-USD). */
  readonly minOutputPerMillionMicroUsd: bigint
}

export const defaultInferencePricingPolicy: InferencePricingPolicy = {
  version: 'inference-2026-12',
  targetBusyBp: 5_000,
  inputShareBp: 2_500,
  minOutputPerMillionMicroUsd: 100_000n,
}

/** One device serving the model: its supplier's floor and its measured speed on this model. */
export type ServingReplicaCost = {
  readonly deviceId: string
  /** The supplier's minimum for this device, per GPU-hour (micro-USD). */
  readonly minPricePerGpuHourMicroUsd: bigint
  /** Its GPU count; 0 (a CPU-only node) is priced as 1. */
  readonly gpuCount: number
  /** Output tokens per second the replica measured at start (its speed on this model, this GPU). */
  readonly outputTokensPerSecond: number
}

export const TokenPriceFactorName = {
  /** The costliest replica's minimum, per million output tokens. */
  replica: 'replica',
  /** The policy's minimum, when it is above every replica's cost. */
  minimum: 'minimum',
  demand: 'demand',
  /** Back up to the floor (costliest replica or policy minimum) when low demand took the price below it. */
  floor: 'floor',
} as const
export type TokenPriceFactorName = (typeof TokenPriceFactorName)[keyof typeof TokenPriceFactorName]

export type TokenPriceFactor = {
  readonly name: TokenPriceFactorName
  /** The multiplier applied, in basis points; absent for the starting price, the minimum and the floor. */
  readonly multiplierBp?: number
  /** The price per million output tokens once this step is applied (micro-USD). */
  readonly perMillionOutputMicroUsd: bigint
  readonly detail: string
}

export type TokenPrices = {
  readonly policyVersion: string
  /** GMT units per million tokens. */
  readonly inputPerMillionUnits: bigint
  readonly outputPerMillionUnits: bigint
  /** Each step, as in device quotes, so a caller can see why. */
  readonly factors: readonly TokenPriceFactor[]
}

export type TokenUsage = { readonly promptTokens: number; readonly completionTokens: number }

const fullBp = 10_000
const fullBpBig = 10_000n
const tokensPerMillion = 1_000_000n
const microUsdPerUsd = 1_000_000n
const secondsPerHour = 3_600n
const milliPerUnit = 1_000n

/**
 * The prices of a model's tokens, from the replicas serving it; undefined when none does. `utilizationBp` is
 * the demand for the model (undefined: unknown, ×1.0), priced by `demandPolicy`'s utilization rule as device
 * quotes are. `gmtUnitsPerUsd`: GMT units (6 decimals) one USD buys.
 */
export function quoteTokenPrices(
  policy: InferencePricingPolicy,
  replicas: readonly ServingReplicaCost[],
  utilizationBp: number | undefined,
  demandPolicy: PricingPolicy,
  gmtUnitsPerUsd: bigint,
): TokenPrices | undefined {
  checkPolicy(policy)
  if (gmtUnitsPerUsd <= 0n) throw new RangeError(`gmtUnitsPerUsd must be > 0, got ${gmtUnitsPerUsd}`)
  if (utilizationBp !== undefined && !Number.isFinite(utilizationBp))
    throw new RangeError(`utilizationBp must be a finite number, got ${utilizationBp}`)
  if (replicas.length === 0) return undefined

  let costliest: { replica: ServingReplicaCost; milliTokensPerSecond: bigint; cost: bigint } | undefined
  for (const replica of replicas) {
    const milliTokensPerSecond = milliTokensPerSecondOf(replica)
    const cost = replicaCostPerMillionOutputMicroUsd(policy, replica, milliTokensPerSecond)
    if (costliest === undefined || cost > costliest.cost) costliest = { replica, milliTokensPerSecond, cost }
  }
  if (costliest === undefined) throw new Error('unreachable: replicas is not empty')

  const factors: TokenPriceFactor[] = []
  const { replica, milliTokensPerSecond } = costliest
  const gpus = Math.max(1, replica.gpuCount)
  let price = costliest.cost
  factors.push({
    name: 'replica',
    perMillionOutputMicroUsd: price,
    detail:
      `${replica.deviceId}, the costliest of ${replicas.length} replica${replicas.length === 1 ? '' : 's'}: ` +
      `${formatMicroUsd(replica.minPricePerGpuHourMicroUsd)} USD per GPU-hour × ${gpus} GPU${gpus === 1 ? '' : 's'} ` +
      `at ${formatMilli(milliTokensPerSecond)} output tokens/s, busy ${percent(policy.targetBusyBp)} of the time`,
  })
  if (price < policy.minOutputPerMillionMicroUsd) {
    price = policy.minOutputPerMillionMicroUsd
    factors.push({
      name: 'minimum',
      perMillionOutputMicroUsd: price,
      detail: `no model is priced below ${formatMicroUsd(price)} USD per million output tokens (policy ${policy.version})`,
    })
  }
  // Low demand may discount the price, but never below the floor: the costliest supplier's minimum (or the
  // policy's), which the price is at now.
  const floor = price
  const multiplierBp = demandMultiplierBp(demandPolicy, utilizationBp)
  price = ceilDiv(price * BigInt(multiplierBp), fullBpBig)
  factors.push({
    name: 'demand',
    multiplierBp,
    perMillionOutputMicroUsd: price,
    detail:
      utilizationBp === undefined
        ? 'no demand measured for the model'
        : `${percent(utilizationBp)} utilization (target ${percent(demandPolicy.utilization.targetBp)})`,
  })
  if (price < floor) {
    price = floor
    factors.push({
      name: 'floor',
      perMillionOutputMicroUsd: price,
      detail: `low demand does not take the price below its floor of ${formatMicroUsd(floor)} USD`,
    })
  }

  const outputPerMillionUnits = ceilDiv(price * gmtUnitsPerUsd, microUsdPerUsd)
  const inputShare = ceilDiv(outputPerMillionUnits * BigInt(policy.inputShareBp), fullBpBig)
  const inputPerMillionUnits = outputPerMillionUnits > 0n && inputShare < 1n ? 1n : inputShare
  return { policyVersion: policy.version, inputPerMillionUnits, outputPerMillionUnits, factors }
}

/** What a request costs: exact, rounded up to the unit once per request (never per token). */
export function chargeForUsage(
  prices: Pick<TokenPrices, 'inputPerMillionUnits' | 'outputPerMillionUnits'>,
  usage: TokenUsage,
): bigint {
  return chargeFor(
    prices,
    tokenCount(usage.promptTokens, 'promptTokens'),
    tokenCount(usage.completionTokens, 'completionTokens'),
  )
}

/**
 * The most a request can cost: its whole context as prompt plus max output; checked against the caller's
 * funds before the model runs.
 */
export function maxChargeFor(
  prices: Pick<TokenPrices, 'inputPerMillionUnits' | 'outputPerMillionUnits'>,
  contextTokens: number,
  maxOutputTokens: number,
): bigint {
  return chargeFor(
    prices,
    tokenCount(contextTokens, 'contextTokens'),
    tokenCount(maxOutputTokens, 'maxOutputTokens'),
  )
}

/** Splits a charge into platform fee (rounded down) and supplier share (the rest). */
export function splitInferenceCharge(
  charge: bigint,
  feeBasisPoints: number,
): { fee: bigint; supplier: bigint } {
  if (charge < 0n) throw new RangeError(`charge must be ≥ 0, got ${charge}`)
  if (!Number.isInteger(feeBasisPoints) || feeBasisPoints < 0 || feeBasisPoints > fullBp)
    throw new RangeError(`feeBasisPoints must be an integer from 0 to ${fullBp}, got ${feeBasisPoints}`)
  const fee = (charge * BigInt(feeBasisPoints)) / fullBpBig
  return { fee, supplier: charge - fee }
}

function chargeFor(
  prices: Pick<TokenPrices, 'inputPerMillionUnits' | 'outputPerMillionUnits'>,
  inputTokens: bigint,
  outputTokens: bigint,
): bigint {
  if (prices.inputPerMillionUnits < 0n)
    throw new RangeError(`inputPerMillionUnits must be ≥ 0, got ${prices.inputPerMillionUnits}`)
  if (prices.outputPerMillionUnits < 0n)
    throw new RangeError(`outputPerMillionUnits must be ≥ 0, got ${prices.outputPerMillionUnits}`)
  return ceilDiv(
    inputTokens * prices.inputPerMillionUnits + outputTokens * prices.outputPerMillionUnits,
    tokensPerMillion,
  )
}

/**
 * ceil(price × GPUs × 1e6 tokens × 10,000 / (3,600 s × tokens/s × busy bp)), with tokens/s as integer
 * milli-tokens/s (hence the × 1,000), so it is all integer arithmetic.
 */
function replicaCostPerMillionOutputMicroUsd(
  policy: InferencePricingPolicy,
  replica: ServingReplicaCost,
  milliTokensPerSecond: bigint,
): bigint {
  const gpus = BigInt(Math.max(1, replica.gpuCount))
  return ceilDiv(
    replica.minPricePerGpuHourMicroUsd * gpus * tokensPerMillion * fullBpBig * milliPerUnit,
    secondsPerHour * milliTokensPerSecond * BigInt(policy.targetBusyBp),
  )
}

/** Measured speed as integer milli-tokens/s, rounded down (a replica is not priced faster than it is), at least 1. */
function milliTokensPerSecondOf(replica: ServingReplicaCost): bigint {
  const { deviceId, minPricePerGpuHourMicroUsd, gpuCount, outputTokensPerSecond } = replica
  if (minPricePerGpuHourMicroUsd < 0n)
    throw new RangeError(
      `replica ${deviceId}: minPricePerGpuHourMicroUsd must be ≥ 0, got ${minPricePerGpuHourMicroUsd}`,
    )
  if (!Number.isSafeInteger(gpuCount) || gpuCount < 0)
    throw new RangeError(`replica ${deviceId}: gpuCount must be an integer ≥ 0, got ${gpuCount}`)
  if (!Number.isFinite(outputTokensPerSecond) || outputTokensPerSecond < 0)
    throw new RangeError(
      `replica ${deviceId}: outputTokensPerSecond must be a finite number ≥ 0, got ${outputTokensPerSecond}`,
    )
  const milli = BigInt(Math.floor(outputTokensPerSecond * 1_000))
  return milli < 1n ? 1n : milli
}

function checkPolicy(policy: InferencePricingPolicy): void {
  if (!Number.isInteger(policy.targetBusyBp) || policy.targetBusyBp < 1 || policy.targetBusyBp > fullBp)
    throw new RangeError(`targetBusyBp must be an integer from 1 to ${fullBp}, got ${policy.targetBusyBp}`)
  if (!Number.isInteger(policy.inputShareBp) || policy.inputShareBp < 0)
    throw new RangeError(`inputShareBp must be an integer ≥ 0, got ${policy.inputShareBp}`)
  if (policy.minOutputPerMillionMicroUsd < 0n)
    throw new RangeError(`minOutputPerMillionMicroUsd must be ≥ 0, got ${policy.minOutputPerMillionMicroUsd}`)
}

function tokenCount(value: number, field: string): bigint {
  if (!Number.isSafeInteger(value) || value < 0)
    throw new RangeError(`${field} must be an integer ≥ 0, got ${value}`)
  return BigInt(value)
}

/** Division rounded up, for a numerator ≥ 0 and a denominator > 0. */
function ceilDiv(numerator: bigint, denominator: bigint): bigint {
  return (numerator + denominator - 1n) / denominator
}

function formatMilli(milli: bigint): string {
  const fraction = (milli % milliPerUnit).toString().padStart(3, '0').replace(/0+$/, '')
  return `${milli / milliPerUnit}${fraction ? `.${fraction}` : ''}`
}

function percent(bp: number): string {
  return `${(bp / 100).toFixed(bp % 100 === 0 ? 0 : 2)}%`
}
