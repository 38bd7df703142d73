import type { FilterPlugin } from '../types.ts'
import { passed } from './passed.ts'

/** Only machines whose own self-test says they can run a cluster node are given one. */
export const capabilityFilter: FilterPlugin = {
  name: 'capability',
  indexKey: () => '',
  filter: (node) => (node.runsClusterNodes ? passed : { pass: false, reason: 'capability' }),
}
