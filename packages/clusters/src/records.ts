// Clusters as the store keeps them: the controller's desired and observed state, each node's progress,
// the event log a renter watches, and the jobs run on a cluster. The store is the source of truth: a
// coordinator that restarts reads these and carries on.

export type ClusterState = 'pending' | 'provisioning' | 'ready' | 'terminating' | 'terminated' | 'failed'
export type ClusterDesired = 'running' | 'terminated'

/**
 * A node's progress. reserved: its device is held and asked for a mesh key; keyed: its public key and
 * endpoint are known; mesh_up: its WireGuard interface is up; ray_joined: its Ray node has started and Ray
 * reports it alive; lost: it stopped answering or its Ray node died (its reservation is released);
 * released: it was torn down at the end.
 */
export type ClusterNodePhase = 'reserved' | 'keyed' | 'mesh_up' | 'ray_joined' | 'lost' | 'released'
export type ClusterNodeRole = 'head' | 'worker'

export type ClusterRecord = {
  readonly id: string
  readonly accountId: string
  readonly name: string
  readonly state: ClusterState
  readonly stateReason: string
  readonly desired: ClusterDesired
  /**
   * The scheduler request, kept so a lost node is replaced under the same constraints. Stored as JSON: a
   * bigint in it comes back as a decimal string.
   */
  readonly request: unknown
  readonly nodeCount: number
  readonly gpusPerNode: number
  readonly durationMs: number
  /** Index of the cluster's /24 in 100.64.0.0/10; null once the cluster has ended and freed it. */
  readonly subnetIndex: number | null
  readonly pricePerHourMicroUsd: bigint
  readonly createdAtMs: number
  readonly readyAtMs: number | null
  /** Null until the cluster is first ready: its duration runs from then. */
  readonly expiresAtMs: number | null
  readonly endedAtMs: number | null
  readonly updatedAtMs: number
  /** When the state last changed: how long the cluster has been provisioning, or terminating. */
  readonly stateChangedAtMs: number
  /** The ledger's pending transfer now holding the renter's funds for this cluster; null without billing. */
  readonly billingHoldId: string | null
  /** Billing intervals charged so far, counted from readyAtMs. */
  readonly billedIntervals: number
  /** The end of the last interval charged; null before the first. */
  readonly billedUntilMs: number | null
}

export type ClusterBillingPatch = {
  /** The hold now in force; null once released or used up. */
  readonly billingHoldId: string | null
  readonly billedIntervals: number
  readonly billedUntilMs?: number
}

export type ClusterNodeRecord = {
  readonly clusterId: string
  readonly deviceId: string
  /** The node's overlay address index in the cluster subnet; never reused within a cluster. */
  readonly nodeIndex: number
  readonly role: ClusterNodeRole
  readonly phase: ClusterNodePhase
  readonly phaseReason: string
  readonly wgPublicKey: string | null
  /** host:port of the node's WireGuard socket. */
  readonly endpoint: string | null
  readonly joinedAtMs: number
  readonly leftAtMs: number | null
  /** The node's GPUs at the price quoted when it was reserved: what the renter pays for it per hour. */
  readonly pricePerHourMicroUsd: bigint
}

/** A stretch of time a node was in Ray and serving; open (endedAtMs null) while it still is. */
export type ClusterNodeServicePeriod = {
  readonly deviceId: string
  readonly startedAtMs: number
  readonly endedAtMs: number | null
}

export type NewCluster = {
  readonly cluster: Omit<
    ClusterRecord,
    | 'subnetIndex'
    | 'readyAtMs'
    | 'expiresAtMs'
    | 'endedAtMs'
    | 'updatedAtMs'
    | 'stateChangedAtMs'
    | 'billingHoldId'
    | 'billedIntervals'
    | 'billedUntilMs'
    | 'state'
    | 'desired'
  >
  /** In node-index order; the first is the head. */
  readonly deviceIds: readonly string[]
  /** Each node's price per hour, in the order of deviceIds; absent: 0 (clusters nobody pays for). */
  readonly nodePricesPerHourMicroUsd?: readonly bigint[]
}

export type NewClusterOutcome =
  | { readonly ok: true; readonly cluster: ClusterRecord; readonly nodes: readonly ClusterNodeRecord[] }
  /** Nothing was written: these devices were already held by another cluster. */
  | { readonly ok: false; readonly alreadyReserved: readonly string[] }
  /** Nothing was written: every subnet of 100.64.0.0/10 is in use. */
  | { readonly ok: false; readonly alreadyReserved: readonly []; readonly noSubnet: true }

export type ClusterPatch = {
  readonly state?: ClusterState
  readonly stateReason?: string
  readonly desired?: ClusterDesired
  readonly readyAtMs?: number
  readonly expiresAtMs?: number
  readonly durationMs?: number
  readonly endedAtMs?: number
}

export type ClusterNodePatch = {
  readonly phase?: ClusterNodePhase
  readonly phaseReason?: string
  readonly role?: ClusterNodeRole
  readonly wgPublicKey?: string
  readonly endpoint?: string
}

export type ClusterEventRecord = {
  readonly seq: bigint
  readonly clusterId: string
  readonly atMs: number
  /** e.g. node_reserved, node_mesh_up, node_ray_joined, node_lost, node_replaced, state_changed, extended. */
  readonly kind: string
  readonly deviceId: string | null
  readonly message: string
}

export type NewClusterEvent = Omit<ClusterEventRecord, 'seq'>

export type JobStatus = 'pending' | 'running' | 'succeeded' | 'failed' | 'stopped'

export type ClusterJobRecord = {
  readonly id: string
  readonly clusterId: string
  readonly accountId: string
  readonly entrypoint: string
  readonly status: JobStatus
  readonly message: string
  readonly exitCode: number | null
  readonly createdAtMs: number
  readonly finishedAtMs: number | null
  /** Ray's runtime_env the job was submitted with, as JSON ('{}' when none). */
  readonly runtimeEnvJson: string
  /** Ray job metadata (string to string), as JSON ('{}' when none). */
  readonly metadataJson: string
}

export type ClusterJobPatch = {
  readonly status?: JobStatus
  readonly message?: string
  readonly exitCode?: number | null
  readonly finishedAtMs?: number
}

export type JobLogChunk = { readonly seq: number; readonly text: string }

/** A renter's machine joined to the cluster's mesh. */
export type ClusterClientRecord = {
  readonly clusterId: string
  readonly publicKey: string
  readonly name: string
  readonly addressIndex: number
  readonly createdAtMs: number
  readonly removedAtMs: number | null
}

/** Overlay address indexes of clients: after every node's, before the broadcast address. */
export const firstClientAddressIndex = 200
export const maxClusterClients = 50
