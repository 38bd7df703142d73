import type { BandwidthTier } from './device-state.ts'

// Bandwidth tiers from measured throughput. A tier needs both directions: a fast download with a slow upload
// (typical of consumer lines) cannot serve a cluster that ships checkpoints and results back out.

export type BandwidthTierThreshold = { readonly downloadMbps: number; readonly uploadMbps: number }

/** Minimum measured throughput, in Mbit/s, for each tier; below `low` a device has no tier. */
export const bandwidthTierThresholdsMbps: Readonly<Record<BandwidthTier, BandwidthTierThreshold>> = {
  low: { downloadMbps: 100, uploadMbps: 75 },
  medium: { downloadMbps: 400, uploadMbps: 300 },
  high: { downloadMbps: 800, uploadMbps: 300 },
}

const tiersBestFirst: readonly BandwidthTier[] = ['high', 'medium', 'low']

/** The best tier whose download and upload minimums are both met, or null when even `low` is not. */
export function bandwidthTierFor(downloadMbps: number, uploadMbps: number): BandwidthTier | null {
  // NaN compares false to everything, so a broken measurement falls through to "no tier".
  for (const tier of tiersBestFirst) {
    const threshold = bandwidthTierThresholdsMbps[tier]
    if (downloadMbps >= threshold.downloadMbps && uploadMbps >= threshold.uploadMbps) return tier
  }
  return null
}
