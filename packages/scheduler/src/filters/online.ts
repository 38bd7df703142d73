import type { FilterPlugin } from '../types.ts'
import { passed } from './passed.ts'

export const onlineFilter: FilterPlugin = {
  name: 'online',
  indexKey: () => '',
  filter: (node) => (node.online ? passed : { pass: false, reason: 'offline' }),
}
