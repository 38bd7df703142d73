import type { FilterPlugin } from '../types.ts'
import { passed } from './passed.ts'

export const priceFilter: FilterPlugin = {
  name: 'price',
  filter: (node, request) =>
    request.maxPricePerGpuHourMicroUsd === undefined ||
    node.pricePerGpuHourMicroUsd <= request.maxPricePerGpuHourMicroUsd
      ? passed
      : { pass: false, reason: 'price' },
}
