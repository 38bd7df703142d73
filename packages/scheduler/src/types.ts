// Placement works on a snapshot of the supply and a request, and returns a plan: it reads nothing and
// writes nothing (style.md §2). The coordinator builds the snapshot, and re-checks and commits the plan.

export type NodeCandidate = {
  readonly deviceId: string
  readonly supplierAccountId: string
  readonly online: boolean
  readonly verified: boolean
  /** Already held by a reservation (another cluster, or a pending one). */
  readonly reserved: boolean
  /** Catalog id of the node's GPUs, or 'cpu'. */
  readonly gpuModel: string
  readonly gpuCount: number
  readonly vramMibPerGpu: number
  readonly fp16TflopsPerGpu: number
  readonly cpuCores: number
  readonly memoryMib: number
  readonly region: string
  readonly country: string
  /** 0 untested, 1 low, 2 medium, 3 high. */
  readonly bandwidthRank: number
  readonly pricePerGpuHourMicroUsd: bigint
  readonly reliability: number
  /** Its own self-test says it can run cluster nodes (WireGuard, namespaces, the managed Ray). */
  readonly runsClusterNodes: boolean
  /** Why it cannot, when it cannot. */
  readonly clusterNodesReason?: string
}

export type SupplySnapshot = {
  readonly nodes: readonly NodeCandidate[]
  /** Measured round-trip time between two devices, when a worker has measured it. */
  roundTripMs(a: string, b: string): number | undefined
  /**
   * False for a device no measured pair involves (true may be stale): placement then estimates its round
   * trips from regions without calling roundTripMs. Absent: every pair is looked up.
   */
  isMeasured?(deviceId: string): boolean
}

export type ClusterRequest = {
  readonly nodeCount: number
  /** GPUs each node must have, at least (0 for CPU clusters). */
  readonly gpusPerNode: number
  /** Catalog id or prefix ("a100" matches a100-40gb and a100-80gb); absent: any model. */
  readonly gpuModel?: string
  readonly minVramMibPerGpu?: number
  readonly minFp16TflopsPerGpu?: number
  readonly region?: string
  readonly country?: string
  readonly minBandwidthRank?: number
  readonly maxPricePerGpuHourMicroUsd?: bigint
  /** Only devices that passed proof-of-compute (default true). */
  readonly verifiedOnly?: boolean
}

/** Every reason a node can be turned away; a closed list so renters and consoles can explain it. */
export const RejectionReason = {
  offline: 'offline',
  unverified: 'unverified',
  reserved: 'reserved',
  capability: 'capability',
  gpuModel: 'gpu_model',
  gpuCount: 'gpu_count',
  vram: 'vram',
  performance: 'performance',
  region: 'region',
  country: 'country',
  bandwidth: 'bandwidth',
  price: 'price',
} as const
export type RejectionReason = (typeof RejectionReason)[keyof typeof RejectionReason]

export type FilterResult =
  { readonly pass: true } | { readonly pass: false; readonly reason: RejectionReason }

export type FilterPlugin = {
  readonly name: string
  filter(node: NodeCandidate, request: ClusterRequest): FilterResult
  /**
   * Declares that the verdict on a node depends on the request only through this key ('' when it depends
   * on the node alone). Placement then keeps, per snapshot and key, the nodes such filters pass, in order,
   * and scans only those; a filter without it runs on every node scanned.
   */
  readonly indexKey?: (request: ClusterRequest) => string
}

/** Scores a whole gang; lower is better; every score plugin returns a value in [0, 1]. */
export type ScorePlugin = {
  readonly name: string
  readonly weight: number
  score(nodes: readonly NodeCandidate[], context: ScoreContext): number
}

export type ScoreContext = {
  readonly snapshot: SupplySnapshot
  /** Bounds over all feasible nodes, for normalising. */
  readonly maxPricePerGpuHourMicroUsd: bigint
}

export type PlacedCluster = {
  readonly ok: true
  readonly nodes: readonly NodeCandidate[]
  readonly pricePerHourMicroUsd: bigint
  /** Each score plugin's value for the chosen gang. */
  readonly scores: Readonly<Record<string, number>>
}

export type Unplaceable = {
  readonly ok: false
  /** Why nodes were turned away: the first failing filter of each node, counted. */
  readonly rejections: Readonly<Partial<Record<RejectionReason, number>>>
  /** The constraint that turned away the most nodes that would otherwise fit. */
  readonly blockingConstraint: RejectionReason | 'node_count'
  readonly feasibleNodes: number
  readonly detail: string
}

export type PlacementResult = PlacedCluster | Unplaceable
