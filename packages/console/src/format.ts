import { formatGmtUnits, gmtUnitsPerGmt } from '@gpumesh/core'

// How figures read on screen. Money is shown exactly as the API gives it (decimal strings); only charts turn
// it into floating point, and only to draw.

const msPerDay = 86_400_000

/** "2025-03-04 14:05" in the viewer's time zone; "—" for none. */
export function formatTime(atMs: number | null | undefined): string {
  if (atMs === null || atMs === undefined) return '—'
  const date = new Date(atMs)
  const pad = (value: number) => String(value).padStart(2, '0')
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}:${pad(date.getMinutes())}`
}

/** "Mar 4" for a UTC day "2025-03-04" (axis labels). */
export function formatDayLabel(day: string): string {
  const date = new Date(`${day}T00:00:00Z`)
  if (Number.isNaN(date.getTime())) return day
  return date.toLocaleDateString('en', { month: 'short', day: 'numeric', timeZone: 'UTC' })
}

/** "3d 4h", "2h 5m", "45s". */
export function formatDuration(durationMs: number): string {
  const seconds = Math.max(0, Math.floor(durationMs / 1000))
  const days = Math.floor(seconds / 86_400)
  const hours = Math.floor((seconds % 86_400) / 3600)
  const minutes = Math.floor((seconds % 3600) / 60)
  if (days > 0) return `${days}d ${hours}h`
  if (hours > 0) return `${hours}h ${minutes}m`
  if (minutes > 0) return `${minutes}m ${seconds % 60}s`
  return `${seconds}s`
}

/** "how long ago", for last-seen times. */
export function formatAgo(atMs: number | null, nowMs: number): string {
  if (atMs === null) return 'never'
  const elapsedMs = nowMs - atMs
  if (elapsedMs < 5_000) return 'just now'
  return `${formatDuration(elapsedMs)} ago`
}

export function formatPercent(ratio: number, digits = 1): string {
  return `${(ratio * 100).toFixed(digits)}%`
}

/** A device's reliability: the measured online share, or "new" before it has an hour of history. */
export function formatReliability(ratio: number | null): string {
  return ratio === null ? 'new' : formatPercent(ratio)
}

/** Parts per million of an epoch as a percentage. */
export function formatPpm(ppm: number): string {
  return formatPercent(ppm / 1_000_000)
}

/** Thousandths as a multiplier: 1250 → "×1.250". */
export function formatMilli(milli: number): string {
  return `×${(milli / 1000).toFixed(3)}`
}

/** Integer units of GMT's smallest denomination (a decimal string) as a GMT decimal. */
export function unitsToGmt(units: string): string {
  return /^-?[0-9]+$/.test(units) ? formatGmtUnits(BigInt(units)) : units
}

/** For charts only: a GMT decimal string or units as a float. */
export function gmtToNumber(gmt: string): number {
  const value = Number(gmt)
  return Number.isFinite(value) ? value : 0
}

export function unitsToNumber(units: string): number {
  if (!/^[0-9]+$/.test(units)) return 0
  const amount = BigInt(units)
  return Number(amount / gmtUnitsPerGmt) + Number(amount % gmtUnitsPerGmt) / Number(gmtUnitsPerGmt)
}

export function formatMib(mib: number): string {
  if (mib >= 1024) return `${(mib / 1024).toFixed(mib % 1024 === 0 ? 0 : 1)} GiB`
  return `${mib} MiB`
}

export function formatHours(hours: number): string {
  return hours >= 100 ? hours.toFixed(0) : hours.toFixed(1)
}

/** Measured throughput; a CPU measures in GFLOPS, which would read as 0.00 TFLOPS. */
export function formatTflops(tflops: number | null): string {
  if (tflops === null) return '—'
  if (tflops < 0.1) return `${(tflops * 1000).toFixed(tflops < 0.01 ? 2 : 1)} GFLOPS`
  return `${tflops.toFixed(tflops >= 10 ? 1 : 2)} TFLOPS`
}

/** The UTC day ("YYYY-MM-DD") a moment falls in. */
export function utcDay(atMs: number): string {
  return new Date(Math.floor(atMs / msPerDay) * msPerDay).toISOString().slice(0, 10)
}

/** The last `count` UTC days up to today, oldest first. */
export function lastUtcDays(count: number, nowMs: number): string[] {
  const todayStartMs = Math.floor(nowMs / msPerDay) * msPerDay
  return Array.from({ length: count }, (_, index) => utcDay(todayStartMs - (count - 1 - index) * msPerDay))
}

/** Sums decimal GMT strings exactly (6 fractional digits), for per-device totals. */
export function sumGmt(amounts: readonly string[]): string {
  let total = 0n
  for (const amount of amounts) {
    const match = /^(-?)([0-9]+)(?:\.([0-9]{1,6}))?$/.exec(amount)
    if (!match) continue
    const units = BigInt(match[2] ?? '0') * gmtUnitsPerGmt + BigInt((match[3] ?? '').padEnd(6, '0'))
    total += match[1] === '-' ? -units : units
  }
  return formatGmtUnits(total)
}
