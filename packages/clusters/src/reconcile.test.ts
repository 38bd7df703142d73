import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import {
  clusterNamespaceName,
  clusterSubnet,
  meshInterfaceName,
  nodeAddress,
  overlayPrefixLength,
} from '@gpumesh/mesh'
import type { ClusterMeshMessage, ClusterRayMessage, ClusterReleaseMessage } from '@gpumesh/protocol'
import type {
  ClusterDesired,
  ClusterNodePhase,
  ClusterNodeRecord,
  ClusterRecord,
  ClusterState,
} from './records.ts'
import {
  isActiveNode,
  rayGcsPort,
  reconcileCluster,
  type Command,
  type CommandKind,
  type ReconcilePolicy,
  type ReconcileView,
  type Reconciliation,
  type SentCommand,
} from './reconcile.ts'

// reconcileCluster is the controller's whole decision: these tests drive it through a cluster's life the
// way the controller does (apply the decision, record what was sent, let workers answer), and check the
// invariants over random clusters.

// Distinct values, so a test can tell which limit a decision came from.
const policy: ReconcilePolicy = {
  resendAfterMs: 5_000,
  nodeLostAfterMs: 30_000,
  nodeJoinTimeoutMs: 180_000,
  provisionTimeoutMs: 600_000,
  releaseTimeoutMs: 30_000,
}

const clusterId = 'cls_test'
const subnetIndex = 5
const createdAtMs = 1_000_000
const hourMs = 3_600_000

// --- records ---------------------------------------------------------------------------------------------

function clusterRecord(overrides: Partial<ClusterRecord> = {}): ClusterRecord {
  return {
    id: clusterId,
    accountId: 'acc_renter',
    name: 'test',
    state: 'pending',
    stateReason: 'created',
    desired: 'running',
    request: { nodeCount: 3, gpusPerNode: 2 },
    nodeCount: 3,
    gpusPerNode: 2,
    durationMs: 2 * hourMs,
    subnetIndex,
    pricePerHourMicroUsd: 6_000_000n,
    createdAtMs,
    readyAtMs: null,
    expiresAtMs: null,
    endedAtMs: null,
    updatedAtMs: createdAtMs,
    stateChangedAtMs: createdAtMs,
    billingHoldId: null,
    billedIntervals: 0,
    billedUntilMs: null,
    ...overrides,
  }
}

const deviceOf = (nodeIndex: number) => `dev_${nodeIndex}`
const addressOf = (nodeIndex: number, subnet = subnetIndex) => nodeAddress(clusterSubnet(subnet), nodeIndex)
const publicKeyOf = (nodeIndex: number) => `${'k'.repeat(40)}${String(nodeIndex).padStart(2, '0')}A=`
const endpointOf = (nodeIndex: number) => `203.0.113.${nodeIndex + 10}:51820`

/** A node of the cluster; from keyed on it has a key and endpoint. Node 0 is the head. */
function nodeRecord(
  nodeIndex: number,
  phase: ClusterNodePhase = 'reserved',
  overrides: Partial<ClusterNodeRecord> = {},
): ClusterNodeRecord {
  const keyed = phase !== 'reserved'
  return {
    clusterId,
    deviceId: deviceOf(nodeIndex),
    nodeIndex,
    role: nodeIndex === 0 ? 'head' : 'worker',
    phase,
    phaseReason: '',
    wgPublicKey: keyed ? publicKeyOf(nodeIndex) : null,
    endpoint: keyed ? endpointOf(nodeIndex) : null,
    joinedAtMs: createdAtMs,
    leftAtMs: phase === 'lost' || phase === 'released' ? createdAtMs : null,
    pricePerHourMicroUsd: 500_000n,
    ...overrides,
  }
}

// --- the controller's side, simulated ----------------------------------------------------------------------

/** What the controller keeps about one cluster between decisions. */
type World = {
  cluster: ClusterRecord
  nodes: ClusterNodeRecord[]
  nowMs: number
  offlineSinceMs: Map<string, number>
  alive: Set<string> | undefined
  sent: Map<string, SentCommand>
  confirmedMesh: Map<string, string>
  /** The Ray command each device last said it started (the simulated workers confirm each as it is sent). */
  confirmedRay: Map<string, string>
  /** Off: the test confirms Ray itself (see the ordering tests). */
  confirmsRay: boolean
}

function worldOf(cluster: ClusterRecord, nodes: ClusterNodeRecord[], nowMs: number): World {
  return {
    cluster,
    nodes,
    nowMs,
    offlineSinceMs: new Map(),
    alive: undefined,
    sent: new Map(),
    confirmedMesh: new Map(),
    confirmedRay: new Map(),
    confirmsRay: true,
  }
}

function viewOf(world: World): ReconcileView {
  return {
    cluster: world.cluster,
    nodes: world.nodes,
    nowMs: world.nowMs,
    offlineSinceMs: (deviceId) => world.offlineSinceMs.get(deviceId),
    aliveAddresses: world.alive,
    lastSent: (deviceId, kind) => world.sent.get(`${deviceId}|${kind}`),
    confirmedMeshRevision: (deviceId) => world.confirmedMesh.get(deviceId),
    confirmedRay: (deviceId) => world.confirmedRay.get(deviceId),
  }
}

const reconcile = (world: World) => reconcileCluster(viewOf(world), policy)

/** These nodes' workers said they started Ray against the head, node 0. */
function confirmRay(world: World, indexes: readonly number[]): void {
  for (const index of indexes)
    world.confirmedRay.set(deviceOf(index), `${index === 0 ? 'head' : 'worker'}:${addressOf(0)}`)
}

/** The nodes once a decision's releases and patches are written. */
function nodesAfter(nodes: readonly ClusterNodeRecord[], out: Reconciliation, nowMs: number) {
  return nodes.map((node) => {
    if (!isActiveNode(node)) return node
    const release = out.releases.find((candidate) => candidate.deviceId === node.deviceId)
    if (release) return { ...node, phase: release.phase, phaseReason: release.reason, leftAtMs: nowMs }
    let patched = node
    for (const { deviceId, patch } of out.nodePatches)
      if (deviceId === node.deviceId) patched = { ...patched, ...patch }
    return patched
  })
}

/** What the controller does with a decision: writes it and records what it sent. */
function apply(world: World, out: Reconciliation): void {
  world.nodes = nodesAfter(world.nodes, out, world.nowMs)
  for (const release of out.releases) {
    for (const kind of ['prepare', 'mesh', 'ray', 'release'] as const)
      world.sent.delete(`${release.deviceId}|${kind}`)
    world.confirmedMesh.delete(release.deviceId)
    world.confirmedRay.delete(release.deviceId)
  }
  if (out.resetAlive) world.alive = undefined
  for (const command of out.commands) {
    world.sent.set(`${command.deviceId}|${command.kind}`, { signature: command.signature, atMs: world.nowMs })
    if (command.kind === 'ray' && world.confirmsRay)
      world.confirmedRay.set(command.deviceId, command.signature)
  }
  if (out.clusterPatch) {
    const stateChanged =
      out.clusterPatch.state !== undefined && out.clusterPatch.state !== world.cluster.state
    world.cluster = {
      ...world.cluster,
      ...out.clusterPatch,
      updatedAtMs: world.nowMs,
      ...(stateChanged ? { stateChangedAtMs: world.nowMs } : {}),
    }
  }
}

