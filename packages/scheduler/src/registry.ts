import { bandwidthFilter } from './filters/bandwidth.ts'
import { capabilityFilter } from './filters/capability.ts'
import { gpuCountFilter } from './filters/gpu-count.ts'
import { gpuModelFilter } from './filters/gpu-model.ts'
import { countryFilter, regionFilter } from './filters/location.ts'
import { onlineFilter } from './filters/online.ts'
import { performanceFilter } from './filters/performance.ts'
import { priceFilter } from './filters/price.ts'
import { reservedFilter } from './filters/reserved.ts'
import { verifiedFilter } from './filters/verified.ts'
import { vramFilter } from './filters/vram.ts'
import { latencyScore } from './scores/latency.ts'
import { priceScore } from './scores/price.ts'
import { reliabilityScore } from './scores/reliability.ts'
import type { FilterPlugin, ScorePlugin } from './types.ts'

/**
 * Filters in the order a node is judged: availability first, then what the renter asked for. A node's
 * rejection reason is the first filter it fails.
 */
export const filterPlugins: readonly FilterPlugin[] = [
  onlineFilter,
  reservedFilter,
  capabilityFilter,
  verifiedFilter,
  gpuModelFilter,
  gpuCountFilter,
  vramFilter,
  performanceFilter,
  regionFilter,
  countryFilter,
  bandwidthFilter,
  priceFilter,
]

/** Latency first, then price, then reliability (weights sum to 1). */
export const scorePlugins: readonly ScorePlugin[] = [latencyScore, priceScore, reliabilityScore]
