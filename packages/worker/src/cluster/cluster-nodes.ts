import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import {
  maxJobLogChunkBytes,
  type ClusterCommandMessage,
  type ClusterMeshMessage,
  type ClusterRayMessage,
  type WorkerMessage,
} from '@gpumesh/protocol'
import type { WorkerLogger } from '../logger.ts'
import { createMeshInterface, generateWireguardKeyPair, type MeshInterface } from '../mesh/wireguard.ts'
import { startClusterHeadAgent, type ClusterHeadAgent } from '../ray/cluster-head-agent.ts'
import { createRayNode, type RayNode } from '../ray/ray-node.ts'
import { cleanUpClusterNode, clusterNodeTempDir, type ClusterNodeFootprint } from './leftovers.ts'

// The cluster nodes this machine runs. The coordinator decides and this carries out: a key pair and an open
// WireGuard interface, then the overlay address and peers, then Ray. Every command is idempotent — a
// coordinator that restarted sends them again — and commands for one cluster run one at a time, in order.

export type ClusterNodesInit = {
  readonly pythonPath: string
  readonly stateDir: string
  readonly runAs?: { readonly uid: number; readonly gid: number }
  readonly endpointHost?: string
  /** wireguard-go as the supplier installed it (default: found on PATH). */
  readonly wireguardGoCommand?: string
  readonly numCpus?: number
  readonly objectStoreMemoryBytes?: number
  /** See MeshInterfaceInit.netnsMountNamespace. */
  readonly netnsMountNamespace?: string
  readonly logger: WorkerLogger
}

export type ClusterNodes = {
  /** Acts on one command; replies go out through `send` (the current link, or nowhere while it is down). */
  handle(message: ClusterCommandMessage): void
  /** Clusters with a node here now. */
  heldClusterIds(): string[]
  /** Tears every node down (the worker is stopping). */
  releaseAll(reason: string): Promise<void>
  /** Removes what a previous run of the agent left behind (it crashed or was killed). */
  cleanUpLeftovers(): Promise<void>
}

type NodeState = {
  readonly footprint: ClusterNodeFootprint
  readonly mesh: MeshInterface
  readonly publicKey: string
  overlayAddress?: string
  ray?: { readonly node: RayNode; readonly headAddress: string; readonly role: 'head' | 'worker' }
  headAgent?: ClusterHeadAgent
  lastAliveReport?: string
}