/** Workers answer their prepare with a key and endpoint. */
function keyReservedNodes(world: World): void {
  world.nodes = world.nodes.map((node) =>
    node.phase === 'reserved'
      ? {
          ...node,
          phase: 'keyed',
          wgPublicKey: publicKeyOf(node.nodeIndex),
          endpoint: endpointOf(node.nodeIndex),
        }
      : node,
  )
}

/** Workers apply the meshes they were sent and confirm the revision; a keyed node is then mesh_up. */
function confirmMeshes(world: World, out: Reconciliation): void {
  for (const command of commandsOf(out, 'mesh')) {
    world.confirmedMesh.set(command.deviceId, command.signature)
    world.nodes = world.nodes.map((node) =>
      node.deviceId === command.deviceId && node.phase === 'keyed' ? { ...node, phase: 'mesh_up' } : node,
    )
  }
}

const nothing: Reconciliation = {
  clusterPatch: undefined,
  releases: [],
  nodePatches: [],
  commands: [],
  replacementsNeeded: 0,
  events: [],
  resetAlive: false,
}

const commandsOf = (out: Reconciliation, kind: CommandKind) =>
  out.commands.filter((command) => command.kind === kind)
const devicesOf = (commands: readonly Command[]) => commands.map((command) => command.deviceId).sort()
const commandTo = (out: Reconciliation, deviceId: string, kind: CommandKind) =>
  out.commands.find((command) => command.deviceId === deviceId && command.kind === kind)
const eventKinds = (out: Reconciliation) => out.events.map((event) => event.kind)

function meshOf(command: Command | undefined): ClusterMeshMessage {
  if (command?.message.type !== 'cluster_mesh') return assert.fail(`not a mesh command: ${command?.kind}`)
  return command.message
}

function rayOf(command: Command | undefined): ClusterRayMessage {
  if (command?.message.type !== 'cluster_ray') return assert.fail(`not a ray command: ${command?.kind}`)
  return command.message
}

function releaseOf(command: Command | undefined): ClusterReleaseMessage {
  if (command?.message.type !== 'cluster_release')
    return assert.fail(`not a release command: ${command?.kind}`)
  return command.message
}

/** Walks a pending cluster of `nodeCount` nodes to ready, answering as the workers and Ray would. */
function bringUp(nodeCount = 3): World {
  const indexes = Array.from({ length: nodeCount }, (_, index) => index)
  const world = worldOf(
    clusterRecord({ nodeCount }),
    indexes.map((index) => nodeRecord(index)),
    createdAtMs + 1_000,
  )
  const step = () => {
    const out = reconcile(world)
    apply(world, out)
    world.nowMs += 1_000
    return out
  }
  step() // prepare
  keyReservedNodes(world)
  confirmMeshes(world, step()) // mesh
  step() // head's Ray
  world.alive = new Set([addressOf(0)])
  step() // the head joined; workers' Ray
  world.alive = new Set(indexes.map((index) => addressOf(index)))
  step() // everyone joined: ready
  assert.equal(world.cluster.state, 'ready')
  return world
}

// --- lifecycle ---------------------------------------------------------------------------------------------

