import type { FilterPlugin } from '../types.ts'
import { passed } from './passed.ts'

export const bandwidthFilter: FilterPlugin = {
  name: 'bandwidth',
  filter: (node, request) =>
    request.minBandwidthRank === undefined || node.bandwidthRank >= request.minBandwidthRank
      ? passed
      : { pass: false, reason: 'bandwidth' },
}