export function createClusterNodes(
  init: ClusterNodesInit,
  send: (message: WorkerMessage) => void,
): ClusterNodes {
  const { logger } = init
  const nodes = new Map<string, NodeState>()
  const queues = new Map<string, Promise<void>>()
  const footprintFile = join(init.stateDir, 'cluster-nodes.json')
  const keyDir = join(init.stateDir, 'mesh-keys')

  const saveFootprints = () => {
    mkdirSync(init.stateDir, { recursive: true, mode: 0o700 })
    const footprints = [...nodes.values()].map((node) => node.footprint)
    writeFileSync(footprintFile, `${JSON.stringify(footprints, null, 2)}\n`, { mode: 0o600 })
  }

  const failed = (clusterId: string, detail: string) => {
    logger.error('cluster node failed', { clusterId, detail })
    send({ type: 'cluster_node_status', clusterId, phase: 'failed', detail: detail.slice(0, 2048) })
  }

  const stopRay = async (node: NodeState) => {
    await node.headAgent?.close()
    node.headAgent = undefined
    node.lastAliveReport = undefined
    const ray = node.ray
    node.ray = undefined
    await ray?.node.stop()
  }

  const release = async (clusterId: string, reason: string) => {
    const node = nodes.get(clusterId)
    if (node) {
      logger.info('releasing cluster node', { clusterId, reason })
      await stopRay(node).catch((error: unknown) =>
        logger.warn('stopping Ray failed', { clusterId, error: String(error) }),
      )
      await node.mesh.stop()
      rmSync(node.footprint.rayTempDir, { recursive: true, force: true })
      nodes.delete(clusterId)
      saveFootprints()
    }
    send({ type: 'cluster_node_status', clusterId, phase: 'released', detail: reason })
  }

  const prepare = async (clusterId: string, interfaceName: string, namespace: string) => {
    let node = nodes.get(clusterId)
    if (!node) {
      const keyPair = generateWireguardKeyPair()
      const mesh = createMeshInterface({
        interfaceName,
        namespace,
        keyPair,
        keyDir,
        ...(init.wireguardGoCommand ? { wireguardGoCommand: init.wireguardGoCommand } : {}),
        ...(init.netnsMountNamespace ? { netnsMountNamespace: init.netnsMountNamespace } : {}),
      })
      node = {
        footprint: { clusterId, namespace, interfaceName, rayTempDir: clusterNodeTempDir(namespace) },
        mesh,
        publicKey: keyPair.publicKey,
      }
      nodes.set(clusterId, node)
      saveFootprints()
      try {
        await mesh.open()
      } catch (error) {
        await mesh.stop()
        nodes.delete(clusterId)
        saveFootprints()
        throw error
      }
    }
    send({
      type: 'cluster_node_key',
      clusterId,
      publicKey: node.publicKey,
      listenPort: node.mesh.listenPort!,
      ...(init.endpointHost ? { endpointHost: init.endpointHost } : {}),
    })
  }

  const configureMesh = async (message: ClusterMeshMessage) => {
    const node = nodes.get(message.clusterId)
    if (!node) return failed(message.clusterId, 'mesh configuration for a node this machine has not prepared')
    await node.mesh.configure(message.overlayAddress, message.prefixLength, message.peers)
    node.overlayAddress = message.overlayAddress
    send({
      type: 'cluster_node_status',
      clusterId: message.clusterId,
      phase: 'mesh_up',
      detail: `${message.overlayAddress}, ${message.peers.length} peers`,
      meshRevision: message.revision,
    })
  }

  const startRay = async (message: ClusterRayMessage) => {
    const { clusterId } = message
    const node = nodes.get(clusterId)
    if (!node?.overlayAddress) return failed(clusterId, 'Ray asked for before the mesh is up')
    if (node.ray && node.ray.headAddress === message.headAddress && node.ray.role === message.role) {
      send({ type: 'cluster_node_status', clusterId, phase: 'ray_started', detail: 'already running' })
      if (node.lastAliveReport !== undefined)
        send({ type: 'cluster_ray_nodes', clusterId, alive: JSON.parse(node.lastAliveReport) })
      return
    }
    // A new head (the old one was lost): this node's Ray must join it afresh.
    await stopRay(node)
    const rayNode = createRayNode({
      pythonPath: init.pythonPath,
      namespace: node.footprint.namespace,
      nodeAddress: node.overlayAddress,
      gcsPort: message.gcsPort,
      ...(message.role === 'worker' ? { headAddress: message.headAddress } : {}),
      numCpus: init.numCpus ?? availableParallelism(),
      numGpus: message.numGpus,
      tempDir: node.footprint.rayTempDir,
      ...(init.objectStoreMemoryBytes ? { objectStoreMemoryBytes: init.objectStoreMemoryBytes } : {}),
      ...(init.runAs ? { runAs: init.runAs } : {}),
      onExit: (detail) => {
        if (nodes.get(clusterId)?.ray?.node === rayNode) failed(clusterId, detail)
      },
    })
    node.ray = { node: rayNode, headAddress: message.headAddress, role: message.role }
    await rayNode.start()
    send({ type: 'cluster_node_status', clusterId, phase: 'ray_started', detail: message.role })
    if (message.role === 'head') startHeadAgent(clusterId, node, message)
  }

  const startHeadAgent = (clusterId: string, node: NodeState, message: ClusterRayMessage) => {
    const agent = startClusterHeadAgent(
      {
        pythonPath: init.pythonPath,
        namespace: node.footprint.namespace,
        headAddress: message.headAddress,
        gcsPort: message.gcsPort,
        workDir: join(node.footprint.rayTempDir, 'jobs'),
        ...(init.runAs ? { runAs: init.runAs } : {}),
      },
      {
        onNodes: (alive) => {
          node.lastAliveReport = JSON.stringify(alive)
          send({ type: 'cluster_ray_nodes', clusterId, alive: [...alive] })
        },
        onJobLog: (jobId, text) => {
          for (const chunk of splitUtf8(text, maxJobLogChunkBytes))
            send({ type: 'cluster_job_log', clusterId, jobId, text: chunk })
        },
        onJobStatus: (jobId, status, statusMessage, exitCode) =>
          send({
            type: 'cluster_job_status',
            clusterId,
            jobId,
            status,
            message: statusMessage.slice(0, 4096),
            exitCode,
          }),
        onError: (errorMessage, jobId) => {
          logger.warn('cluster head agent reported an error', { clusterId, jobId, error: errorMessage })
          if (jobId)
            send({
              type: 'cluster_job_status',
              clusterId,
              jobId,
              status: 'failed',
              message: errorMessage.slice(0, 4096),
              exitCode: null,
            })
        },
        onExit: (detail) => {
          if (node.headAgent === agent) {
            node.headAgent = undefined
            failed(clusterId, `head agent exited: ${detail}`)
          }
        },
      },
    )
    node.headAgent = agent
    agent.ready.catch((error: unknown) => {
      if (node.headAgent === agent) failed(clusterId, `head agent could not reach Ray: ${String(error)}`)
    })
  }

  const act = async (message: ClusterCommandMessage) => {
    switch (message.type) {
      case 'cluster_node_prepare':
        return prepare(message.clusterId, message.interfaceName, message.namespace)
      case 'cluster_mesh':
        return configureMesh(message)
      case 'cluster_ray':
        return startRay(message)
      case 'cluster_release':
        return release(message.clusterId, message.reason)
      case 'cluster_job_submit': {
        const agent = nodes.get(message.clusterId)?.headAgent
        if (!agent) {
          send({
            type: 'cluster_job_status',
            clusterId: message.clusterId,
            jobId: message.jobId,
            status: 'failed',
            message: 'this node is not running the cluster head',
            exitCode: null,
          })
          return
        }
        await agent.ready
        agent.submit(
          message.jobId,
          message.entrypoint,
          message.workingDirTarGz === null ? undefined : Buffer.from(message.workingDirTarGz, 'base64'),
          {
            ...(message.runtimeEnv ? { runtimeEnv: message.runtimeEnv } : {}),
            ...(message.packages ? { packages: message.packages } : {}),
            ...(message.entrypointResources ? { entrypointResources: message.entrypointResources } : {}),
          },
        )
        return
      }
      case 'cluster_job_stop':
        nodes.get(message.clusterId)?.headAgent?.stop(message.jobId)
        return
    }
  }

  return {
    handle(message) {
      const { clusterId } = message
      const previous = queues.get(clusterId) ?? Promise.resolve()
      const next = previous
        .then(() => act(message))
        .catch((error: unknown) => failed(clusterId, `${message.type}: ${String(error)}`))
      queues.set(clusterId, next)
      void next.finally(() => {
        if (queues.get(clusterId) === next) queues.delete(clusterId)
      })
    },
    heldClusterIds: () => [...nodes.keys()],
    async releaseAll(reason) {
      await Promise.allSettled([...queues.values()])
      for (const clusterId of [...nodes.keys()]) await release(clusterId, reason)
    },
    async cleanUpLeftovers() {
      let footprints: ClusterNodeFootprint[] = []
      try {
        footprints = JSON.parse(readFileSync(footprintFile, 'utf8')) as ClusterNodeFootprint[]
      } catch {
        return
      }
      for (const footprint of footprints) {
        logger.warn('removing a cluster node left by an earlier run', { clusterId: footprint.clusterId })
        await cleanUpClusterNode(footprint, init.netnsMountNamespace)
      }
      saveFootprints()
    },
  }
}

/** Splits text into pieces of at most `maxBytes` UTF-8 bytes, never inside a character. */
export function splitUtf8(text: string, maxBytes: number): string[] {
  if (Buffer.byteLength(text) <= maxBytes) return text ? [text] : []
  const pieces: string[] = []
  let piece = ''
  let pieceBytes = 0
  for (const character of text) {
    const bytes = Buffer.byteLength(character)
    if (pieceBytes + bytes > maxBytes) {
      pieces.push(piece)
      piece = ''
      pieceBytes = 0
    }
    piece += character
    pieceBytes += bytes
  }
  if (piece) pieces.push(piece)
  return pieces
}