describe('reconcileCluster: bringing a cluster up', () => {
  it('asks every reserved node of a pending cluster to prepare, named after the cluster and device', () => {
    const world = worldOf(
      clusterRecord(),
      [0, 1, 2].map((index) => nodeRecord(index)),
      createdAtMs + 10,
    )
    const out = reconcile(world)
    assert.deepEqual(out.clusterPatch, { state: 'provisioning', stateReason: 'bringing up 3 nodes' })
    assert.deepEqual(eventKinds(out), ['state_changed'])
    assert.deepEqual(out.events[0], {
      clusterId,
      atMs: createdAtMs + 10,
      kind: 'state_changed',
      deviceId: null,
      message: 'provisioning: bringing up 3 nodes',
    })
    assert.equal(out.commands.length, 3)
    for (const index of [0, 1, 2]) {
      const deviceId = deviceOf(index)
      assert.deepEqual(commandTo(out, deviceId, 'prepare'), {
        deviceId,
        kind: 'prepare',
        signature: 'prepare',
        message: {
          type: 'cluster_node_prepare',
          clusterId,
          interfaceName: meshInterfaceName(clusterId, deviceId),
          namespace: clusterNamespaceName(clusterId, deviceId),
        },
      })
    }
    assert.deepEqual(out.releases, [])
    assert.deepEqual(out.nodePatches, [])
    assert.equal(out.replacementsNeeded, 0)
    assert.equal(out.resetAlive, false)
  })

  it('sends a prepare again only once resendAfterMs has passed since the last', () => {
    const world = worldOf(
      clusterRecord({ state: 'provisioning' }),
      [nodeRecord(0), nodeRecord(1)],
      createdAtMs + 20_000,
    )
    world.sent.set('dev_0|prepare', { signature: 'prepare', atMs: world.nowMs - policy.resendAfterMs + 1 })
    world.sent.set('dev_1|prepare', { signature: 'prepare', atMs: world.nowMs - policy.resendAfterMs })
    const out = reconcile(world)
    assert.deepEqual(devicesOf(out.commands), ['dev_1'])
    assert.equal(out.clusterPatch, undefined, 'already provisioning')
    world.nowMs += 1
    assert.deepEqual(devicesOf(reconcile(world).commands), ['dev_0', 'dev_1'])
  })

  it('sends no mesh until every active node is keyed', () => {
    const world = worldOf(
      clusterRecord({ state: 'provisioning' }),
      [nodeRecord(0, 'keyed'), nodeRecord(1, 'keyed'), nodeRecord(2), nodeRecord(3, 'lost')],
      createdAtMs + 20_000,
    )
    const out = reconcile(world)
    assert.deepEqual(
      out.commands.map((command) => [command.deviceId, command.kind]),
      [['dev_2', 'prepare']],
    )
  })

  it('sends each keyed node a mesh of the other nodes as peers, at its overlay address', () => {
    const nodes = [
      nodeRecord(0, 'keyed'),
      nodeRecord(1, 'keyed'),
      nodeRecord(4, 'keyed'),
      nodeRecord(2, 'lost'),
    ]
    const world = worldOf(clusterRecord({ state: 'provisioning' }), nodes, createdAtMs + 20_000)
    const out = reconcile(world)
    assert.deepEqual(devicesOf(out.commands), ['dev_0', 'dev_1', 'dev_4'])
    const byAddress = (a: { overlayAddress: string }, b: { overlayAddress: string }) =>
      a.overlayAddress < b.overlayAddress ? -1 : 1
    for (const index of [0, 1, 4]) {
      const command = commandTo(out, deviceOf(index), 'mesh')
      const mesh = meshOf(command)
      assert.equal(mesh.clusterId, clusterId)
      assert.equal(mesh.overlayAddress, addressOf(index))
      assert.equal(mesh.prefixLength, overlayPrefixLength)
      assert.deepEqual(
        [...mesh.peers].sort(byAddress),
        [0, 1, 4]
          .filter((peer) => peer !== index)
          .map((peer) => ({
            publicKey: publicKeyOf(peer),
            endpoint: endpointOf(peer),
            overlayAddress: addressOf(peer),
          }))
          .sort(byAddress),
      )
      assert.ok(mesh.revision.length > 0 && mesh.revision.length <= 64)
      assert.equal(command?.signature, mesh.revision)
    }
    const revisions = commandsOf(out, 'mesh').map((command) => meshOf(command).revision)
    assert.equal(new Set(revisions).size, 3, 'each node has its own peer set, so its own revision')
    assert.deepEqual(reconcile(world), out, 'the same input gives the same revisions')
  })

  it('takes overlay addresses from the cluster subnet and the node index', () => {
    const world = worldOf(
      clusterRecord({ state: 'provisioning', subnetIndex: 300 }),
      [nodeRecord(0, 'keyed'), nodeRecord(9, 'keyed')],
      createdAtMs + 20_000,
    )
    const out = reconcile(world)
    assert.equal(meshOf(commandTo(out, 'dev_0', 'mesh')).overlayAddress, '100.65.44.1')
    assert.equal(meshOf(commandTo(out, 'dev_9', 'mesh')).overlayAddress, '100.65.44.10')
    assert.deepEqual(
      meshOf(commandTo(out, 'dev_0', 'mesh')).peers.map((peer) => peer.overlayAddress),
      ['100.65.44.10'],
    )
  })

  it('resends a mesh after resendAfterMs, never once confirmed, and at once when the peer set changes', () => {
    const world = worldOf(
      clusterRecord({ state: 'provisioning' }),
      [nodeRecord(0, 'keyed'), nodeRecord(1, 'keyed')],
      createdAtMs + 20_000,
    )
    const first = reconcile(world)
    const revision = commandTo(first, 'dev_0', 'mesh')!.signature
    world.sent.set('dev_0|mesh', { signature: revision, atMs: world.nowMs - policy.resendAfterMs + 1 })
    assert.equal(commandTo(reconcile(world), 'dev_0', 'mesh'), undefined, 'sent just now')
    world.sent.set('dev_0|mesh', { signature: revision, atMs: world.nowMs - policy.resendAfterMs })
    assert.deepEqual(commandTo(reconcile(world), 'dev_0', 'mesh'), commandTo(first, 'dev_0', 'mesh'))
    world.confirmedMesh.set('dev_0', revision)
    world.sent.set('dev_0|mesh', { signature: revision, atMs: world.nowMs - hourMs })
    assert.equal(commandTo(reconcile(world), 'dev_0', 'mesh'), undefined, 'confirmed')

    world.sent.set('dev_0|mesh', { signature: revision, atMs: world.nowMs })
    world.nodes = [...world.nodes, nodeRecord(2, 'keyed')]
    const grown = commandTo(reconcile(world), 'dev_0', 'mesh')
    assert.notEqual(grown?.signature, revision)
    assert.deepEqual(
      meshOf(grown).peers.map((peer) => peer.overlayAddress),
      [addressOf(1), addressOf(2)],
    )
  })

  it("starts the head's Ray once its mesh is up and confirmed at the current revision", () => {
    const world = worldOf(
      clusterRecord({ state: 'provisioning' }),
      [nodeRecord(0, 'mesh_up'), nodeRecord(1, 'mesh_up')],
      createdAtMs + 20_000,
    )
    const revision = commandTo(reconcile(world), 'dev_0', 'mesh')!.signature
    assert.equal(commandsOf(reconcile(world), 'ray').length, 0, 'no mesh confirmed')
    world.confirmedMesh.set('dev_0', 'an-older-revision')
    assert.equal(commandsOf(reconcile(world), 'ray').length, 0, 'an older mesh confirmed')
    world.confirmedMesh.set('dev_0', revision)
    const out = reconcile(world)
    assert.deepEqual(commandsOf(out, 'ray'), [
      {
        deviceId: 'dev_0',
        kind: 'ray',
        signature: `head:${addressOf(0)}`,
        message: {
          type: 'cluster_ray',
          clusterId,
          role: 'head',
          headAddress: addressOf(0),
          gcsPort: rayGcsPort,
          numGpus: 2,
        },
      },
    ])
  })

  it('starts no Ray on a head that is only keyed, even with its mesh confirmed', () => {
    const world = worldOf(
      clusterRecord({ state: 'provisioning' }),
      [nodeRecord(0, 'keyed'), nodeRecord(1, 'keyed')],
      createdAtMs + 20_000,
    )
    for (const command of commandsOf(reconcile(world), 'mesh'))
      world.confirmedMesh.set(command.deviceId, command.signature)
    assert.deepEqual(commandsOf(reconcile(world), 'ray'), [])
  })

  it("starts a worker's Ray only once Ray reports the head alive and both meshes are confirmed", () => {
    const setUp = (headConfirmed: boolean, workerConfirmed: boolean, alive: string[] | undefined) => {
      const world = worldOf(
        clusterRecord({ state: 'provisioning' }),
        [nodeRecord(0, 'ray_joined'), nodeRecord(1, 'mesh_up')],
        createdAtMs + 20_000,
      )
      const meshes = commandsOf(reconcile(world), 'mesh')
      for (const command of meshes) {
        const confirmed = command.deviceId === 'dev_0' ? headConfirmed : workerConfirmed
        world.confirmedMesh.set(command.deviceId, confirmed ? command.signature : 'stale')
      }
      world.alive = alive && new Set(alive)
      return commandTo(reconcile(world), 'dev_1', 'ray')
    }
    const head = addressOf(0)
    assert.equal(setUp(true, true, undefined), undefined, 'the head has not reported')
    assert.equal(setUp(true, true, [addressOf(1)]), undefined, 'the head is not alive')
    assert.equal(setUp(false, true, [head]), undefined, "the head's mesh is not confirmed")
    assert.equal(setUp(true, false, [head]), undefined, "the worker's mesh is not confirmed")
    const command = setUp(true, true, [head])
    assert.equal(command?.signature, `worker:${head}`)
    assert.deepEqual(rayOf(command), {
      type: 'cluster_ray',
      clusterId,
      role: 'worker',
      headAddress: head,
      gcsPort: rayGcsPort,
      numGpus: 2,
    })
  })

  it('marks a mesh_up node that Ray reports alive as joined, and no node before its mesh is up', () => {
    const world = worldOf(
      clusterRecord({ state: 'provisioning' }),
      [
        nodeRecord(0, 'ray_joined'),
        nodeRecord(1, 'mesh_up'),
        nodeRecord(2, 'mesh_up'),
        nodeRecord(3, 'keyed'),
      ],
      createdAtMs + 20_000,
    )
    world.alive = new Set([0, 1, 3].map((index) => addressOf(index)))
    confirmRay(world, [0, 1, 2, 3])
    const out = reconcile(world)
    assert.deepEqual(out.nodePatches, [
      { deviceId: 'dev_1', patch: { phase: 'ray_joined', phaseReason: 'Ray reports the node alive' } },
    ])
    assert.deepEqual(
      out.events.filter((event) => event.kind === 'node_ray_joined'),
      [
        {
          clusterId,
          atMs: world.nowMs,
          kind: 'node_ray_joined',
          deviceId: 'dev_1',
          message: `node ${addressOf(1)} joined Ray`,
        },
      ],
    )
    assert.equal(out.clusterPatch, undefined, 'not every node joined')
  })

  it('is ready once every node joined, the duration running from then', () => {
    const world = worldOf(
      clusterRecord({ state: 'provisioning' }),
      [nodeRecord(0, 'ray_joined'), nodeRecord(1, 'ray_joined'), nodeRecord(2, 'mesh_up')],
      createdAtMs + 20_000,
    )
    world.alive = new Set([0, 1, 2].map((index) => addressOf(index)))
    confirmRay(world, [2])
    const out = reconcile(world)
    assert.deepEqual(out.clusterPatch, {
      state: 'ready',
      stateReason: 'Ray reports all 3 nodes alive',
      readyAtMs: world.nowMs,
      expiresAtMs: world.nowMs + 2 * hourMs,
    })
    assert.deepEqual(eventKinds(out), ['node_ray_joined', 'state_changed'])
  })

  it('is not ready while a node is missing, even with every present node joined', () => {
    const world = worldOf(
      clusterRecord({ state: 'provisioning' }),
      [nodeRecord(0, 'ray_joined'), nodeRecord(1, 'ray_joined'), nodeRecord(2, 'lost')],
      createdAtMs + 20_000,
    )
    const out = reconcile(world)
    assert.equal(out.clusterPatch, undefined)
    assert.equal(out.replacementsNeeded, 1)
  })

  it('keeps the first readyAtMs and expiresAtMs when ready again after a replacement', () => {
    const readyAtMs = createdAtMs + 60_000
    const world = worldOf(
      clusterRecord({ state: 'provisioning', readyAtMs, expiresAtMs: readyAtMs + 2 * hourMs }),
      [
        nodeRecord(0, 'ray_joined'),
        nodeRecord(1, 'ray_joined'),
        nodeRecord(2, 'lost'),
        nodeRecord(3, 'mesh_up'),
      ],
      readyAtMs + 600_000,
    )
    world.nodes[3] = { ...world.nodes[3]!, joinedAtMs: world.nowMs - 10_000 }
    world.alive = new Set([0, 1, 3].map((index) => addressOf(index)))
    confirmRay(world, [3])
    const out = reconcile(world)
    assert.deepEqual(out.clusterPatch, {
      state: 'ready',
      stateReason: 'back to 3 nodes: Ray reports every node alive',
    })
  })

  it('issue 25 item 4: a node Ray reports alive joins once its worker said Ray started: started, joined, ready', () => {
    // The head's Ray sees a worker's node register before that worker's own "Ray started" arrives.
    const world = worldOf(
      clusterRecord({ state: 'provisioning' }),
      [nodeRecord(0, 'ray_joined'), nodeRecord(1, 'ray_joined'), nodeRecord(2, 'mesh_up')],
      createdAtMs + 20_000,
    )
    world.confirmsRay = false
    confirmRay(world, [0, 1])
    world.alive = new Set([0, 1, 2].map((index) => addressOf(index)))
    let out = reconcile(world)
    assert.deepEqual(out.nodePatches, [], 'not joined before its worker confirmed Ray')
    assert.equal(out.clusterPatch, undefined, 'not ready before every worker confirmed Ray')
    assert.deepEqual(eventKinds(out), [])
    apply(world, out)

    confirmRay(world, [2])
    out = reconcile(world)
    assert.deepEqual(out.nodePatches, [
      { deviceId: 'dev_2', patch: { phase: 'ray_joined', phaseReason: 'Ray reports the node alive' } },
    ])
    assert.deepEqual(eventKinds(out), ['node_ray_joined', 'state_changed'])
    assert.equal(out.clusterPatch?.state, 'ready')
  })

  it('issue 25 item 4: sends no Ray command again once its worker confirmed it, however long Ray takes', () => {
    const world = worldOf(
      clusterRecord({ state: 'provisioning' }),
      [nodeRecord(0, 'mesh_up'), nodeRecord(1, 'mesh_up')],
      createdAtMs + 20_000,
    )
    world.confirmsRay = false
    for (const command of commandsOf(reconcile(world), 'mesh'))
      world.confirmedMesh.set(command.deviceId, command.signature)
    let out = reconcile(world)
    assert.deepEqual(devicesOf(commandsOf(out, 'ray')), ['dev_0'])
    apply(world, out)
    confirmRay(world, [0])
    // Confirmed, the worker's Ray is sent once (the head's confirmation lets it start before Ray reports).
    world.nowMs += 1_000
    out = reconcile(world)
    assert.deepEqual(devicesOf(commandsOf(out, 'ray')), ['dev_1'])
    apply(world, out)
    confirmRay(world, [1])
    // Ray on the head has not reported the nodes yet: each said it started, so neither hears it again.
    for (const laterMs of [policy.resendAfterMs, 3 * policy.resendAfterMs]) {
      world.nowMs += laterMs
      assert.deepEqual(commandsOf(reconcile(world), 'ray'), [], `${laterMs} ms later`)
    }
  })

  it('walks a cluster from pending to ready, then holds still', () => {
    const world = worldOf(
      clusterRecord(),
      [0, 1, 2].map((index) => nodeRecord(index)),
      createdAtMs + 1_000,
    )
    world.confirmsRay = false

    let out = reconcile(world)
    assert.deepEqual(devicesOf(commandsOf(out, 'prepare')), ['dev_0', 'dev_1', 'dev_2'])
    apply(world, out)
    world.nowMs += 1_000
    keyReservedNodes(world)

    out = reconcile(world)
    assert.deepEqual(devicesOf(commandsOf(out, 'mesh')), ['dev_0', 'dev_1', 'dev_2'])
    assert.deepEqual(commandsOf(out, 'ray'), [])
    apply(world, out)
    confirmMeshes(world, out)
    world.nowMs += 1_000

    out = reconcile(world)
    assert.deepEqual(
      out.commands.map((command) => [command.deviceId, command.kind, rayOf(command).role]),
      [['dev_0', 'ray', 'head']],
      'only the head, and no mesh again',
    )
    apply(world, out)
    world.nowMs += 1_000
    assert.deepEqual(reconcile(world), nothing, 'waiting for Ray on the head')

    confirmRay(world, [0])
    world.alive = new Set([addressOf(0)])
    out = reconcile(world)
    assert.deepEqual(out.nodePatches, [
      { deviceId: 'dev_0', patch: { phase: 'ray_joined', phaseReason: 'Ray reports the node alive' } },
    ])
    assert.deepEqual(
      out.commands.map((command) => [command.deviceId, command.kind, rayOf(command).role]),
      [
        ['dev_1', 'ray', 'worker'],
        ['dev_2', 'ray', 'worker'],
      ],
    )
    apply(world, out)
    world.nowMs += 1_000

    confirmRay(world, [1, 2])
    world.alive = new Set([0, 1, 2].map((index) => addressOf(index)))
    out = reconcile(world)
    assert.deepEqual(
      out.nodePatches.map((patch) => patch.deviceId),
      ['dev_1', 'dev_2'],
    )
    assert.equal(out.clusterPatch?.state, 'ready')
    assert.equal(out.clusterPatch?.readyAtMs, world.nowMs)
    apply(world, out)

    for (const laterMs of [1_000, policy.resendAfterMs, hourMs]) {
      world.nowMs = world.cluster.readyAtMs! + laterMs
      assert.deepEqual(reconcile(world), nothing, `${laterMs} ms after ready`)
    }
  })
})

