import type { ClusterReportMessage, CoordinatorMessage } from '@gpumesh/protocol'
import type { SimRandom } from './random.ts'

// A simulated supplier machine: the state machine of a worker's cluster-node manager, without WireGuard or
// Ray. It answers the controller's commands as packages/testing/src/simulated-worker.ts does over
// WebSocket, but in process, and every answer comes after a seeded delay (the world adds it). A small
// seeded share of mesh and Ray starts fail, as real ones do. Killing it (SIGKILL) loses every node it ran.

/** Ray's view of each cluster: the overlay addresses with a running Ray node. */
export class RayTable {
  readonly #alive = new Map<string, Set<string>>()

  add(clusterId: string, address: string): void {
    const alive = this.#alive.get(clusterId) ?? new Set<string>()
    this.#alive.set(clusterId, alive)
    alive.add(address)
  }

  remove(clusterId: string, address: string): void {
    this.#alive.get(clusterId)?.delete(address)
  }

  alive(clusterId: string): string[] {
    return [...(this.#alive.get(clusterId) ?? [])].sort()
  }
}

export type WorkerEnvironment = {
  readonly random: SimRandom
  readonly ray: RayTable
  /** A frame to the coordinator on the worker's current connection (lost if it has none by then). */
  reply(worker: SimWorker, message: ClusterReportMessage): void
  /** Ray's membership of a cluster changed: its heads say so (Ray's GCS tells them). */
  rayChanged(clusterId: string): void
}

type HeldNode = { readonly key: string; address?: string; ray?: 'head' | 'worker' }

/** How often a mesh or Ray start fails on a simulated machine. */
export const commandFailureRate = 0.02

export class SimWorker {
  readonly deviceId: string
  readonly supplierId: string
  readonly askingPriceMicroUsd: bigint
  readonly #environment: WorkerEnvironment
  readonly #nodes = new Map<string, HeldNode>()
  /** The machine's process runs; false after a SIGKILL until it is started again. */
  running = true
  /** Its current connection, if any (a killed process's connection lingers until the coordinator drops it). */
  sessionId: string | null = null
  enrolled = false

  constructor(
    deviceId: string,
    supplierId: string,
    askingPriceMicroUsd: bigint,
    environment: WorkerEnvironment,
  ) {
    this.deviceId = deviceId
    this.supplierId = supplierId
    this.askingPriceMicroUsd = askingPriceMicroUsd
    this.#environment = environment
  }

  /** The clusters it runs a node of: what it tells the coordinator after every welcome. */
  heldClusterIds(): string[] {
    return [...this.#nodes.keys()]
  }

  isHeadOf(clusterId: string): boolean {
    return this.#nodes.get(clusterId)?.ray === 'head'
  }

  /** SIGKILL: the process is gone with every node it ran; its connection is left half-open. */
  kill(): void {
    this.running = false
    const clusters = [...this.#nodes.entries()]
    this.#nodes.clear()
    for (const [clusterId, node] of clusters) {
      if (node.address) this.#environment.ray.remove(clusterId, node.address)
      this.#environment.rayChanged(clusterId)
    }
  }

  /** A frame from the coordinator, in the order they were sent. */
  onCommand(message: CoordinatorMessage): void {
    if (!this.running) return
    const { random, ray } = this.#environment
    const reply = (report: ClusterReportMessage) => this.#environment.reply(this, report)
    switch (message.type) {
      case 'cluster_node_prepare': {
        const node = this.#nodes.get(message.clusterId) ?? { key: random.wireguardKey() }
        this.#nodes.set(message.clusterId, node)
        reply({
          type: 'cluster_node_key',
          clusterId: message.clusterId,
          publicKey: node.key,
          listenPort: 51820,
        })
        return
      }
      case 'cluster_mesh': {
        const node = this.#nodes.get(message.clusterId)
        if (!node || random.chance(commandFailureRate)) {
          reply(failed(message.clusterId, node ? 'wireguard-go exited' : 'no node prepared for this cluster'))
          return
        }
        node.address = message.overlayAddress
        reply({
          type: 'cluster_node_status',
          clusterId: message.clusterId,
          phase: 'mesh_up',
          detail: 'simulated',
          meshRevision: message.revision,
        })
        return
      }
      case 'cluster_ray': {
        const node = this.#nodes.get(message.clusterId)
        if (!node?.address || random.chance(commandFailureRate)) {
          reply(failed(message.clusterId, node?.address ? 'ray start exited 1' : 'the mesh is not up'))
          return
        }
        node.ray = message.role
        ray.add(message.clusterId, node.address)
        reply({
          type: 'cluster_node_status',
          clusterId: message.clusterId,
          phase: 'ray_started',
          detail: message.role,
        })
        this.#environment.rayChanged(message.clusterId)
        return
      }
      case 'cluster_release': {
        const node = this.#nodes.get(message.clusterId)
        if (node?.address) ray.remove(message.clusterId, node.address)
        this.#nodes.delete(message.clusterId)
        reply({
          type: 'cluster_node_status',
          clusterId: message.clusterId,
          phase: 'released',
          detail: message.reason,
        })
        this.#environment.rayChanged(message.clusterId)
        return
      }
      case 'cluster_job_submit': {
        const job = { clusterId: message.clusterId, jobId: message.jobId }
        reply({ type: 'cluster_job_status', ...job, status: 'running', message: '', exitCode: null })
        reply({ type: 'cluster_job_log', ...job, text: `ran ${message.entrypoint}\n` })
        const ok = random.chance(0.8)
        reply({
          type: 'cluster_job_status',
          ...job,
          status: ok ? 'succeeded' : 'failed',
          message: ok ? 'done' : 'exit 1',
          exitCode: ok ? 0 : 1,
        })
        return
      }
      case 'cluster_job_stop':
        reply({
          type: 'cluster_job_status',
          clusterId: message.clusterId,
          jobId: message.jobId,
          status: 'stopped',
          message: 'stopped',
          exitCode: null,
        })
        return
      default:
        return
    }
  }

  /** What a head tells the coordinator of Ray's members. */
  rayNodes(clusterId: string): ClusterReportMessage {
    return { type: 'cluster_ray_nodes', clusterId, alive: this.#environment.ray.alive(clusterId) }
  }
}

function failed(clusterId: string, detail: string): ClusterReportMessage {
  return { type: 'cluster_node_status', clusterId, phase: 'failed', detail }
}
