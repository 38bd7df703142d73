// The pricing engine's settings: every figure it prices with, in one versioned policy. Multipliers are basis
// points (10,000 = ×1.0) and prices micro-USD, so a quote is integer arithmetic and the same inputs always
// give the same price, to the micro-dollar.

export type CommitmentDiscount = {
  /** Rentals at least this long get the discount. */
  readonly minHours: number
  readonly discountBp: number
}

export type PricingPolicy = {
  /** Named in every quote, so a breakdown can be checked against the policy it was made with. */
  readonly version: string
  /**
   * Public clouds' on-demand price per GPU-hour by GPU model (catalog id), the anchor of automatic prices.
   * Models missing here have no automatic price: their suppliers set one (or a minimum, which then applies).
   */
  readonly referencePricePerGpuHourMicroUsd: Readonly<Record<string, bigint>>
  /** A CPU-only node is priced per core-hour. */
  readonly cpuPricePerCoreHourMicroUsd: bigint
  /** The share of the public price a network GPU starts from: the renter's reason to come here. */
  readonly networkShareBp: number
  /** Measured FP32 throughput against the data sheet, clamped to this range. */
  readonly performanceMinBp: number
  readonly performanceMaxBp: number
  /** A device proof-of-compute has not measured yet is priced as if it ran at this share of its data sheet. */
  readonly unmeasuredPerformanceBp: number
  /** By measured bandwidth tier; `none` for a device without a tier yet. */
  readonly bandwidthBp: Readonly<Record<'none' | 'low' | 'medium' | 'high', number>>
  /** By region; regions not named are ×1.0. */
  readonly regionBp: Readonly<Record<string, number>>
  /**
   * Demand for the model: hired GPUs over online GPUs. At the target the factor is ×1.0; each 100 points of
   * utilization above (below) it add (take) `slopeBp`, clamped, in steps of `stepBp` so prices do not jitter.
   */
  readonly utilization: {
    readonly targetBp: number
    readonly slopeBp: number
    readonly minBp: number
    readonly maxBp: number
    readonly stepBp: number
  }
  /** Busy hours, UTC, [startHour, endHour). */
  readonly peak: { readonly startHourUtc: number; readonly endHourUtc: number; readonly multiplierBp: number }
  /** The longest matching commitment applies. */
  readonly commitmentDiscounts: readonly CommitmentDiscount[]
  /**
   * What a card would earn mining instead, per GPU-hour: the floor of an automatic price when its supplier set
   * no minimum of their own.
   */
  readonly miningFloorPerGpuHourMicroUsd: Readonly<Record<string, bigint>>
}

const usd = (dollars: number): bigint => BigInt(Math.round(dollars * 1_000_000))

/**
 * The defaults. Reference prices: typical public on-demand list prices per GPU-hour in late 2026 (large
 * clouds and GPU clouds), rounded. Mining floors: what each card earned per hour mining at the time, net of
 * nothing (electricity is the supplier's own cost), rounded up.
 */
export const defaultPricingPolicy: PricingPolicy = {
  version: '2026-12',
  referencePricePerGpuHourMicroUsd: {
    h200: usd(3.8),
    h100: usd(2.99),
    'h100-pcie': usd(2.49),
    'a100-80gb': usd(1.79),
    'a100-40gb': usd(1.29),
    l40s: usd(1.25),
    l40: usd(1.0),
    l4: usd(0.7),
    a10g: usd(1.01),
    a10: usd(0.75),
    'rtx-6000-ada': usd(0.99),
    'rtx-a6000': usd(0.79),
    'rtx-5090': usd(0.89),
    'rtx-4090': usd(0.69),
    'rtx-4080': usd(0.45),
    'rtx-3090': usd(0.39),
    'rtx-3080': usd(0.25),
    v100s: usd(0.6),
    v100: usd(0.55),
    t4: usd(0.35),
  },
  cpuPricePerCoreHourMicroUsd: usd(0.01),
  networkShareBp: 6_000,
  performanceMinBp: 5_000,
  performanceMaxBp: 11_000,
  unmeasuredPerformanceBp: 9_000,
  bandwidthBp: { none: 9_000, low: 9_500, medium: 10_000, high: 10_500 },
  regionBp: {},
  utilization: { targetBp: 7_000, slopeBp: 5_000, minBp: 8_500, maxBp: 13_000, stepBp: 250 },
  peak: { startHourUtc: 14, endHourUtc: 22, multiplierBp: 11_000 },
  commitmentDiscounts: [
    { minHours: 24, discountBp: 500 },
    { minHours: 168, discountBp: 1_000 },
    { minHours: 720, discountBp: 2_000 },
  ],
  miningFloorPerGpuHourMicroUsd: {
    'rtx-5090': usd(0.12),
    'rtx-4090': usd(0.09),
    'rtx-4080': usd(0.06),
    'rtx-3090': usd(0.05),
    'rtx-3080': usd(0.04),
    'a100-80gb': usd(0.08),
    'a100-40gb': usd(0.07),
    v100: usd(0.03),
    v100s: usd(0.03),
  },
}
