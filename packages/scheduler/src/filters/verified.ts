import type { FilterPlugin } from '../types.ts'
import { passed } from './passed.ts'

/** Devices that failed or never passed proof-of-compute are not placed unless the renter opts out. */
export const verifiedFilter: FilterPlugin = {
  name: 'verified',
  indexKey: (request) => String(request.verifiedOnly !== false),
  filter: (node, request) =>
    node.verified || request.verifiedOnly === false ? passed : { pass: false, reason: 'unverified' },
}
