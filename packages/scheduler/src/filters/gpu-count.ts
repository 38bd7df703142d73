import type { FilterPlugin } from '../types.ts'
import { passed } from './passed.ts'

export const gpuCountFilter: FilterPlugin = {
  name: 'gpu-count',
  indexKey: (request) => String(request.gpusPerNode),
  filter: (node, request) =>
    node.gpuCount >= request.gpusPerNode ? passed : { pass: false, reason: 'gpu_count' },
}