describe('reconcileCluster: losing and replacing nodes', () => {
  it('loses a node whose worker has been offline for nodeLostAfterMs, and asks for a replacement', () => {
    const world = bringUp()
    world.nowMs += 60_000
    world.offlineSinceMs.set('dev_2', world.nowMs - policy.nodeLostAfterMs)
    const out = reconcile(world)
    assert.deepEqual(out.releases, [
      {
        deviceId: 'dev_2',
        phase: 'lost',
        reason: 'its worker has been offline for 30 s',
        servedUntilMs: world.nowMs - policy.nodeLostAfterMs,
      },
    ])
    assert.deepEqual(
      out.events.find((event) => event.kind === 'node_lost'),
      {
        clusterId,
        atMs: world.nowMs,
        kind: 'node_lost',
        deviceId: 'dev_2',
        message: `node ${addressOf(2)} lost: its worker has been offline for 30 s`,
      },
    )
    assert.equal(out.replacementsNeeded, 1)
    assert.deepEqual(out.clusterPatch, { state: 'provisioning', stateReason: 'replacing 1 node' })
    assert.equal(out.resetAlive, false, 'a worker, not the head')
    assert.deepEqual(devicesOf(out.commands), ['dev_0', 'dev_1'], 'nothing to the offline device')
    for (const command of commandsOf(out, 'mesh'))
      assert.ok(meshOf(command).peers.every((peer) => peer.overlayAddress !== addressOf(2)))
  })

  it('keeps a node whose worker has been offline for less than nodeLostAfterMs', () => {
    const world = bringUp()
    world.nowMs += 60_000
    world.offlineSinceMs.set('dev_2', world.nowMs - policy.nodeLostAfterMs + 1)
    assert.deepEqual(reconcile(world), nothing)
  })

  it('loses a joined node missing from the alive set, and tells it to release', () => {
    const world = bringUp()
    world.nowMs += 60_000
    world.alive = new Set([addressOf(0), addressOf(1)])
    const out = reconcile(world)
    assert.deepEqual(out.releases, [
      { deviceId: 'dev_2', phase: 'lost', reason: 'Ray reports the node dead' },
    ])
    assert.deepEqual(eventKinds(out), ['node_lost', 'state_changed'])
    assert.equal(out.replacementsNeeded, 1)
    const release = commandTo(out, 'dev_2', 'release')
    assert.equal(release?.signature, 'release')
    assert.deepEqual(releaseOf(release), {
      type: 'cluster_release',
      clusterId,
      reason: 'node lost: Ray reports the node dead',
    })
    assert.deepEqual(
      out.commands.filter((command) => command.deviceId === 'dev_2'),
      [release],
    )
  })

  it('loses no joined node before the head has reported an alive set', () => {
    const world = bringUp()
    world.nowMs += 60_000
    world.alive = undefined
    assert.deepEqual(reconcile(world), nothing)
  })

  it('makes the lowest remaining node the head when the head is lost, and restarts Ray', () => {
    const world = bringUp(4)
    world.nowMs += 60_000
    world.nodes = [...world.nodes].reverse() // the new head is chosen by index, not by order
    world.offlineSinceMs.set('dev_0', world.nowMs - policy.nodeLostAfterMs)
    const out = reconcile(world)
    assert.deepEqual(
      out.releases.map((release) => [release.deviceId, release.phase]),
      [['dev_0', 'lost']],
    )
    assert.equal(out.resetAlive, true)
    const restarting = { phase: 'mesh_up', phaseReason: 'Ray restarting' }
    assert.deepEqual(
      [...out.nodePatches].sort((a, b) => (a.deviceId < b.deviceId ? -1 : 1)),
      [
        { deviceId: 'dev_1', patch: { role: 'head', ...restarting } },
        { deviceId: 'dev_2', patch: { role: 'worker', ...restarting } },
        { deviceId: 'dev_3', patch: { role: 'worker', ...restarting } },
      ],
    )
    assert.deepEqual(
      out.events.find((event) => event.kind === 'head_changed'),
      {
        clusterId,
        atMs: world.nowMs,
        kind: 'head_changed',
        deviceId: 'dev_1',
        message: `node ${addressOf(1)} is the new head; Ray restarts on every node`,
      },
    )
    assert.deepEqual(commandsOf(out, 'ray'), [], 'the old alive set means nothing, and the mesh changed')
    assert.equal(out.replacementsNeeded, 1)
    assert.deepEqual(out.clusterPatch, { state: 'provisioning', stateReason: 'replacing 1 node' })

    // Ray comes back up against the new head.
    apply(world, out)
    confirmMeshes(world, out)
    world.nowMs += 1_000
    const restarted = reconcile(world)
    assert.deepEqual(
      restarted.commands.map((command) => [
        command.deviceId,
        rayOf(command).role,
        rayOf(command).headAddress,
      ]),
      [['dev_1', 'head', addressOf(1)]],
    )
    apply(world, restarted)
    world.alive = new Set([addressOf(1)])
    const workers = reconcile(world)
    assert.deepEqual(
      workers.commands
        .map((command) => [command.deviceId, rayOf(command).role, rayOf(command).headAddress])
        .sort(),
      [
        ['dev_2', 'worker', addressOf(1)],
        ['dev_3', 'worker', addressOf(1)],
      ],
    )
  })

  it('loses a node added after ready that is not in Ray within nodeJoinTimeoutMs', () => {
    const world = bringUp()
    world.nowMs += 60_000
    world.nodes = [...world.nodes, nodeRecord(3, 'mesh_up', { joinedAtMs: world.nowMs })]
    // A replacement put the cluster back to provisioning when it was reserved.
    world.cluster = { ...world.cluster, nodeCount: 4, state: 'provisioning', stateChangedAtMs: world.nowMs }
    world.nowMs += policy.nodeJoinTimeoutMs
    assert.deepEqual(reconcile(world).releases, [])
    world.nowMs += 1
    assert.deepEqual(reconcile(world).releases, [
      { deviceId: 'dev_3', phase: 'lost', reason: 'not in Ray within 180 s' },
    ])
  })

  it('loses a node of a cluster never ready that is not in Ray within nodeJoinTimeoutMs', () => {
    const world = worldOf(
      clusterRecord({ state: 'provisioning' }),
      [nodeRecord(0, 'ray_joined'), nodeRecord(1, 'keyed')],
      createdAtMs + policy.nodeJoinTimeoutMs + 1,
    )
    const out = reconcile(world)
    assert.deepEqual(
      out.releases.map((release) => release.deviceId),
      ['dev_1'],
    )
    assert.equal(out.replacementsNeeded, 2, 'nodeCount is 3')
  })

  it('gives a node added after ready time to rejoin Ray after a head change', () => {
    const readyAtMs = createdAtMs + 60_000
    const world = worldOf(
      clusterRecord({ state: 'ready', readyAtMs, expiresAtMs: readyAtMs + 2 * hourMs }),
      [
        nodeRecord(0, 'ray_joined'),
        nodeRecord(1, 'ray_joined'),
        nodeRecord(2, 'lost'),
        nodeRecord(3, 'ray_joined', { joinedAtMs: readyAtMs + 60_000 }),
      ],
      readyAtMs + hourMs,
    )
    world.alive = new Set([0, 1, 3].map((index) => addressOf(index)))
    world.offlineSinceMs.set('dev_0', world.nowMs - policy.nodeLostAfterMs)
    const headLost = reconcile(world)
    assert.equal(headLost.resetAlive, true)
    apply(world, headLost)
    world.nowMs += 1_000
    assert.deepEqual(reconcile(world).releases, [], 'nobody was given a chance to rejoin yet')
  })
})

