import type { ScorePlugin } from '../types.ts'

/** The least reliable node decides how often the gang loses a member. */
export const reliabilityScore: ScorePlugin = {
  name: 'reliability',
  weight: 0.2,
  score: (nodes) => (nodes.length === 0 ? 0 : 1 - Math.min(...nodes.map((node) => node.reliability))),
}
