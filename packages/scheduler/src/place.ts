import { filterPlugins, scorePlugins } from './registry.ts'
import { roundTripMs } from './scores/latency.ts'
import type {
  ClusterRequest,
  FilterPlugin,
  NodeCandidate,
  PlacementResult,
  RejectionReason,
  ScoreContext,
  ScorePlugin,
  SupplySnapshot,
  Unplaceable,
} from './types.ts'

/**
 * Feasible nodes considered for gangs: the best by price and reliability, enough for many gang shapes.
 * Snapshots must not change after they are made: each one's preference order is computed once.
 */
export const candidatePoolSize = (nodeCount: number) => Math.max(512, nodeCount * 32)
/** Gangs are grown from this many seed nodes; each takes its nearest pool nodes. */
export const gangSeeds = 16

export type PlacementPlugins = {
  readonly filters: readonly FilterPlugin[]
  readonly scores: readonly ScorePlugin[]
}

/**
 * Chooses `request.nodeCount` nodes that all fit, preferring low latency between them, then price, then
 * reliability. All or nothing: the result is a whole gang or a reason. Deterministic: the same snapshot and
 * request give the same answer (ties are broken by device id).
 */
export function placeCluster(
  snapshot: SupplySnapshot,
  request: ClusterRequest,
  plugins: PlacementPlugins = { filters: filterPlugins, scores: scorePlugins },
): PlacementResult {
  // Nodes are judged in order of preference, so the candidate pool is full after the first few hundred fits
  // and most requests never look at the rest of the supply. A complete scan happens only when too few fit,
  // and then every rejection is counted for the explanation.
  const poolSize = candidatePoolSize(request.nodeCount)
  const pool: NodeCandidate[] = []
  const rejections: Partial<Record<RejectionReason, number>> = {}
  /** Nodes that fail exactly one filter: relaxing that one constraint would admit them. */
  const soleBlockers: Partial<Record<RejectionReason, number>> = {}
  /** Why machines turned away for their capability cannot run a node: their own self-test's words. */
  const incapableReasons = new Map<string, number>()
  for (const node of preferenceOrder(snapshot)) {
    let first: RejectionReason | undefined
    let failures = 0
    for (const plugin of plugins.filters) {
      const result = plugin.filter(node, request)
      if (result.pass) continue
      failures += 1
      first ??= result.reason
      if (failures > 1) break
    }
    if (first === undefined) {
      pool.push(node)
      if (pool.length === poolSize) break
    } else {
      rejections[first] = (rejections[first] ?? 0) + 1
      if (failures === 1) soleBlockers[first] = (soleBlockers[first] ?? 0) + 1
      if (first === 'capability') {
        const why = node.clusterNodesReason ?? 'cannot run cluster nodes'
        incapableReasons.set(why, (incapableReasons.get(why) ?? 0) + 1)
      }
    }
  }
  if (pool.length < request.nodeCount)
    return unplaceable(request, pool.length, rejections, soleBlockers, incapableReasons)

  let maxPrice = 0n
  for (const node of pool)
    if (node.pricePerGpuHourMicroUsd > maxPrice) maxPrice = node.pricePerGpuHourMicroUsd
  const context: ScoreContext = { snapshot, maxPricePerGpuHourMicroUsd: maxPrice }

  let best: { nodes: NodeCandidate[]; total: number; key: string; scores: Record<string, number> } | undefined
  for (const seed of pool.slice(0, gangSeeds)) {
    const nearest = pool
      .filter((node) => node !== seed)
      .map((node, rank) => ({ node, rank, distance: roundTripMs(snapshot, seed, node) }))
      .sort((a, b) => a.distance - b.distance || a.rank - b.rank)
      .slice(0, request.nodeCount - 1)
      .map((entry) => entry.node)
    const gang = [seed, ...nearest]
    const scores: Record<string, number> = {}
    let total = 0
    for (const plugin of plugins.scores) {
      scores[plugin.name] = plugin.score(gang, context)
      total += plugin.weight * scores[plugin.name]!
    }
    const key = gang
      .map((node) => node.deviceId)
      .sort()
      .join(',')
    if (!best || total < best.total - 1e-12 || (Math.abs(total - best.total) <= 1e-12 && key < best.key)) {
      best = { nodes: gang, total, key, scores }
    }
  }
  const nodes = [...best!.nodes].sort((a, b) => (a.deviceId < b.deviceId ? -1 : 1))
  const pricePerHourMicroUsd = nodes.reduce((sum, node) => sum + nodeHourPrice(node), 0n)
  return { ok: true, nodes, pricePerHourMicroUsd, scores: best!.scores }
}

/** A node is rented whole: all its GPUs (a CPU node counts as one unit) at its price per GPU-hour. */
export function nodeHourPrice(node: Pick<NodeCandidate, 'pricePerGpuHourMicroUsd' | 'gpuCount'>): bigint {
  return node.pricePerGpuHourMicroUsd * BigInt(Math.max(1, node.gpuCount))
}

const orders = new WeakMap<SupplySnapshot, readonly NodeCandidate[]>()

/** The snapshot's nodes in preference order, sorted once per snapshot (snapshots are immutable). */
function preferenceOrder(snapshot: SupplySnapshot): readonly NodeCandidate[] {
  let order = orders.get(snapshot)
  if (!order) {
    order = [...snapshot.nodes].sort(preference)
    orders.set(snapshot, order)
  }
  return order
}

/** Cheaper first, then more reliable, then by id: the order in which nodes enter the candidate pool. */
function preference(a: NodeCandidate, b: NodeCandidate): number {
  if (a.pricePerGpuHourMicroUsd !== b.pricePerGpuHourMicroUsd)
    return a.pricePerGpuHourMicroUsd < b.pricePerGpuHourMicroUsd ? -1 : 1
  return b.reliability - a.reliability || (a.deviceId < b.deviceId ? -1 : a.deviceId > b.deviceId ? 1 : 0)
}

function unplaceable(
  request: ClusterRequest,
  feasibleNodes: number,
  rejections: Partial<Record<RejectionReason, number>>,
  soleBlockers: Partial<Record<RejectionReason, number>>,
  incapableReasons: ReadonlyMap<string, number>,
): Unplaceable {
  const ranked = (counts: Partial<Record<RejectionReason, number>>) =>
    (Object.entries(counts) as [RejectionReason, number][]).sort(
      (a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1),
    )
  // The constraint whose relaxation alone would admit the most nodes; else the most common first failure.
  const blocker = ranked(soleBlockers)[0] ?? ranked(rejections)[0]
  const blockingConstraint = blocker?.[0] ?? 'node_count'
  const counts = describeCounts(rejections)
  // The most common reason first: "2 cannot run cluster nodes: wireguard-go: wireguard-go not found".
  const [commonReason] = [...incapableReasons.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
  const why = commonReason ? ` (${commonReason[1]} cannot run cluster nodes: ${commonReason[0]})` : ''
  const detail =
    feasibleNodes === 0
      ? `no node meets every constraint; ${counts}${why}`
      : `${feasibleNodes} node${feasibleNodes === 1 ? '' : 's'} fit, ${request.nodeCount} needed; ${counts}${why}`
  return { ok: false, rejections, blockingConstraint, feasibleNodes, detail }
}

function describeCounts(counts: Partial<Record<RejectionReason, number>>): string {
  const parts = (Object.entries(counts) as [RejectionReason, number][])
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .map(([reason, count]) => `${count} turned away by ${reason}`)
  return parts.length > 0 ? parts.join(', ') : 'no nodes on offer'
}