describe('reconcileCluster: ending', () => {
  it("terminates on the renter's request: release commands to online nodes, offline ones released", () => {
    const world = bringUp()
    world.nowMs += 60_000
    world.cluster = { ...world.cluster, desired: 'terminated' }
    world.offlineSinceMs.set('dev_2', world.nowMs - 1)
    const out = reconcile(world)
    assert.deepEqual(out.clusterPatch, {
      state: 'terminating',
      stateReason: 'terminated by the renter',
      desired: 'terminated',
    })
    assert.deepEqual(out.events, [
      {
        clusterId,
        atMs: world.nowMs,
        kind: 'state_changed',
        deviceId: null,
        message: 'terminating: terminated by the renter',
      },
      {
        clusterId,
        atMs: world.nowMs,
        kind: 'node_released',
        deviceId: 'dev_2',
        message: 'recorded as released: its worker is offline',
      },
    ])
    assert.deepEqual(out.releases, [
      {
        deviceId: 'dev_2',
        phase: 'released',
        reason: 'its worker is offline',
        servedUntilMs: world.offlineSinceMs.get('dev_2'),
      },
    ])
    assert.deepEqual(
      out.commands.map((command) => [command.deviceId, command.kind, command.signature]),
      [
        ['dev_0', 'release', 'release'],
        ['dev_1', 'release', 'release'],
      ],
    )
    assert.equal(out.replacementsNeeded, 0)
  })

  it('tells nodes the reason the cluster is terminating', () => {
    const world = bringUp()
    world.nowMs += 60_000
    world.cluster = { ...world.cluster, desired: 'terminated' }
    const out = reconcile(world)
    assert.equal(releaseOf(commandTo(out, 'dev_0', 'release')).reason, 'terminated by the renter')
  })

  it('resends release commands after resendAfterMs, and records nodes released after releaseTimeoutMs', () => {
    const world = bringUp()
    world.nowMs += 60_000
    world.cluster = { ...world.cluster, desired: 'terminated' }
    apply(world, reconcile(world))
    const terminatingAtMs = world.nowMs
    assert.equal(world.cluster.state, 'terminating')

    world.nowMs = terminatingAtMs + policy.resendAfterMs - 1
    assert.deepEqual(reconcile(world), nothing)
    world.nowMs = terminatingAtMs + policy.resendAfterMs
    const resent = reconcile(world)
    assert.deepEqual(devicesOf(resent.commands), ['dev_0', 'dev_1', 'dev_2'])
    assert.equal(releaseOf(resent.commands[0]).reason, 'terminated by the renter')
    assert.equal(resent.clusterPatch, undefined)
    apply(world, resent)

    world.nodes = world.nodes.map((node) =>
      node.deviceId === 'dev_1' ? { ...node, phase: 'released', leftAtMs: world.nowMs } : node,
    )
    world.nowMs = terminatingAtMs + policy.releaseTimeoutMs
    const atLimit = reconcile(world)
    assert.deepEqual(atLimit.releases, [])
    assert.deepEqual(devicesOf(atLimit.commands), ['dev_0', 'dev_2'])

    world.nowMs += 1
    const out = reconcile(world)
    assert.deepEqual(out.commands, [])
    assert.deepEqual(out.releases, [
      { deviceId: 'dev_0', phase: 'released', reason: 'did not confirm its release in time' },
      { deviceId: 'dev_2', phase: 'released', reason: 'did not confirm its release in time' },
    ])
    assert.deepEqual(eventKinds(out), ['node_released', 'node_released', 'state_changed'])
    assert.deepEqual(out.clusterPatch, { state: 'terminated', endedAtMs: world.nowMs })
  })

  it('is terminated once no active node is left', () => {
    const world = worldOf(
      clusterRecord({ state: 'terminating', desired: 'terminated', readyAtMs: createdAtMs }),
      [nodeRecord(0, 'released'), nodeRecord(1, 'lost')],
      createdAtMs + hourMs,
    )
    world.cluster = { ...world.cluster, updatedAtMs: world.nowMs - 1_000 }
    const out = reconcile(world)
    assert.deepEqual(out.clusterPatch, { state: 'terminated', endedAtMs: world.nowMs })
    assert.deepEqual(out.events, [
      {
        clusterId,
        atMs: world.nowMs,
        kind: 'state_changed',
        deviceId: null,
        message: 'terminated: every node released',
      },
    ])
    assert.deepEqual(out.commands, [])
  })

  it('goes straight to terminated when every node is offline', () => {
    const world = bringUp()
    world.nowMs += 60_000
    world.cluster = { ...world.cluster, desired: 'terminated' }
    for (const index of [0, 1, 2]) world.offlineSinceMs.set(deviceOf(index), world.nowMs - 1)
    const out = reconcile(world)
    assert.equal(out.releases.length, 3)
    assert.deepEqual(out.commands, [])
    assert.deepEqual(out.clusterPatch, {
      state: 'terminated',
      stateReason: 'terminated by the renter',
      desired: 'terminated',
      endedAtMs: world.nowMs,
    })
  })

  it('terminates when the paid duration ends, naming it', () => {
    const world = bringUp()
    world.nowMs = world.cluster.expiresAtMs! - 1
    assert.deepEqual(reconcile(world), nothing)
    world.nowMs = world.cluster.expiresAtMs!
    const out = reconcile(world)
    assert.deepEqual(out.clusterPatch, {
      state: 'terminating',
      stateReason: 'its duration of 2 h ended',
      desired: 'terminated',
    })
    assert.deepEqual(devicesOf(commandsOf(out, 'release')), ['dev_0', 'dev_1', 'dev_2'])

    world.cluster = { ...world.cluster, durationMs: 90 * 60_000 }
    assert.equal(reconcile(world).clusterPatch?.stateReason, 'its duration of 1.50 h ended')
  })

  it('fails a cluster never ready within provisionTimeoutMs, telling online nodes to release', () => {
    const joinedAtMs = createdAtMs + policy.provisionTimeoutMs - 10_000 // recent: no join timeout
    const world = worldOf(
      clusterRecord({ state: 'provisioning' }),
      [
        nodeRecord(0, 'keyed', { joinedAtMs }),
        nodeRecord(1, 'keyed', { joinedAtMs }),
        nodeRecord(2, 'reserved', { joinedAtMs }),
        nodeRecord(3, 'lost'),
      ],
      createdAtMs + policy.provisionTimeoutMs,
    )
    world.offlineSinceMs.set('dev_1', world.nowMs - 1)
    world.sent.set('dev_0|release', { signature: 'release', atMs: world.nowMs - 1 })
    assert.notEqual(reconcile(world).clusterPatch?.state, 'failed', 'at the limit')

    world.nowMs += 1
    const out = reconcile(world)
    const reason = 'not ready within 600 s (2 keyed, 1 reserved)'
    assert.deepEqual(out.clusterPatch, { state: 'failed', stateReason: reason, endedAtMs: world.nowMs })
    assert.deepEqual(
      out.commands.map((command) => [command.deviceId, command.kind, releaseOf(command).reason]),
      [
        ['dev_0', 'release', reason],
        ['dev_2', 'release', reason],
      ],
    )
    assert.deepEqual(out.releases, [], 'the store releases the devices with the cluster')
    assert.deepEqual(eventKinds(out), ['state_changed'])
    assert.equal(out.events[0]?.message, `failed: ${reason}`)
    assert.equal(out.replacementsNeeded, 0)
  })

  it('never fails a cluster that was ready once for taking long', () => {
    const world = bringUp()
    world.nowMs = createdAtMs + policy.provisionTimeoutMs + 60_000
    assert.deepEqual(reconcile(world), nothing)
  })

  it('does nothing at all for a terminated or failed cluster, or one without a subnet', () => {
    for (const overrides of [
      { state: 'terminated' as const },
      { state: 'failed' as const },
      { state: 'provisioning' as const, subnetIndex: null },
    ]) {
      const world = worldOf(
        clusterRecord({ ...overrides, desired: 'terminated', expiresAtMs: createdAtMs }),
        [nodeRecord(0, 'ray_joined'), nodeRecord(1, 'reserved'), nodeRecord(2, 'keyed')],
        createdAtMs + 10 * hourMs,
      )
      world.offlineSinceMs.set('dev_0', createdAtMs)
      world.alive = new Set()
      assert.deepEqual(reconcile(world), nothing, JSON.stringify(overrides))
    }
  })
})

