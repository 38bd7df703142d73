import { sha256 } from '@noble/hashes/sha2.js'
import { bytesToHex, utf8ToBytes } from '@noble/hashes/utils.js'
import {
  clusterNamespaceName,
  clusterSubnet,
  meshInterfaceName,
  nodeAddress,
  overlayPrefixLength,
} from '@gpumesh/mesh'
import type { ClusterCommandMessage } from '@gpumesh/protocol'
import type {
  ClusterNodePatch,
  ClusterNodeRecord,
  ClusterPatch,
  ClusterRecord,
  NewClusterEvent,
} from './records.ts'

// The cluster controller's decisions, as a pure function: given a cluster's desired and observed state,
// what to write, whom to tell what, and how many nodes to replace. The controller (controller.ts) runs it
// for every active cluster on each tick and after every report, and does the I/O. Nothing here reads a
// clock or a socket, so every transition is unit-tested and a restarted coordinator reaches the same
// decisions from the same store.

/** Ray's GCS port inside each cluster's own namespace: clusters never share one, so it can be fixed. */
export const rayGcsPort = 6379
/** Ray's client server (ray://) on the head, for a renter's machine joined to the mesh. */
export const rayClientPort = 10001

export type ReconcilePolicy = {
  /** An unconfirmed command is sent again after this long. */
  readonly resendAfterMs: number
  /** A node whose worker is offline this long is lost. */
  readonly nodeLostAfterMs: number
  /**
   * A node not in Ray this long after it was reserved, or after its cluster last started provisioning (a head
   * change restarts Ray everywhere), is lost and replaced.
   */
  readonly nodeJoinTimeoutMs: number
  /** A cluster never ready this long after it was created fails, and everything is released. */
  readonly provisionTimeoutMs: number
  /** Nodes that do not confirm their release within this long are recorded as released anyway. */
  readonly releaseTimeoutMs: number
}

export const defaultReconcilePolicy: ReconcilePolicy = {
  resendAfterMs: 5_000,
  nodeLostAfterMs: 30_000,
  nodeJoinTimeoutMs: 180_000,
  provisionTimeoutMs: 600_000,
  releaseTimeoutMs: 30_000,
}

/** A peer in a node's mesh command. */
type MeshPeer = { publicKey: string; endpoint?: string; overlayAddress: string }

export type SentCommand = { readonly signature: string; readonly atMs: number }

export type ReconcileView = {
  readonly cluster: ClusterRecord
  readonly nodes: readonly ClusterNodeRecord[]
  readonly nowMs: number
  /** Since when the device has been seen offline by this controller; undefined while it is connected. */
  offlineSinceMs(deviceId: string): number | undefined
  /** Overlay addresses the head's Ray reports alive; undefined until the head has reported. */
  readonly aliveAddresses: ReadonlySet<string> | undefined
  /** The last command of a kind sent to a device for this cluster. */
  lastSent(deviceId: string, kind: CommandKind): SentCommand | undefined
  /** The mesh revision a device last confirmed having applied. */
  confirmedMeshRevision(deviceId: string): string | undefined
  /** The Ray command (its signature) a device last confirmed having started. */
  confirmedRay(deviceId: string): string | undefined
  /** Renters' machines joined to the mesh: every node peers with them too. */
  readonly clients?: readonly { readonly publicKey: string; readonly addressIndex: number }[]
}

export type CommandKind = 'prepare' | 'mesh' | 'ray' | 'release'

export type Command = {
  readonly deviceId: string
  readonly kind: CommandKind
  readonly signature: string
  readonly message: ClusterCommandMessage
}

export type Reconciliation = {
  clusterPatch: ClusterPatch | undefined
  /** servedUntilMs: when an offline node stopped serving (its worker went silent), for billing. */
  readonly releases: {
    deviceId: string
    phase: 'lost' | 'released'
    reason: string
    servedUntilMs?: number
  }[]
  readonly nodePatches: { deviceId: string; patch: ClusterNodePatch }[]
  readonly commands: Command[]
  replacementsNeeded: number
  readonly events: NewClusterEvent[]
  /** The head changed: the alive set reported by the old head means nothing now. */
  resetAlive: boolean
}

const activePhases = new Set(['reserved', 'keyed', 'mesh_up', 'ray_joined'])
export const isActiveNode = (node: ClusterNodeRecord): boolean => activePhases.has(node.phase)
export const isTerminalCluster = (cluster: ClusterRecord): boolean =>
  cluster.state === 'terminated' || cluster.state === 'failed'

