// Prices are kept as bigint micro-USD (1 USD = 1_000_000) so no float ever touches money.
// At the API edge they travel as decimal strings ("1.25"), parsed and printed here exactly.

export const microUsdPerUsd = 1_000_000n
const usdDecimalPattern = /^(0|[1-9]\d{0,8})(?:\.(\d{1,6}))?$/

/** Parses a non-negative USD decimal with at most 6 fractional digits; null when malformed. */
export function parseUsdToMicro(text: string): bigint | null {
  const match = usdDecimalPattern.exec(text.trim())
  if (!match) return null
  const whole = BigInt(match[1] ?? '0')
  const fraction = BigInt((match[2] ?? '').padEnd(6, '0'))
  return whole * microUsdPerUsd + fraction
}

/** Formats micro-USD as a decimal with at least 2 and at most 6 fractional digits. */
export function formatMicroUsd(amountMicroUsd: bigint): string {
  const negative = amountMicroUsd < 0n
  const absolute = negative ? -amountMicroUsd : amountMicroUsd
  const whole = absolute / microUsdPerUsd
  let fraction = (absolute % microUsdPerUsd).toString().padStart(6, '0').replace(/0+$/, '')
  if (fraction.length < 2) fraction = fraction.padEnd(2, '0')
  return `${negative ? '-' : ''}${whole}.${fraction}`
}

// The network token, GMT, has 6 decimals too: amounts are bigint units (1 GMT = 1,000,000 units) and travel
// as decimal strings. At most 10^12 GMT in one amount: more is not a payment, it is a typo or an attack.

export const gmtUnitsPerGmt = 1_000_000n
const gmtDecimalPattern = /^(0|[1-9]\d{0,11})(?:\.(\d{1,6}))?$/

/** Parses a non-negative GMT decimal with at most 6 fractional digits into units; null when malformed. */
export function parseGmtToUnits(text: string): bigint | null {
  const match = gmtDecimalPattern.exec(text.trim())
  if (!match) return null
  return BigInt(match[1] ?? '0') * gmtUnitsPerGmt + BigInt((match[2] ?? '').padEnd(6, '0'))
}

/** Formats units as a GMT decimal with 6 fractional digits (statements line up). */
export function formatGmtUnits(units: bigint): string {
  const negative = units < 0n
  const absolute = negative ? -units : units
  return `${negative ? '-' : ''}${absolute / gmtUnitsPerGmt}.${(absolute % gmtUnitsPerGmt).toString().padStart(6, '0')}`
}
