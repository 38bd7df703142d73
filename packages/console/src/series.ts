import { lastUtcDays, utcDay } from './format.ts'

// Shaping API rows into chart series: one value per UTC day, zero where nothing was recorded.

const msPerDay = 86_400_000

/** Share of each of the last `days` UTC days a device was online, from hourly uptime buckets. */
export function dailyUptimeRatios(
  buckets: readonly { bucketStartMs: number; onlineMs: number }[],
  nowMs: number,
  days: number,
): { day: string; onlineRatio: number }[] {
  const onlineByDay = new Map<string, number>()
  for (const bucket of buckets) {
    const day = utcDay(bucket.bucketStartMs)
    onlineByDay.set(day, (onlineByDay.get(day) ?? 0) + bucket.onlineMs)
  }
  const today = utcDay(nowMs)
  return lastUtcDays(days, nowMs).map((day) => {
    // Today has not finished: its share is of the time elapsed so far.
    const dayLengthMs = day === today ? Math.max(1, nowMs - Date.parse(`${day}T00:00:00Z`)) : msPerDay
    return { day, onlineRatio: Math.min(1, (onlineByDay.get(day) ?? 0) / dayLengthMs) }
  })
}

/** Per source, the amount on each of `days` (values from `amountOf`, summed). */
export function amountsBySourceAndDay<Line extends { day: string; source: string }>(
  lines: readonly Line[],
  days: readonly string[],
  amountOf: (line: Line) => number,
): { source: string; values: number[] }[] {
  const sources = [...new Set(lines.map((line) => line.source))].sort()
  return sources.map((source) => ({
    source,
    values: days.map((day) =>
      lines
        .filter((line) => line.source === source && line.day === day)
        .reduce((sum, line) => sum + amountOf(line), 0),
    ),
  }))
}