export function overlayAddressOf(cluster: ClusterRecord, node: ClusterNodeRecord): string | null {
  return cluster.subnetIndex === null ? null : nodeAddress(clusterSubnet(cluster.subnetIndex), node.nodeIndex)
}

export function reconcileCluster(view: ReconcileView, policy: ReconcilePolicy): Reconciliation {
  const { cluster, nowMs } = view
  const out: Reconciliation = {
    clusterPatch: undefined,
    releases: [],
    nodePatches: [],
    commands: [],
    replacementsNeeded: 0,
    events: [],
    resetAlive: false,
  }
  if (isTerminalCluster(cluster) || cluster.subnetIndex === null) return out
  const subnet = clusterSubnet(cluster.subnetIndex)
  const event = (kind: string, message: string, deviceId: string | null = null) =>
    out.events.push({ clusterId: cluster.id, atMs: nowMs, kind, deviceId, message })
  const patchCluster = (patch: ClusterPatch) => (out.clusterPatch = { ...out.clusterPatch, ...patch })
  const online = (deviceId: string) => view.offlineSinceMs(deviceId) === undefined
  const send = (
    node: ClusterNodeRecord,
    kind: CommandKind,
    signature: string,
    message: ClusterCommandMessage,
  ) => out.commands.push({ deviceId: node.deviceId, kind, signature, message })
  /** Sends unless the same command went out recently (or, when confirmed, at all). */
  const sendOnce = (
    node: ClusterNodeRecord,
    kind: CommandKind,
    signature: string,
    confirmed: boolean,
    message: ClusterCommandMessage,
  ) => {
    const last = view.lastSent(node.deviceId, kind)
    if (last && last.signature === signature && (confirmed || nowMs - last.atMs < policy.resendAfterMs))
      return
    send(node, kind, signature, message)
  }
  const releaseCommand = (reason: string): ClusterCommandMessage => ({
    type: 'cluster_release',
    clusterId: cluster.id,
    reason,
  })

  let active = view.nodes.filter(isActiveNode)

  // Ending: the renter's terminate, or the end of the paid duration. Every node is told to tear down; one
  // whose worker is gone, or that does not confirm in time, is recorded as released without it.
  const expired = cluster.expiresAtMs !== null && nowMs >= cluster.expiresAtMs
  if (cluster.state === 'terminating' || cluster.desired === 'terminated' || expired) {
    let terminatingSinceMs = cluster.stateChangedAtMs
    let reason = cluster.stateReason
    if (cluster.state !== 'terminating') {
      reason =
        cluster.desired === 'terminated'
          ? 'terminated by the renter'
          : `its duration of ${formatHours(cluster.durationMs)} ended`
      patchCluster({ state: 'terminating', stateReason: reason, desired: 'terminated' })
      event('state_changed', `terminating: ${reason}`)
      terminatingSinceMs = nowMs
    }
    for (const node of active) {
      if (!online(node.deviceId)) {
        out.releases.push({
          deviceId: node.deviceId,
          phase: 'released',
          reason: 'its worker is offline',
          servedUntilMs: view.offlineSinceMs(node.deviceId)!,
        })
        event('node_released', 'recorded as released: its worker is offline', node.deviceId)
      } else if (nowMs - terminatingSinceMs > policy.releaseTimeoutMs) {
        out.releases.push({
          deviceId: node.deviceId,
          phase: 'released',
          reason: 'did not confirm its release in time',
        })
        event('node_released', 'recorded as released without confirmation', node.deviceId)
      } else {
        sendOnce(node, 'release', 'release', false, releaseCommand(reason))
      }
    }
    if (out.releases.length === active.length) {
      patchCluster({ state: 'terminated', endedAtMs: nowMs })
      event('state_changed', 'terminated: every node released')
    }
    return out
  }

  // Never ready in time: roll back. Nodes are told to tear down; the store releases their devices.
  if (cluster.readyAtMs === null && nowMs - cluster.createdAtMs > policy.provisionTimeoutMs) {
    const reason = `not ready within ${Math.round(policy.provisionTimeoutMs / 1000)} s (${describeProgress(active)})`
    for (const node of active)
      if (online(node.deviceId)) send(node, 'release', 'release', releaseCommand(reason))
    patchCluster({ state: 'failed', stateReason: reason, endedAtMs: nowMs })
    event('state_changed', `failed: ${reason}`)
    return out
  }

  // Lost nodes: the worker is gone, Ray says the node is dead, or a new node never made it into Ray.
  const addressOf = (node: ClusterNodeRecord) => nodeAddress(subnet, node.nodeIndex)
  const lose = (node: ClusterNodeRecord, reason: string, servedUntilMs?: number) => {
    out.releases.push({
      deviceId: node.deviceId,
      phase: 'lost',
      reason,
      ...(servedUntilMs === undefined ? {} : { servedUntilMs }),
    })
    event('node_lost', `node ${addressOf(node)} lost: ${reason}`, node.deviceId)
    if (online(node.deviceId)) send(node, 'release', 'release', releaseCommand(`node lost: ${reason}`))
  }
  for (const node of active) {
    const offlineSince = view.offlineSinceMs(node.deviceId)
    // Measured from the later of the node's reservation and the cluster's entering provisioning: a node
    // restarting Ray after a head change gets the full time again.
    const waitingSinceMs = Math.max(
      node.joinedAtMs,
      cluster.state === 'ready' ? Number.POSITIVE_INFINITY : cluster.stateChangedAtMs,
    )
    if (offlineSince !== undefined && nowMs - offlineSince >= policy.nodeLostAfterMs) {
      lose(
        node,
        `its worker has been offline for ${Math.round((nowMs - offlineSince) / 1000)} s`,
        offlineSince,
      )
    } else if (
      node.phase === 'ray_joined' &&
      view.aliveAddresses &&
      !view.aliveAddresses.has(addressOf(node))
    ) {
      lose(node, 'Ray reports the node dead')
    } else if (node.phase !== 'ray_joined' && nowMs - waitingSinceMs > policy.nodeJoinTimeoutMs) {
      lose(node, `not in Ray within ${Math.round(policy.nodeJoinTimeoutMs / 1000)} s`)
    }
  }
  const lostIds = new Set(out.releases.map((release) => release.deviceId))
  active = active.filter((node) => !lostIds.has(node.deviceId))

  // A lost head takes Ray's control store with it: the lowest remaining node becomes the head and every
  // node starts Ray afresh against it.
  let head = active.find((node) => node.role === 'head')
  if (!head && active.length > 0) {
    head = [...active].sort((a, b) => a.nodeIndex - b.nodeIndex)[0]!
    out.resetAlive = true
    event(
      'head_changed',
      `node ${addressOf(head)} is the new head; Ray restarts on every node`,
      head.deviceId,
    )
    active = active.map((node) => {
      const role = node === head ? ('head' as const) : node.role
      const phase = node.phase === 'ray_joined' ? ('mesh_up' as const) : node.phase
      if (role !== node.role || phase !== node.phase)
        out.nodePatches.push({
          deviceId: node.deviceId,
          patch: { role, phase, phaseReason: 'Ray restarting' },
        })
      return { ...node, role, phase }
    })
    head = active.find((node) => node.role === 'head')!
  }
  const alive = out.resetAlive ? undefined : view.aliveAddresses

  out.replacementsNeeded = Math.max(0, cluster.nodeCount - active.length)

  // Per node: a key, then the mesh with every other keyed node, then Ray (the head first; a worker once the
  // head's Ray has started and both ends have applied a mesh that includes the other).
  const keyed = active.filter((node) => node.wgPublicKey !== null && node.endpoint !== null)
  const allKeyed = keyed.length === active.length
  // Once per node per pass: every worker's check reads the head's mesh too, and each is a hash.
  const meshes = new Map<string, { peers: MeshPeer[]; revision: string }>()
  const meshFor = (node: ClusterNodeRecord) => {
    const known = meshes.get(node.deviceId)
    if (known) return known
    const peers: MeshPeer[] = keyed
      .filter((peer) => peer.deviceId !== node.deviceId)
      .map((peer) => ({
        publicKey: peer.wgPublicKey!,
        endpoint: peer.endpoint!,
        overlayAddress: addressOf(peer),
      }))
    for (const client of view.clients ?? [])
      peers.push({ publicKey: client.publicKey, overlayAddress: nodeAddress(subnet, client.addressIndex) })
    peers.sort((a, b) => (a.overlayAddress < b.overlayAddress ? -1 : 1))
    const revision = bytesToHex(sha256(utf8ToBytes(`${addressOf(node)}|${JSON.stringify(peers)}`))).slice(
      0,
      32,
    )
    const mesh = { peers, revision }
    meshes.set(node.deviceId, mesh)
    return mesh
  }
  /** The Ray command a node should run: it changes with the head, so a new head means a new command. */
  const raySignature = (node: ClusterNodeRecord) =>
    `${node === head ? 'head' : 'worker'}:${head ? addressOf(head) : ''}`
  const meshCurrent = (node: ClusterNodeRecord) =>
    node.phase !== 'reserved' &&
    node.phase !== 'keyed' &&
    view.confirmedMeshRevision(node.deviceId) === meshFor(node).revision

  for (const node of active) {
    if (node.phase === 'reserved') {
      sendOnce(node, 'prepare', 'prepare', false, {
        type: 'cluster_node_prepare',
        clusterId: cluster.id,
        interfaceName: meshInterfaceName(cluster.id, node.deviceId),
        namespace: clusterNamespaceName(cluster.id, node.deviceId),
      })
      continue
    }
    if (!allKeyed) continue
    const { peers, revision } = meshFor(node)
    sendOnce(node, 'mesh', revision, view.confirmedMeshRevision(node.deviceId) === revision, {
      type: 'cluster_mesh',
      clusterId: cluster.id,
      overlayAddress: addressOf(node),
      prefixLength: overlayPrefixLength,
      peers,
      revision,
    })
    if (node.phase === 'keyed' || !head) continue
    const headAddress = addressOf(head)
    // Confirmed once the worker said it started this Ray: sent again, it would only answer "already running".
    const rayConfirmed =
      node.phase === 'ray_joined' || view.confirmedRay(node.deviceId) === raySignature(node)
    if (node === head) {
      if (!meshCurrent(node) && node.phase !== 'ray_joined') continue
      sendOnce(node, 'ray', raySignature(node), rayConfirmed, {
        type: 'cluster_ray',
        clusterId: cluster.id,
        role: 'head',
        headAddress,
        gcsPort: rayGcsPort,
        numGpus: cluster.gpusPerNode,
      })
    } else if (
      node.phase === 'ray_joined' ||
      ((alive?.has(headAddress) || view.confirmedRay(head.deviceId) === raySignature(head)) &&
        meshCurrent(node) &&
        meshCurrent(head))
    ) {
      sendOnce(node, 'ray', raySignature(node), rayConfirmed, {
        type: 'cluster_ray',
        clusterId: cluster.id,
        role: 'worker',
        headAddress,
        gcsPort: rayGcsPort,
        numGpus: cluster.gpusPerNode,
      })
    }
  }

  // Ray itself decides when a node has joined: its address in the head's report of alive nodes. And once its
  // worker has said its Ray started: the head may see a node before that worker's report arrives, and the
  // events then read as they happened (Ray started, joined, ready), never "started" after "ready".
  let joinedCount = 0
  for (const node of active) {
    if (node.phase === 'ray_joined') joinedCount += 1
    else if (
      node.phase === 'mesh_up' &&
      alive?.has(addressOf(node)) &&
      view.confirmedRay(node.deviceId) === raySignature(node)
    ) {
      joinedCount += 1
      out.nodePatches.push({
        deviceId: node.deviceId,
        patch: { phase: 'ray_joined', phaseReason: 'Ray reports the node alive' },
      })
      event('node_ray_joined', `node ${addressOf(node)} joined Ray`, node.deviceId)
    }
  }

  const complete = out.replacementsNeeded === 0 && joinedCount === active.length
  if (complete && cluster.state !== 'ready') {
    const first = cluster.readyAtMs === null
    patchCluster({
      state: 'ready',
      stateReason: first
        ? `Ray reports all ${active.length} nodes alive`
        : `back to ${active.length} nodes: Ray reports every node alive`,
      ...(first ? { readyAtMs: nowMs, expiresAtMs: nowMs + cluster.durationMs } : {}),
    })
    event('state_changed', `ready: Ray reports all ${active.length} nodes alive`)
  } else if (!complete && cluster.state !== 'provisioning') {
    const reason =
      cluster.state === 'pending'
        ? `bringing up ${cluster.nodeCount} nodes`
        : `replacing ${out.replacementsNeeded || 'restarted'} node${out.replacementsNeeded === 1 ? '' : 's'}`
    patchCluster({ state: 'provisioning', stateReason: reason })
    event('state_changed', `provisioning: ${reason}`)
  }
  return out
}

function describeProgress(nodes: readonly ClusterNodeRecord[]): string {
  const counts = new Map<string, number>()
  for (const node of nodes) counts.set(node.phase, (counts.get(node.phase) ?? 0) + 1)
  return [...counts.entries()].map(([phase, count]) => `${count} ${phase}`).join(', ') || 'no nodes'
}

function formatHours(durationMs: number): string {
  const hours = durationMs / 3_600_000
  return `${Number.isInteger(hours) ? hours : hours.toFixed(2)} h`
}
