import type { FilterPlugin } from '../types.ts'
import { passed } from './passed.ts'

export const performanceFilter: FilterPlugin = {
  name: 'performance',
  filter: (node, request) =>
    request.minFp16TflopsPerGpu === undefined || node.fp16TflopsPerGpu >= request.minFp16TflopsPerGpu
      ? passed
      : { pass: false, reason: 'performance' },
}