// --- properties ----------------------------------------------------------------------------------------------

const nowMs = 100_000_000
/** One of `choices`, each as likely as its weight: most random clusters should be running ones. */
const weighted = <T>(...choices: [T, number][]) =>
  fc.oneof(...choices.map(([value, weight]) => ({ arbitrary: fc.constant(value), weight })))
const sentArbitrary = fc.option(
  fc.record({ current: weighted([true, 3], [false, 1]), agoMs: fc.constantFrom(0, 4_999, 5_000, 60_000) }),
  { nil: undefined },
)
const nodeSpecArbitrary = fc.record({
  phase: weighted<ClusterNodePhase>(
    ['reserved', 1],
    ['keyed', 2],
    ['mesh_up', 3],
    ['ray_joined', 3],
    ['lost', 1],
    ['released', 1],
  ),
  indexGap: weighted([0, 4], [1, 1], [2, 1]),
  offlineForMs: fc.oneof(
    { arbitrary: fc.constant(undefined), weight: 6 },
    { arbitrary: fc.constantFrom(0, 29_999, 30_000, 120_000), weight: 1 },
  ),
  inAliveSet: weighted([true, 3], [false, 1]),
  joinedAgoMs: weighted([0, 2], [179_999, 2], [180_001, 1], [3 * hourMs, 1]),
  sent: fc.record({
    prepare: sentArbitrary,
    mesh: sentArbitrary,
    ray: sentArbitrary,
    release: sentArbitrary,
  }),
  meshConfirmed: weighted([true, 3], [false, 1]),
})
const clusterSpecArbitrary = fc.record({
  state: weighted<ClusterState>(
    ['pending', 1],
    ['provisioning', 3],
    ['ready', 3],
    ['terminating', 1],
    ['terminated', 1],
    ['failed', 1],
  ),
  desired: weighted<ClusterDesired>(['running', 5], ['terminated', 1]),
  nodeCount: fc.integer({ min: 1, max: 8 }),
  ageMs: weighted([10_000, 3], [600_000, 1], [600_001, 1], [4 * hourMs, 1]),
  readyAgoMs: fc.option(weighted([1_000, 2], [hourMs / 2, 2], [2 * hourMs, 1]), { nil: undefined }),
  durationMs: fc.constantFrom(hourMs, 2 * hourMs),
  updatedAgoMs: fc.constantFrom(0, 30_000, 30_001),
  aliveReported: weighted([true, 3], [false, 1]),
  strayAliveAddress: fc.boolean(),
  headPosition: fc.option(fc.integer({ min: 0, max: 7 }), { nil: undefined }),
  subnetIndex: fc.integer({ min: 0, max: 16_383 }),
})
const scenarioArbitrary = fc.record({
  cluster: clusterSpecArbitrary,
  nodes: fc.array(nodeSpecArbitrary, { minLength: 1, maxLength: 8 }),
})
type Scenario = typeof scenarioArbitrary extends fc.Arbitrary<infer T> ? T : never

