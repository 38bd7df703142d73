import { formatMicroUsd, type DevicePricing, type PricingMode } from '@gpumesh/core'
import type { PricingPolicy } from './policy.ts'

// The pricing engine: a device's price per GPU-hour (per node-hour for a CPU-only node), with every factor
// that made it, so a renter or supplier can see why a price is what it is. Pure: the market's state and the
// hour are inputs.
//
// A fixed price is the supplier's own and is quoted as it is. An automatic price starts from the public
// clouds' price for the model, takes the network's share of it, and is adjusted in this order, each step
// rounded down to the micro-dollar: measured performance, bandwidth tier, location, demand for the model,
// peak hours, commitment length. It never goes below its floor: the supplier's minimum, or else what the card
// would earn mining.

export type PricedDevice = {
  /** Catalog id, or 'cpu' for a node without GPUs. */
  readonly gpuModel: string
  readonly gpuCount: number
  readonly cpuCores: number
  /** The data sheet's FP32 TFLOPS per GPU; null for a model the catalog does not know. */
  readonly catalogFp32TflopsPerGpu: number | null
  /** Proof-of-compute's measured FP32 TFLOPS for the whole device; null until it has passed one. */
  readonly measuredFp32Tflops: number | null
  readonly bandwidthTier: 'low' | 'medium' | 'high' | null
  readonly region: string
  readonly pricing: DevicePricing
}

export type MarketConditions = {
  /** Hired GPUs over online GPUs of the model, in basis points; undefined when none is online. */
  utilizationBp(gpuModel: string): number | undefined
  /** The hour of day, UTC, the quote is for. */
  readonly hourUtc: number
}

export const PriceFactorName = {
  fixed: 'fixed',
  reference: 'reference',
  networkShare: 'network_share',
  performance: 'performance',
  bandwidth: 'bandwidth',
  location: 'location',
  demand: 'demand',
  peakHours: 'peak_hours',
  commitment: 'commitment',
  floor: 'floor',
} as const
export type PriceFactorName = (typeof PriceFactorName)[keyof typeof PriceFactorName]

export type PriceFactor = {
  readonly factor: PriceFactorName
  /** The multiplier applied, in basis points; null for the starting price and the floor. */
  readonly multiplierBp: number | null
  /** The price once this factor is applied. */
  readonly priceAfterMicroUsd: bigint
  readonly detail: string
}

export type DeviceQuote =
  | {
      readonly priced: true
      readonly mode: PricingMode
      readonly pricePerGpuHourMicroUsd: bigint
      readonly factors: readonly PriceFactor[]
      readonly policyVersion: string
    }
  | {
      readonly priced: false
      readonly mode: PricingMode
      readonly reason: string
      readonly policyVersion: string
    }

const fullBp = 10_000

/** The demand factor for a model at this utilization: clamped and stepped (see PricingPolicy.utilization). */
export function demandMultiplierBp(policy: PricingPolicy, utilizationBp: number | undefined): number {
  if (utilizationBp === undefined) return fullBp
  const rule = policy.utilization
  const raw = fullBp + Math.trunc(((utilizationBp - rule.targetBp) * rule.slopeBp) / fullBp)
  const stepped = Math.round(raw / rule.stepBp) * rule.stepBp
  return Math.min(rule.maxBp, Math.max(rule.minBp, stepped))
}

/** The commitment discount for a rental this long, in basis points (0: none). */
export function commitmentDiscountBp(policy: PricingPolicy, commitmentHours: number): number {
  let best = 0
  for (const tier of policy.commitmentDiscounts)
    if (commitmentHours >= tier.minHours && tier.discountBp > best) best = tier.discountBp
  return best
}

export function isPeakHour(policy: PricingPolicy, hourUtc: number): boolean {
  const { startHourUtc, endHourUtc } = policy.peak
  return startHourUtc <= endHourUtc
    ? hourUtc >= startHourUtc && hourUtc < endHourUtc
    : hourUtc >= startHourUtc || hourUtc < endHourUtc
}

