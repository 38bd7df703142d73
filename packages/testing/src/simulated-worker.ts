import { generateKeyPairSync, randomBytes, sign } from 'node:crypto'
import {
  capable,
  enrollmentSigningPayload,
  sessionSigningPayload,
  type WorkerCapabilities,
  type CoordinatorMessage,
  type HardwareInventory,
  type WorkerMessage,
} from '@gpumesh/protocol'
import WebSocket from 'ws'

// Workers that speak the real protocol but only pretend to run WireGuard and Ray (test/e2e/clusters.test.ts
// runs the real ones): each answers commands at once, and a shared table stands in for Ray's view of which
// nodes are alive. For tests of the cluster controller and billing.

/** A simulated machine with `count` GPUs of one catalog model, each with its own UUID. */
export function gpuInventory(
  modelKey: string,
  productName: string,
  count: number,
  vramMib = 24 * 1024,
): HardwareInventory {
  return {
    ...cpuInventory,
    gpus: Array.from({ length: count }, (_, index) => ({
      index,
      uuid: `GPU-${randomBytes(8).toString('hex')}`,
      productName,
      modelKey,
      vramMib,
      migMode: 'disabled' as const,
      migInstances: [],
    })),
  }
}

export const cpuInventory: HardwareInventory = {
  hostname: 'sim',
  gpus: [],
  cpu: { model: 'Simulated', logicalCores: 8, architecture: 'x64' },
  memoryMib: 32 * 1024,
  disk: { path: '/', totalMib: 100_000, freeMib: 50_000 },
  os: { platform: 'linux', release: '6' },
  probeSource: 'none',
  warnings: [],
}

/** What a simulated machine claims it can do: everything, as a machine whose self-test passed. */
export function simulatedCapabilities(overrides: Partial<WorkerCapabilities> = {}): WorkerCapabilities {
  return {
    clusterNodes: capable(),
    modelReplicas: capable(),
    gpus: capable(),
    checks: [{ name: 'simulated', ok: true, detail: 'a simulated worker claims every capability' }],
    testedAtMs: 0,
    ...overrides,
  }
}

/** Switches the whole simulation flips: worker nodes (not heads) do not start Ray while this is set. */
export const simulation = { holdWorkerRay: false }

/** Ray's view of each cluster: which overlay addresses have a running node. */
const rayAlive = new Map<string, Set<string>>()

export type SimulatedWorker = {
  readonly deviceId: string
  readonly received: CoordinatorMessage[]
  connect(baseUrl: string): Promise<void>
  send(message: WorkerMessage): void
  /** The machine vanishes: socket gone, its Ray nodes dead. */
  kill(): void
  close(): void
}

export function wireguardKey(): string {
  return randomBytes(32).toString('base64')
}

