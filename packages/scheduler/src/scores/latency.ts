import type { NodeCandidate, ScorePlugin, SupplySnapshot } from '../types.ts'

/** Used where no worker has measured a pair yet: same region, same country, or neither. */
export const estimatedRoundTripMs = { sameRegion: 5, sameCountry: 20, elsewhere: 150 } as const
/** Round trips at or beyond this score the worst. */
export const worstRoundTripMs = 300

export function roundTripMs(snapshot: SupplySnapshot, a: NodeCandidate, b: NodeCandidate): number {
  const mayBeMeasured =
    snapshot.isMeasured === undefined || (snapshot.isMeasured(a.deviceId) && snapshot.isMeasured(b.deviceId))
  const measured = mayBeMeasured
    ? (snapshot.roundTripMs(a.deviceId, b.deviceId) ?? snapshot.roundTripMs(b.deviceId, a.deviceId))
    : undefined
  if (measured !== undefined) return measured
  if (a.region === b.region) return estimatedRoundTripMs.sameRegion
  if (a.country === b.country) return estimatedRoundTripMs.sameCountry
  return estimatedRoundTripMs.elsewhere
}

/** The slowest pair bounds collective operations, so the gang is scored by its worst round trip. */
export const latencyScore: ScorePlugin = {
  name: 'latency',
  weight: 0.5,
  score(nodes, context) {
    let worst = 0
    for (let i = 0; i < nodes.length; i += 1) {
      for (let j = i + 1; j < nodes.length; j += 1)
        worst = Math.max(worst, roundTripMs(context.snapshot, nodes[i]!, nodes[j]!))
    }
    return Math.min(1, worst / worstRoundTripMs)
  },
}
