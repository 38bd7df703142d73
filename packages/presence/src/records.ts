import type { DeviceState, StateReasonCode } from '@gpumesh/core'

// What presence hands the store: uptime per bucket, one flush entry per device, and state changes.

export type UptimeBucket = { readonly bucketStartMs: number; readonly onlineMs: number }

/** What the heartbeat flusher writes for one device: one row per device per flush, never per heartbeat. */
export type HeartbeatFlushEntry = {
  readonly deviceId: string
  readonly lastSeenAtMs: number
  readonly uptimeBuckets: readonly UptimeBucket[]
}

export type DeviceStateChange = {
  readonly deviceId: string
  readonly state: DeviceState
  readonly reasonCode: StateReasonCode
  readonly reason: string
  readonly atMs: number
}

/** One entry per device: uptime per bucket summed, last seen the latest. */
export function mergeFlushEntries(entries: readonly HeartbeatFlushEntry[]): HeartbeatFlushEntry[] {
  const byDevice = new Map<string, { lastSeenAtMs: number; buckets: Map<number, number> }>()
  for (const entry of entries) {
    const merged = byDevice.get(entry.deviceId) ?? { lastSeenAtMs: 0, buckets: new Map<number, number>() }
    merged.lastSeenAtMs = Math.max(merged.lastSeenAtMs, entry.lastSeenAtMs)
    for (const bucket of entry.uptimeBuckets) {
      merged.buckets.set(
        bucket.bucketStartMs,
        (merged.buckets.get(bucket.bucketStartMs) ?? 0) + bucket.onlineMs,
      )
    }
    byDevice.set(entry.deviceId, merged)
  }
  return [...byDevice.entries()].map(([deviceId, merged]) => ({
    deviceId,
    lastSeenAtMs: merged.lastSeenAtMs,
    uptimeBuckets: [...merged.buckets.entries()]
      .sort(([a], [b]) => a - b)
      .map(([bucketStartMs, onlineMs]) => ({ bucketStartMs, onlineMs })),
  }))
}