/**
 * A random cluster as the controller could hold it: at most one head, keys on every node past reserved,
 * and commands last sent with the current signature or an older one. Mesh revisions are not known before
 * a first decision, so it is built twice: the second time with the revisions the first decision chose.
 */
function worldFromScenario({ cluster: spec, nodes: specs }: Scenario): World {
  const readyAtMs =
    spec.state === 'pending' || spec.readyAgoMs === undefined
      ? null
      : Math.max(nowMs - spec.ageMs, nowMs - spec.readyAgoMs)
  let nodeIndex = -1
  const nodes = specs.map((nodeSpec, position) => {
    nodeIndex += 1 + nodeSpec.indexGap
    return nodeRecord(nodeIndex, nodeSpec.phase, {
      role: position === spec.headPosition ? 'head' : 'worker',
      wgPublicKey: nodeSpec.phase === 'reserved' ? null : publicKeyOf(nodeIndex),
      endpoint: nodeSpec.phase === 'reserved' ? null : endpointOf(nodeIndex),
      joinedAtMs: nowMs - nodeSpec.joinedAgoMs,
      leftAtMs: nodeSpec.phase === 'lost' || nodeSpec.phase === 'released' ? nowMs - 1_000 : null,
    })
  })
  const world = worldOf(
    clusterRecord({
      state: spec.state,
      desired: spec.desired,
      nodeCount: spec.nodeCount,
      durationMs: spec.durationMs,
      subnetIndex: spec.subnetIndex,
      createdAtMs: nowMs - spec.ageMs,
      readyAtMs,
      expiresAtMs: readyAtMs === null ? null : readyAtMs + spec.durationMs,
      updatedAtMs: nowMs - spec.updatedAgoMs,
    }),
    nodes,
    nowMs,
  )
  const address = (node: ClusterNodeRecord) => addressOf(node.nodeIndex, spec.subnetIndex)
  if (spec.aliveReported) {
    world.alive = new Set(nodes.filter((_, position) => specs[position]!.inAliveSet).map(address))
    if (spec.strayAliveAddress) world.alive.add(addressOf(250, spec.subnetIndex))
  }
  const head = nodes.find((node) => node.role === 'head')
  const setSent = (revisions: ReadonlyMap<string, string>) => {
    world.sent.clear()
    world.confirmedMesh.clear()
    nodes.forEach((node, position) => {
      const nodeSpec = specs[position]!
      if (nodeSpec.offlineForMs !== undefined)
        world.offlineSinceMs.set(node.deviceId, nowMs - nodeSpec.offlineForMs)
      const revision = revisions.get(node.deviceId)
      const current: Record<CommandKind, string | undefined> = {
        prepare: 'prepare',
        release: 'release',
        mesh: revision,
        ray: head && `${node.role}:${address(head)}`,
      }
      for (const kind of ['prepare', 'mesh', 'ray', 'release'] as const) {
        const sent = nodeSpec.sent[kind]
        if (sent)
          world.sent.set(`${node.deviceId}|${kind}`, {
            signature: (sent.current && current[kind]) || 'an-older-signature',
            atMs: nowMs - sent.agoMs,
          })
      }
      if (nodeSpec.meshConfirmed && revision) world.confirmedMesh.set(node.deviceId, revision)
    })
  }
  setSent(new Map())
  const first = reconcile(world)
  setSent(new Map(commandsOf(first, 'mesh').map((command) => [command.deviceId, command.signature])))
  return world
}