export async function simulatedWorker(
  baseUrl: string,
  supplierKey: string,
  {
    pricePerGpuHourUsd = '0.50',
    pricingMode,
    inventory = cpuInventory,
    serving,
    capabilities = simulatedCapabilities(),
  }: {
    pricePerGpuHourUsd?: string | null
    pricingMode?: 'fixed' | 'auto'
    /** What the worker reports (CPU only by default; tests of GPU rules give GPUs). */
    inventory?: HardwareInventory
    /** What its self-test claims (everything by default). */
    capabilities?: WorkerCapabilities
    /**
     * Serve models: the worker opts in, and answers a replica start at once with this address (a model server
     * the test runs itself, standing in for the relay and its sandboxed replica).
     */
    serving?: {
      readonly relayPort: () => number
      readonly outputTokensPerSecond?: number
      readonly minPricePerGpuHourUsd?: string
    }
  } = {},
): Promise<SimulatedWorker> {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  const signText = (payload: string) => sign(null, Buffer.from(payload), privateKey).toString('base64url')
  const headers = { authorization: `Bearer ${supplierKey}`, 'content-type': 'application/json' }
  const token = (
    (await (
      await fetch(`${baseUrl}/v1/enrollment-tokens`, { method: 'POST', headers, body: '{}' })
    ).json()) as any
  ).token
  const { deviceId } = (await (
    await fetch(`${baseUrl}/v1/worker/enroll`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        token,
        publicKey: publicKey.export({ format: 'jwk' }).x,
        signature: signText(enrollmentSigningPayload(token)),
      }),
    })
  ).json()) as { deviceId: string }

  const received: CoordinatorMessage[] = []
  const nodes = new Map<string, { key: string; address?: string; ray?: string }>()
  let ws: WebSocket | undefined
  let heartbeat: NodeJS.Timeout | undefined
  const send = (message: WorkerMessage) => {
    if (ws?.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message))
  }
  const reportAlive = (clusterId: string) => {
    const node = nodes.get(clusterId)
    if (node?.ray === 'head')
      send({ type: 'cluster_ray_nodes', clusterId, alive: [...(rayAlive.get(clusterId) ?? [])].sort() })
  }
  const act = (message: CoordinatorMessage) => {
    switch (message.type) {
      case 'cluster_node_prepare': {
        const node = nodes.get(message.clusterId) ?? { key: wireguardKey() }
        nodes.set(message.clusterId, node)
        send({
          type: 'cluster_node_key',
          clusterId: message.clusterId,
          publicKey: node.key,
          listenPort: 51820,
        })
        return
      }
      case 'cluster_mesh': {
        const node = nodes.get(message.clusterId)!
        node.address = message.overlayAddress
        send({
          type: 'cluster_node_status',
          clusterId: message.clusterId,
          phase: 'mesh_up',
          detail: 'simulated',
          meshRevision: message.revision,
        })
        return
      }
      case 'cluster_ray': {
        if (message.role === 'worker' && simulation.holdWorkerRay) return
        const node = nodes.get(message.clusterId)!
        node.ray = message.role
        const alive = rayAlive.get(message.clusterId) ?? new Set<string>()
        rayAlive.set(message.clusterId, alive)
        alive.add(node.address!)
        send({
          type: 'cluster_node_status',
          clusterId: message.clusterId,
          phase: 'ray_started',
          detail: message.role,
        })
        // Every simulated head of this cluster hears about the change, as Ray's GCS would tell it.
        for (const worker of allWorkers) worker.reportAlive(message.clusterId)
        return
      }
      case 'cluster_release': {
        const node = nodes.get(message.clusterId)
        if (node?.address) rayAlive.get(message.clusterId)?.delete(node.address)
        nodes.delete(message.clusterId)
        send({
          type: 'cluster_node_status',
          clusterId: message.clusterId,
          phase: 'released',
          detail: message.reason,
        })
        for (const worker of allWorkers) worker.reportAlive(message.clusterId)
        return
      }
      case 'model_replica_start':
        send({
          type: 'model_replica_status',
          replicaId: message.replicaId,
          phase: 'ready',
          detail: 'simulated',
          relayHost: '127.0.0.1',
          relayPort: serving!.relayPort(),
          outputTokensPerSecond: serving!.outputTokensPerSecond ?? 100,
        })
        return
      case 'model_replica_stop':
        send({
          type: 'model_replica_status',
          replicaId: message.replicaId,
          phase: 'stopped',
          detail: message.reason,
        })
        return
      case 'cluster_job_submit': {
        const job = { clusterId: message.clusterId, jobId: message.jobId }
        send({ type: 'cluster_job_status', ...job, status: 'running', message: '', exitCode: null })
        send({ type: 'cluster_job_log', ...job, text: `ran ${message.entrypoint}\n` })
        // What a Ray submission carried, so tests can see it reached the head.
        if (message.runtimeEnv) {
          const env = Object.keys(message.runtimeEnv.env_vars ?? {}).sort()
          const packages = (message.packages ?? []).map((item) => item.uri)
          send({
            type: 'cluster_job_log',
            ...job,
            text: `env ${env.join(',')} packages ${packages.join(',')}\n`,
          })
        }
        // A driver that sleeps runs until it is stopped, as Ray's would.
        if (message.entrypoint.startsWith('sleep ')) return
        send({ type: 'cluster_job_status', ...job, status: 'succeeded', message: 'done', exitCode: 0 })
        return
      }
      case 'cluster_job_stop':
        send({
          type: 'cluster_job_status',
          clusterId: message.clusterId,
          jobId: message.jobId,
          status: 'stopped',
          message: 'stopped by the renter',
          exitCode: null,
        })
        return
      default:
        return
    }
  }
  const worker: SimulatedWorker & { reportAlive(clusterId: string): void } = {
    deviceId,
    received,
    reportAlive,
    async connect(url) {
      ws = new WebSocket(`${url.replace('http', 'ws')}/v1/worker/connect`)
      const socket = ws
      socket.on('error', () => {})
      socket.on('close', () => clearInterval(heartbeat))
      await new Promise<void>((resolve) => {
        socket.on('message', (data) => {
          const message = JSON.parse(data.toString()) as CoordinatorMessage
          received.push(message)
          if (message.type === 'auth_challenge') {
            socket.send(
              JSON.stringify({
                type: 'auth',
                deviceId,
                signature: signText(sessionSigningPayload(message.nonce, deviceId)),
                agentVersion: 'simulated',
              } satisfies WorkerMessage),
            )
          } else if (message.type === 'welcome') {
            send({
              type: 'report',
              inventory,
              location: { region: 'sim', country: 'DE' },
              ...(pricePerGpuHourUsd === null ? {} : { askingPricePerGpuHourUsd: pricePerGpuHourUsd }),
              ...(pricingMode ? { pricingMode } : {}),
              capabilities,
              ...(serving
                ? {
                    serving: {
                      enabled: true,
                      ...(serving.minPricePerGpuHourUsd
                        ? { minPricePerGpuHourUsd: serving.minPricePerGpuHourUsd }
                        : {}),
                    },
                  }
                : {}),
            })
            send({ type: 'cluster_nodes_held', clusterIds: [...nodes.keys()] })
            let seq = 0
            clearInterval(heartbeat)
            heartbeat = setInterval(
              () => send({ type: 'heartbeat', seq: seq++ }),
              message.heartbeatIntervalMs,
            )
            resolve()
          } else {
            act(message)
          }
        })
      })
    },
    send,
    kill() {
      for (const [clusterId, node] of nodes) if (node.address) rayAlive.get(clusterId)?.delete(node.address)
      nodes.clear()
      ws?.terminate()
      for (const other of allWorkers) for (const clusterId of rayAlive.keys()) other.reportAlive(clusterId)
    },
    close() {
      clearInterval(heartbeat)
      ws?.terminate()
    },
  }
  allWorkers.push(worker)
  await worker.connect(baseUrl)
  return worker
}
const allWorkers: (SimulatedWorker & { reportAlive(clusterId: string): void })[] = []
