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
  // and most requests never look at the rest of the supply. Only when too few fit is every node judged again,
  // counting each rejection for the explanation.
  const pool = candidatePool(snapshot, request, plugins.filters, candidatePoolSize(request.nodeCount))
  if (pool.length < request.nodeCount) return unplaceable(snapshot, request, plugins.filters)

  let maxPrice = 0n
  for (const node of pool)
    if (node.pricePerGpuHourMicroUsd > maxPrice) maxPrice = node.pricePerGpuHourMicroUsd
  const context: ScoreContext = { snapshot, maxPricePerGpuHourMicroUsd: maxPrice }

  let best: { nodes: NodeCandidate[]; total: number; key: string; scores: Record<string, number> } | undefined
  for (const seed of pool.slice(0, gangSeeds)) {
    const nearest = nearestNodes(snapshot, seed, pool, request.nodeCount - 1)
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

/** Judges every node with every filter, counting first failures, and says what blocks the request. */
function unplaceable(
  snapshot: SupplySnapshot,
  request: ClusterRequest,
  filters: readonly FilterPlugin[],
): Unplaceable {
  let feasibleNodes = 0
  const rejections: Partial<Record<RejectionReason, number>> = {}
  /** Nodes that fail exactly one filter: relaxing that one constraint would admit them. */
  const soleBlockers: Partial<Record<RejectionReason, number>> = {}
  /** Why machines turned away for their capability cannot run a node: their own self-test's words. */
  const incapableReasons = new Map<string, number>()
  for (const node of preferenceOrder(snapshot)) {
    let first: RejectionReason | undefined
    let failures = 0
    for (const plugin of filters) {
      const result = plugin.filter(node, request)
      if (result.pass) continue
      failures += 1
      first ??= result.reason
      if (failures > 1) break
    }
    if (first === undefined) {
      feasibleNodes += 1
      continue
    }
    rejections[first] = (rejections[first] ?? 0) + 1
    if (failures === 1) soleBlockers[first] = (soleBlockers[first] ?? 0) + 1
    if (first === 'capability') {
      const why = node.clusterNodesReason ?? 'cannot run cluster nodes'
      incapableReasons.set(why, (incapableReasons.get(why) ?? 0) + 1)
    }
  }
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

/**
 * The first `size` nodes in preference order that pass every filter. Filters that declare an index key are
 * applied once per snapshot and key: the nodes they pass are kept in order, extended only as far as a
 * placement has needed, so later placements with the same key skip what those filters turn away.
 */
function candidatePool(
  snapshot: SupplySnapshot,
  request: ClusterRequest,
  filters: readonly FilterPlugin[],
  size: number,
): NodeCandidate[] {
  const indexed = filters.filter((plugin) => plugin.indexKey !== undefined)
  const others = filters.filter((plugin) => plugin.indexKey === undefined)
  const key = indexed.map((plugin) => `${plugin.name}=${plugin.indexKey!(request)}`).join('\u0000')
  const order = preferenceOrder(snapshot)
  const narrowed = narrowedOrder(snapshot, filters, key)
  const pool: NodeCandidate[] = []
  let next = 0
  while (pool.length < size) {
    if (next === narrowed.nodes.length) {
      // Extend the kept list by the next node in preference order that the indexed filters pass.
      while (narrowed.scanned < order.length) {
        const node = order[narrowed.scanned]!
        narrowed.scanned += 1
        if (passesAll(indexed, node, request)) {
          narrowed.nodes.push(node)
          break
        }
      }
      if (next === narrowed.nodes.length) break
    }
    const node = narrowed.nodes[next]!
    next += 1
    if (passesAll(others, node, request)) pool.push(node)
  }
  return pool
}

function passesAll(filters: readonly FilterPlugin[], node: NodeCandidate, request: ClusterRequest): boolean {
  for (const plugin of filters) if (!plugin.filter(node, request).pass) return false
  return true
}

type NarrowedOrder = { readonly nodes: NodeCandidate[]; scanned: number }

/** Distinct index keys kept per snapshot; beyond it the kept lists start over (a snapshot lives briefly). */
const maxIndexKeysPerSnapshot = 64
const narrowedOrders = new WeakMap<
  SupplySnapshot,
  WeakMap<readonly FilterPlugin[], Map<string, NarrowedOrder>>
>()

function narrowedOrder(
  snapshot: SupplySnapshot,
  filters: readonly FilterPlugin[],
  key: string,
): NarrowedOrder {
  let byFilters = narrowedOrders.get(snapshot)
  if (!byFilters) {
    byFilters = new WeakMap()
    narrowedOrders.set(snapshot, byFilters)
  }
  let byKey = byFilters.get(filters)
  if (!byKey) {
    byKey = new Map()
    byFilters.set(filters, byKey)
  }
  let narrowed = byKey.get(key)
  if (!narrowed) {
    if (byKey.size >= maxIndexKeysPerSnapshot) byKey.clear()
    narrowed = { nodes: [], scanned: 0 }
    byKey.set(key, narrowed)
  }
  return narrowed
}

/**
 * The `count` pool nodes nearest the seed, nearest first, ties in pool order: what sorting the pool by
 * (round trip, pool rank) and taking the first `count` gives, without sorting the whole pool.
 */
function nearestNodes(
  snapshot: SupplySnapshot,
  seed: NodeCandidate,
  pool: readonly NodeCandidate[],
  count: number,
): NodeCandidate[] {
  const nodes: NodeCandidate[] = []
  const distances: number[] = []
  for (const node of pool) {
    if (node === seed || count === 0) continue
    const distance = roundTripMs(snapshot, seed, node)
    if (nodes.length === count && distance >= distances[count - 1]!) continue
    // Insert after every kept node at the same distance: those came earlier in the pool.
    let at = nodes.length
    while (at > 0 && distances[at - 1]! > distance) at -= 1
    nodes.splice(at, 0, node)
    distances.splice(at, 0, distance)
    if (nodes.length > count) {
      nodes.pop()
      distances.pop()
    }
  }
  return nodes
}
