import type { UptimeBucket } from './records.ts'

/** Uptime is recorded in hour buckets: the unit that reliability, billing and rewards read. */
export const uptimeBucketMs = 3_600_000

/** Splits the online interval [fromMs, toMs) into per-bucket durations. */
export function splitIntoBuckets(fromMs: number, toMs: number, bucketMs = uptimeBucketMs): UptimeBucket[] {
  const buckets: UptimeBucket[] = []
  let cursor = fromMs
  while (cursor < toMs) {
    const bucketStartMs = Math.floor(cursor / bucketMs) * bucketMs
    const end = Math.min(toMs, bucketStartMs + bucketMs)
    buckets.push({ bucketStartMs, onlineMs: end - cursor })
    cursor = end
  }
  return buckets
}

/** Merges bucket lists, adding durations that fall in the same bucket. */
export function mergeBuckets(lists: readonly (readonly UptimeBucket[])[]): UptimeBucket[] {
  const byStart = new Map<number, number>()
  for (const list of lists) {
    for (const bucket of list)
      byStart.set(bucket.bucketStartMs, (byStart.get(bucket.bucketStartMs) ?? 0) + bucket.onlineMs)
  }
  return [...byStart.entries()]
    .sort(([a], [b]) => a - b)
    .map(([bucketStartMs, onlineMs]) => ({ bucketStartMs, onlineMs }))
}