type Branch = 'terminal' | 'ending' | 'failing' | 'running'

/** Which of the lifecycle's branches the cluster is in, from the records alone. */
function branchOf({ cluster, nowMs: now }: World): Branch {
  if (cluster.state === 'terminated' || cluster.state === 'failed' || cluster.subnetIndex === null)
    return 'terminal'
  const expired = cluster.expiresAtMs !== null && now >= cluster.expiresAtMs
  if (cluster.state === 'terminating' || cluster.desired === 'terminated' || expired) return 'ending'
  if (cluster.readyAtMs === null && now - cluster.createdAtMs > policy.provisionTimeoutMs) return 'failing'
  return 'running'
}

const propertyRuns = { numRuns: 500 }

describe('reconcileCluster: properties over random clusters', () => {
  it('commands only active nodes, and a node lost in the same call only to release', () => {
    fc.assert(
      fc.property(scenarioArbitrary, (scenario) => {
        const world = worldFromScenario(scenario)
        const out = reconcile(world)
        const active = new Set(world.nodes.filter(isActiveNode).map((node) => node.deviceId))
        const released = new Map(out.releases.map((release) => [release.deviceId, release.phase]))
        assert.equal(released.size, out.releases.length, 'each node released once')
        for (const deviceId of released.keys()) assert.ok(active.has(deviceId), `${deviceId} released`)
        const pairs = new Set<string>()
        for (const command of out.commands) {
          assert.ok(active.has(command.deviceId), `${command.kind} to inactive ${command.deviceId}`)
          if (released.has(command.deviceId)) {
            assert.equal(command.kind, 'release')
            assert.equal(released.get(command.deviceId), 'lost')
          }
          assert.equal(command.message.clusterId, clusterId)
          const pair = `${command.deviceId}|${command.kind}`
          assert.ok(!pairs.has(pair), `two ${command.kind} commands to ${command.deviceId}`)
          pairs.add(pair)
        }
        for (const { deviceId } of out.nodePatches)
          assert.ok(active.has(deviceId) && !released.has(deviceId), `patched ${deviceId}`)
      }),
      propertyRuns,
    )
  })

  it('never sends a command again before resendAfterMs, nor a confirmed one', () => {
    fc.assert(
      fc.property(scenarioArbitrary, (scenario) => {
        const world = worldFromScenario(scenario)
        const out = reconcile(world)
        const branch = branchOf(world)
        if (branch === 'failing') return // a one-off: every online node is told to release
        const released = new Set(out.releases.map((release) => release.deviceId))
        for (const command of out.commands) {
          if (released.has(command.deviceId)) continue // a lost node's release goes out once
          const last = world.sent.get(`${command.deviceId}|${command.kind}`)
          if (!last || last.signature !== command.signature) continue
          assert.ok(world.nowMs - last.atMs >= policy.resendAfterMs, `${command.kind} resent too soon`)
          if (command.kind === 'mesh')
            assert.notEqual(world.confirmedMesh.get(command.deviceId), command.signature)
        }
      }),
      propertyRuns,
    )
  })

  it('never lists the receiving node, or a lost or released node, as a mesh peer', () => {
    fc.assert(
      fc.property(scenarioArbitrary, (scenario) => {
        const world = worldFromScenario(scenario)
        const out = reconcile(world)
        const address = (node: ClusterNodeRecord) => addressOf(node.nodeIndex, world.cluster.subnetIndex!)
        const remaining = nodesAfter(world.nodes, out, world.nowMs).filter(isActiveNode)
        for (const command of commandsOf(out, 'mesh')) {
          const mesh = meshOf(command)
          const self = remaining.find((node) => node.deviceId === command.deviceId)
          assert.ok(self, `mesh to ${command.deviceId}, not an active node`)
          assert.equal(mesh.overlayAddress, address(self))
          assert.equal(mesh.revision, command.signature)
          const expected = remaining
            .filter((node) => node.deviceId !== command.deviceId)
            .map((node) => `${node.wgPublicKey} ${node.endpoint} ${address(node)}`)
            .sort()
          const peers = mesh.peers.map((peer) => `${peer.publicKey} ${peer.endpoint} ${peer.overlayAddress}`)
          assert.deepEqual([...peers].sort(), expected)
          assert.ok(!peers.some((peer) => peer.startsWith(`${self.wgPublicKey} `)), 'itself as a peer')
        }
      }),
      propertyRuns,
    )
  })

  it('asks for nodeCount minus the remaining active nodes as replacements, never fewer than none', () => {
    fc.assert(
      fc.property(scenarioArbitrary, (scenario) => {
        const world = worldFromScenario(scenario)
        const out = reconcile(world)
        const lost = new Set(out.releases.map((release) => release.deviceId))
        const remaining = world.nodes.filter((node) => isActiveNode(node) && !lost.has(node.deviceId)).length
        assert.ok(out.replacementsNeeded >= 0)
        if (branchOf(world) === 'running')
          assert.equal(out.replacementsNeeded, Math.max(0, world.cluster.nodeCount - remaining))
        else assert.equal(out.replacementsNeeded, 0, 'nothing is replaced in a cluster that is ending')
      }),
      propertyRuns,
    )
  })

  it('decides the same way given the same input', () => {
    fc.assert(
      fc.property(scenarioArbitrary, (scenario) => {
        const world = worldFromScenario(scenario)
        assert.deepEqual(reconcile(world), reconcile(world))
        assert.deepEqual(reconcile(world), reconcile(worldFromScenario(scenario)))
      }),
      propertyRuns,
    )
  })

  it('leaves at most one head among active nodes, and exactly one while the cluster runs', () => {
    fc.assert(
      fc.property(scenarioArbitrary, (scenario) => {
        const world = worldFromScenario(scenario)
        const out = reconcile(world)
        const remaining = nodesAfter(world.nodes, out, world.nowMs).filter(isActiveNode)
        const heads = remaining.filter((node) => node.role === 'head')
        assert.ok(heads.length <= 1, `${heads.length} heads`)
        if (branchOf(world) === 'running' && remaining.length > 0) assert.equal(heads.length, 1)
        for (const command of commandsOf(out, 'ray')) {
          const ray = rayOf(command)
          assert.equal(ray.headAddress, addressOf(heads[0]!.nodeIndex, world.cluster.subnetIndex!))
          assert.equal(ray.role, command.deviceId === heads[0]!.deviceId ? 'head' : 'worker')
        }
      }),
      propertyRuns,
    )
  })

  it('writes nothing for a terminal cluster, and stamps every event with the cluster and now', () => {
    fc.assert(
      fc.property(scenarioArbitrary, (scenario) => {
        const world = worldFromScenario(scenario)
        const out = reconcile(world)
        if (branchOf(world) === 'terminal') assert.deepEqual(out, nothing)
        for (const event of out.events) {
          assert.equal(event.clusterId, clusterId)
          assert.equal(event.atMs, world.nowMs)
        }
      }),
      propertyRuns,
    )
  })
})
