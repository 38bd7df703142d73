// Cluster billing arithmetic: pure, exact to the unit, and never more than was held. Prices arrive in
// micro-USD per hour and settle in GMT units at a configured rate. Each node is charged at its own price for
// the time it was really serving (its service periods), measured from the moment the cluster was first
// ready, in billing intervals; each node's charge is split between its supplier and the platform fee.

const msPerHour = 3_600_000n

/** GMT units for an amount of micro-USD at `gmtUnitsPerUsd` (1 GMT per USD: 1,000,000). Rounded down. */
export function usdToGmtUnits(microUsd: bigint, gmtUnitsPerUsd: bigint): bigint {
  return (microUsd * gmtUnitsPerUsd) / 1_000_000n
}

/** What to hold for a cluster of this hourly price running this long: rounded up, so every charge fits. */
export function holdFor(pricePerHourUnits: bigint, durationMs: number): bigint {
  const numerator = pricePerHourUnits * BigInt(durationMs)
  return (numerator + msPerHour - 1n) / msPerHour
}

/** A charge split: the platform's fee (rounded down) and the supplier's share (the rest). */
export function splitCharge(charge: bigint, feeBasisPoints: number): { fee: bigint; supplier: bigint } {
  const fee = (charge * BigInt(feeBasisPoints)) / 10_000n
  return { fee, supplier: charge - fee }
}

/** A stretch of time a node was serving; open (endedAtMs null) while it still is. */
export type ServicePeriod = {
  readonly deviceId: string
  readonly startedAtMs: number
  readonly endedAtMs: number | null
}

/** Milliseconds `deviceId` served within [fromMs, toMs); an open period counts as serving through toMs. */
export function servedMs(
  periods: readonly ServicePeriod[],
  deviceId: string,
  fromMs: number,
  toMs: number,
): number {
  let total = 0
  for (const period of periods) {
    if (period.deviceId !== deviceId) continue
    const start = Math.max(period.startedAtMs, fromMs)
    const end = Math.min(period.endedAtMs ?? toMs, toMs)
    if (end > start) total += end - start
  }
  return total
}

export type BillingWindow = {
  /** When the cluster was first ready: billing counts from here. */
  readonly readyAtMs: number
  readonly intervalMs: number
  /** When billing stops: the cluster's end (termination asked, expiry); +Infinity while it runs on. */
  readonly endMs: number
}

/** The end of interval `interval` (1-based): a whole interval after the previous one, or the cluster's end. */
export function intervalEndMs(window: BillingWindow, interval: number): number {
  return Math.min(window.readyAtMs + interval * window.intervalMs, window.endMs)
}

/** How many intervals the cluster has in all; Infinity while its end is not known. */
export function intervalCount(window: BillingWindow): number {
  if (!Number.isFinite(window.endMs)) return Number.POSITIVE_INFINITY
  return Math.max(0, Math.ceil((window.endMs - window.readyAtMs) / window.intervalMs))
}

/**
 * The last interval that can be charged once everything up to `settledUntilMs` is known: every whole
 * interval ending by then, and the last, partial one once the cluster's end has passed.
 */
export function lastSettledInterval(window: BillingWindow, settledUntilMs: number): number {
  if (settledUntilMs < window.readyAtMs) return 0
  const whole = Math.floor((settledUntilMs - window.readyAtMs) / window.intervalMs)
  const count = intervalCount(window)
  if (whole >= count) return count
  return window.endMs <= settledUntilMs ? count : whole
}

export type BilledNode = { readonly deviceId: string; readonly pricePerHourUnits: bigint }

/**
 * Each node's charge for interval `interval`: the difference of its rounded-down cumulative charges at the
 * interval's two ends, so any n intervals cost exactly floor(price × served time / 1 h) per node, with no
 * unit lost or added by the slicing. Nodes that did not serve in the interval are left out.
 */
export function intervalCharges(
  window: BillingWindow,
  interval: number,
  nodes: readonly BilledNode[],
  periods: readonly ServicePeriod[],
): { deviceId: string; amount: bigint }[] {
  const from = interval <= 1 ? window.readyAtMs : intervalEndMs(window, interval - 1)
  const to = intervalEndMs(window, interval)
  const cumulative = (node: BilledNode, untilMs: number) =>
    (node.pricePerHourUnits * BigInt(servedMs(periods, node.deviceId, window.readyAtMs, untilMs))) / msPerHour
  const charges: { deviceId: string; amount: bigint }[] = []
  for (const node of nodes) {
    const amount = cumulative(node, to) - cumulative(node, from)
    if (amount > 0n) charges.push({ deviceId: node.deviceId, amount })
  }
  return charges
}
