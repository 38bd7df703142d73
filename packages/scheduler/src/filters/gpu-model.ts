import type { FilterPlugin } from '../types.ts'
import { passed } from './passed.ts'

/** "a100" matches a100-40gb and a100-80gb; "a100-80gb" matches only itself. */
export const gpuModelFilter: FilterPlugin = {
  name: 'gpu-model',
  indexKey: (request) => request.gpuModel ?? '',
  filter: (node, request) => {
    if (request.gpuModel === undefined) return passed
    const wanted = request.gpuModel
    return node.gpuModel === wanted || node.gpuModel.startsWith(`${wanted}-`)
      ? passed
      : { pass: false, reason: 'gpu_model' }
  },
}
