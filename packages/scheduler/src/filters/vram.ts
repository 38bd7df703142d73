import type { FilterPlugin } from '../types.ts'
import { passed } from './passed.ts'

export const vramFilter: FilterPlugin = {
  name: 'vram',
  filter: (node, request) =>
    request.minVramMibPerGpu === undefined || node.vramMibPerGpu >= request.minVramMibPerGpu
      ? passed
      : { pass: false, reason: 'vram' },
}