/** The price of one GPU-hour of this device (one node-hour of a CPU-only node) for a rental this long. */
export function quoteDevice(
  policy: PricingPolicy,
  device: PricedDevice,
  market: MarketConditions,
  commitmentHours: number,
): DeviceQuote {
  const { mode, askingPriceMicroUsd } = device.pricing
  const policyVersion = policy.version
  if (mode === 'fixed') {
    if (askingPriceMicroUsd === null)
      return { priced: false, mode, reason: 'the supplier has set no price', policyVersion }
    return {
      priced: true,
      mode,
      pricePerGpuHourMicroUsd: askingPriceMicroUsd,
      factors: [
        {
          factor: 'fixed',
          multiplierBp: null,
          priceAfterMicroUsd: askingPriceMicroUsd,
          detail: `the supplier's fixed price`,
        },
      ],
      policyVersion,
    }
  }

  const factors: PriceFactor[] = []
  const floor = floorOf(policy, device)
  const reference = referenceOf(policy, device)
  if (reference === undefined) {
    if (!floor)
      return {
        priced: false,
        mode,
        reason: `no reference price for ${device.gpuModel}: set a minimum price to be listed`,
        policyVersion,
      }
    return {
      priced: true,
      mode,
      pricePerGpuHourMicroUsd: floor.price,
      factors: [
        { factor: 'floor', multiplierBp: null, priceAfterMicroUsd: floor.price, detail: floor.detail },
      ],
      policyVersion,
    }
  }
  let price = reference.price
  factors.push({
    factor: 'reference',
    multiplierBp: null,
    priceAfterMicroUsd: price,
    detail: reference.detail,
  })
  const apply = (factor: PriceFactorName, multiplierBp: number, detail: string) => {
    price = (price * BigInt(multiplierBp)) / BigInt(fullBp)
    factors.push({ factor, multiplierBp, priceAfterMicroUsd: price, detail })
  }
  apply(
    'network_share',
    policy.networkShareBp,
    `the network prices at ${percent(policy.networkShareBp)} of it`,
  )

  if (device.gpuModel !== 'cpu') {
    const datasheet =
      device.catalogFp32TflopsPerGpu === null
        ? null
        : device.catalogFp32TflopsPerGpu * Math.max(1, device.gpuCount)
    if (device.measuredFp32Tflops === null || datasheet === null || datasheet <= 0) {
      apply('performance', policy.unmeasuredPerformanceBp, 'not measured by proof-of-compute yet')
    } else {
      const ratioBp = Math.round((device.measuredFp32Tflops / datasheet) * fullBp)
      const clamped = Math.min(policy.performanceMaxBp, Math.max(policy.performanceMinBp, ratioBp))
      apply(
        'performance',
        clamped,
        `measured ${round2(device.measuredFp32Tflops)} FP32 TFLOPS against ${round2(datasheet)} on the data sheet`,
      )
    }
  }
  const tier = device.bandwidthTier ?? 'none'
  apply(
    'bandwidth',
    policy.bandwidthBp[tier],
    device.bandwidthTier ? `${device.bandwidthTier} bandwidth tier` : 'no measured bandwidth tier yet',
  )
  const regionBp = policy.regionBp[device.region] ?? fullBp
  apply('location', regionBp, `region ${device.region}`)
  const utilizationBp = market.utilizationBp(device.gpuModel)
  apply(
    'demand',
    demandMultiplierBp(policy, utilizationBp),
    utilizationBp === undefined
      ? `no ${device.gpuModel} online to measure demand`
      : `${percent(utilizationBp)} of online ${device.gpuModel} ${device.gpuModel === 'cpu' ? 'nodes' : 'GPUs'} are hired (target ${percent(policy.utilization.targetBp)})`,
  )
  const peak = isPeakHour(policy, market.hourUtc)
  apply(
    'peak_hours',
    peak ? policy.peak.multiplierBp : fullBp,
    `${String(market.hourUtc).padStart(2, '0')}:00 UTC is ${peak ? '' : 'not '}a peak hour (${policy.peak.startHourUtc}:00–${policy.peak.endHourUtc}:00)`,
  )
  const discountBp = commitmentDiscountBp(policy, commitmentHours)
  apply(
    'commitment',
    fullBp - discountBp,
    discountBp === 0
      ? `${round2(commitmentHours)} h: no commitment discount`
      : `${round2(commitmentHours)} h: ${percent(discountBp)} off`,
  )
  if (floor && price < floor.price) {
    price = floor.price
    factors.push({ factor: 'floor', multiplierBp: null, priceAfterMicroUsd: price, detail: floor.detail })
  }
  return { priced: true, mode, pricePerGpuHourMicroUsd: price, factors, policyVersion }
}

function referenceOf(
  policy: PricingPolicy,
  device: PricedDevice,
): { price: bigint; detail: string } | undefined {
  if (device.gpuModel === 'cpu') {
    const cores = Math.max(1, device.cpuCores)
    return {
      price: policy.cpuPricePerCoreHourMicroUsd * BigInt(cores),
      detail: `${cores} CPU cores at ${formatMicroUsd(policy.cpuPricePerCoreHourMicroUsd)} USD per core-hour`,
    }
  }
  const price = policy.referencePricePerGpuHourMicroUsd[device.gpuModel]
  if (price === undefined) return undefined
  return { price, detail: `public cloud on-demand price of a ${device.gpuModel} (policy ${policy.version})` }
}

function floorOf(policy: PricingPolicy, device: PricedDevice): { price: bigint; detail: string } | undefined {
  const minimum = device.pricing.askingPriceMicroUsd
  if (minimum !== null && minimum > 0n)
    return { price: minimum, detail: `the supplier's minimum of ${formatMicroUsd(minimum)} USD` }
  const mining = policy.miningFloorPerGpuHourMicroUsd[device.gpuModel]
  if (mining !== undefined)
    return { price: mining, detail: `what a ${device.gpuModel} earns mining: ${formatMicroUsd(mining)} USD` }
  return undefined
}

function percent(bp: number): string {
  return `${(bp / 100).toFixed(bp % 100 === 0 ? 0 : 2)}%`
}

function round2(value: number): number {
  return Math.round(value * 100) / 100
}
