import type { FilterPlugin } from '../types.ts'
import { passed } from './passed.ts'

export const reservedFilter: FilterPlugin = {
  name: 'reserved',
  indexKey: () => '',
  filter: (node) => (node.reserved ? { pass: false, reason: 'reserved' } : passed),
}
