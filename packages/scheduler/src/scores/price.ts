import type { ScorePlugin } from '../types.ts'

/** Mean price per GPU-hour of the gang, relative to the most expensive feasible node. */
export const priceScore: ScorePlugin = {
  name: 'price',
  weight: 0.3,
  score(nodes, context) {
    if (context.maxPricePerGpuHourMicroUsd === 0n || nodes.length === 0) return 0
    const total = nodes.reduce((sum, node) => sum + Number(node.pricePerGpuHourMicroUsd), 0)
    return total / nodes.length / Number(context.maxPricePerGpuHourMicroUsd)
  },
}
