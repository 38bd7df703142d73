import { seededRandom, type Random } from '@gpumesh/core'
import {
  coordinatorMessageValidator,
  createValidator,
  type ClusterCommandMessage,
  type CoordinatorMessage,
  maxCoordinatorFrameBytes,
  rentalDrainMs,
  enrollmentSigningPayload,
  EnrollReply,
  sessionSigningPayload,
  WorkerCloseCode,
  type ComputeSpeedtestResult,
  type HardwareInventory,
  capable,
  incapable,
  sameCapabilities,
  type WorkerCapabilities,
  type WorkerMessage,
  type WorkerSettings,
} from '@gpumesh/protocol'
import WebSocket from 'ws'
import { reconnectDelayMs } from './backoff.ts'
import { loadOrCreateIdentity, readEnrollment, writeEnrollment, type WorkerIdentity } from './identity.ts'
import { referenceProver, type ProofSession, type Prover } from './proof/prover.ts'
import { runNetworkSpeedtest, submitSpeedtestResult } from './speedtest/network.ts'
import { createClusterNodes, type ClusterNodesInit } from './cluster/cluster-nodes.ts'
import { measureRoundTrips, startRttResponder, type RttResponder } from './rtt/rtt.ts'
import { createModelReplicas, type ModelReplicasInit } from './models/model-replicas.ts'
import { describeCapabilities } from './capabilities/derive.ts'
import type { SelfTest } from './capabilities/self-test.ts'
import { recordCapabilities, type WorkerMetrics } from './metrics.ts'
import type { WorkerLogger } from './logger.ts'

// The supplier daemon: enrolls once, then holds one authenticated WebSocket to the coordinator, heartbeating,
// reporting its hardware, and reconnecting with backoff and jitter whenever the link drops.

export const workerAgentVersion = '0.1.0'

export type WorkerAgentComponents = {
  readonly logger: WorkerLogger
  readonly random?: Random
  /** Probes the machine; called at start and on each reconnect. */
  probe(): Promise<HardwareInventory>
  /** Answers proof-of-compute challenges; the TypeScript reference prover when absent. */
  readonly prover?: Prover
  /** The compute half of the periodic speedtest (Python); the network half always runs. */
  computeSpeedtest?(): Promise<ComputeSpeedtestResult>
  /** How this machine runs cluster nodes; without it (or with clustersEnabled false) it refuses them. */
  readonly clusters?: Omit<ClusterNodesInit, 'logger' | 'stateDir'>
  /**
   * Finds what this machine can do (capabilities/self-test.ts); run at start, every selfTestIntervalMs and
   * after a node or replica failed here. Absent: the machine claims nothing it was not given components for.
   */
  readonly selfTest?: SelfTest
  /** Link, heartbeat, proof and capability figures for the machine's own /metrics. */
  readonly metrics?: WorkerMetrics
  /** How this machine runs model replicas; used when settings.serveModels is on. */
  readonly models?: Omit<
    ModelReplicasInit,
    'logger' | 'stateDir' | 'coordinatorUrl' | 'relayPort' | 'relayHost' | 'visibleGpuIndices'
  >
}

/** The first speedtest waits a random time up to this, so a fleet restarting together does not test at once. */
export const firstSpeedtestDelayMaxMs = 60_000

export type WorkerAgentStatus =
  'starting' | 'enrolling' | 'connecting' | 'online' | 'backing_off' | 'stopped' | 'fatal'

export type WorkerAgent = {
  start(): Promise<void>
  /** Tells the coordinator it is leaving, then closes. Idempotent. */
  stop(reason?: string): Promise<void>
  readonly status: WorkerAgentStatus
  readonly deviceId: string | undefined
  /** Cluster nodes and model replicas it runs now. */
  readonly clusterNodeCount: number
  readonly modelReplicaCount: number
  /** Resolves when the agent stops for good (stop(), or a fatal refusal such as a blocked device). */
  readonly finished: Promise<{ fatalError?: Error }>
}

/** The coordinator closed with a code meaning "do not retry". */
export class WorkerFatalError extends Error {}

const enrollReplyValidator = createValidator(EnrollReply, 'enroll reply')
const goodbyeTimeoutMs = 2_000
const enrollRequestTimeoutMs = 30_000

export function createWorkerAgent(components: WorkerAgentComponents, init: WorkerSettings): WorkerAgent {
  const { logger } = components
  const random = components.random ?? seededRandom(Date.now() ^ process.pid)
  let status: WorkerAgentStatus = 'starting'
  let deviceId: string | undefined
  let identity: WorkerIdentity | undefined
  let socket: WebSocket | undefined
  let heartbeatTimer: NodeJS.Timeout | undefined
  let stopping = false
  let wakeBackoff: (() => void) | undefined
  let resolveFinished!: (outcome: { fatalError?: Error }) => void
  const finished = new Promise<{ fatalError?: Error }>((resolve) => (resolveFinished = resolve))

  let latestInventory: HardwareInventory | undefined
  let rttResponder: RttResponder | undefined
  const sendToCoordinator = (message: WorkerMessage) => {
    if (socket?.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message))
  }

  // What this machine can do, as its latest self-test found it; the coordinator hears every change.
  let capabilities: WorkerCapabilities | undefined
  let selfTestTimer: NodeJS.Timeout | undefined
  let selfTesting: Promise<WorkerCapabilities> | undefined
  const testCapabilities = (why: string): Promise<WorkerCapabilities> => {
    selfTesting ??= (async () => {
      const found = components.selfTest
        ? await components.selfTest(latestInventory)
        : claimedCapabilities(components, init, Date.now())
      if (!sameCapabilities(capabilities, found)) {
        const log = capabilities === undefined ? logger.info : logger.warn
        log(`capabilities (${why}): ${describeCapabilities(found).join('; ')}`)
        if (capabilities !== undefined) sendToCoordinator({ type: 'capabilities', capabilities: found })
      }
      capabilities = found
      recordCapabilities(components.metrics, found)
      return found
    })().finally(() => (selfTesting = undefined))
    return selfTesting
  }
  /** A failure here may be this machine's own (a tool removed): tested again before the failure goes out. */
  const sendAfterRetest = (message: WorkerMessage) => {
    const failed =
      (message.type === 'cluster_node_status' || message.type === 'model_replica_status') &&
      message.phase === 'failed'
    if (!failed) return sendToCoordinator(message)
    void testCapabilities('after a failure').then(
      () => sendToCoordinator(message),
      () => sendToCoordinator(message),
    )
  }
  const clusterNodes =
    components.clusters && init.clustersEnabled
      ? createClusterNodes({ ...components.clusters, stateDir: init.stateDir, logger }, sendAfterRetest)
      : undefined
  const modelReplicas =
    components.models && init.serveModels
      ? createModelReplicas(
          {
            ...components.models,
            stateDir: init.stateDir,
            coordinatorUrl: init.coordinatorUrl,
            relayPort: init.servePort,
            // Only GPUs nvidia-smi itself reported exist: a replayed inventory names none a replica could use.
            visibleGpuIndices: () =>
              latestInventory?.probeSource === 'nvidia-smi'
                ? latestInventory.gpus.map((gpu) => gpu.index)
                : [],
            ...((init.serveHost ?? init.meshEndpointHost)
              ? { relayHost: (init.serveHost ?? init.meshEndpointHost)! }
              : {}),
            logger,
          },
          sendAfterRetest,
        )
      : undefined
  // Cluster commands pass through here in order; a rental first stops the replicas serving models.
  let clusterCommandGate: Promise<void> = Promise.resolve()
  const proofs = createProofHandler(components.prover ?? referenceProver, logger, () =>
    proverMatrixSizeLimit(latestInventory),
  )
  let speedtestTimer: NodeJS.Timeout | undefined
  const scheduleSpeedtest = (delayMs: number) => {
    if (init.speedtestIntervalMs === 0 || stopping) return
    clearTimeout(speedtestTimer)
    speedtestTimer = setTimeout(() => void runSpeedtest(), delayMs)
    speedtestTimer.unref()
  }
  const runSpeedtest = async () => {
    if (!identity || !deviceId) return
    try {
      const network = await runNetworkSpeedtest({ coordinatorUrl: init.coordinatorUrl, deviceId, identity })
      const compute = components.computeSpeedtest
        ? await components.computeSpeedtest().catch(() => undefined)
        : undefined
      const stored = await submitSpeedtestResult({
        coordinatorUrl: init.coordinatorUrl,
        deviceId,
        identity,
        network,
        ...(compute ? { compute } : {}),
      })
      logger.info('speedtest recorded', {
        latencyMs: stored.latencyMs,
        downloadMbps: stored.downloadMbps,
        uploadMbps: stored.uploadMbps,
        bandwidthTier: stored.bandwidthTier,
      })
    } catch (error) {
      logger.warn('speedtest failed; will try again at the next interval', { error: String(error) })
    } finally {
      scheduleSpeedtest(init.speedtestIntervalMs)
    }
  }

  const wsUrl = `${init.coordinatorUrl.replace(/^http/, 'ws').replace(/\/$/, '')}/v1/worker/connect`

  async function enroll(id: WorkerIdentity): Promise<string> {
    const existing = readEnrollment(init.stateDir)
    if (existing && existing.coordinatorUrl === init.coordinatorUrl) return existing.deviceId
    if (!init.token) {
      throw new WorkerFatalError(
        'this machine is not enrolled yet: create an enrollment token (gpumesh enrollment-token create) and pass it with --token',
      )
    }
    status = 'enrolling'
    for (let attempt = 0; ; attempt += 1) {
      let response: Response
      try {
        response = await fetch(`${init.coordinatorUrl.replace(/\/$/, '')}/v1/worker/enroll`, {
          method: 'POST',
          signal: AbortSignal.timeout(enrollRequestTimeoutMs),
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            token: init.token,
            publicKey: id.publicKey,
            signature: id.sign(enrollmentSigningPayload(init.token)),
          }),
        })
      } catch (error) {
        const delayMs = reconnectDelayMs(
          attempt,
          init.reconnectInitialDelayMs,
          init.reconnectMaxDelayMs,
          random,
        )
        logger.warn('coordinator unreachable for enrollment; retrying', { error: String(error), delayMs })
        if (!(await backoff(delayMs))) throw new WorkerFatalError('stopped before enrolling')
        continue
      }
      const body: unknown = await response.json().catch(() => undefined)
      if (response.status >= 500 || response.status === 429) {
        const delayMs = reconnectDelayMs(
          attempt,
          init.reconnectInitialDelayMs,
          init.reconnectMaxDelayMs,
          random,
        )
        logger.warn('coordinator could not enroll this machine right now; retrying', {
          status: response.status,
          delayMs,
        })
        if (!(await backoff(delayMs))) throw new WorkerFatalError('stopped before enrolling')
        continue
      }
      if (!response.ok) {
        const message = (body as { message?: string } | undefined)?.message ?? `HTTP ${response.status}`
        throw new WorkerFatalError(`enrollment refused: ${message}`)
      }
      const reply = enrollReplyValidator.parse(body)
      writeEnrollment(init.stateDir, {
        deviceId: reply.deviceId,
        accountId: reply.accountId,
        coordinatorUrl: init.coordinatorUrl,
      })
      logger.info(reply.reenrolled ? 'machine already known: kept its device identity' : 'enrolled', {
        deviceId: reply.deviceId,
      })
      return reply.deviceId
    }
  }

  /** Sleeps unless stop() is called first; false when stopping. */
  function backoff(delayMs: number): Promise<boolean> {
    status = 'backing_off'
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        wakeBackoff = undefined
        resolve(!stopping)
      }, delayMs)
      wakeBackoff = () => {
        clearTimeout(timer)
        wakeBackoff = undefined
        resolve(false)
      }
    })
  }

  /** One session: resolves when the link closes; the close code says whether to retry. */
  function runSession(
    id: WorkerIdentity,
    device: string,
    inventory: HardwareInventory,
  ): Promise<{ code: number; reason: string; wasOnline: boolean }> {
    status = 'connecting'
    return new Promise((resolve) => {
      const ws = new WebSocket(wsUrl, { handshakeTimeout: 10_000, maxPayload: maxCoordinatorFrameBytes })
      socket = ws
      let wasOnline = false
      let seq = 0
      const sendMessage = (message: WorkerMessage) => {
        if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message))
      }
      ws.on('message', (data) => {
        let message: CoordinatorMessage
        try {
          message = coordinatorMessageValidator.parse(JSON.parse(data.toString()))
        } catch (error) {
          logger.warn('unexpected message from the coordinator', { error: String(error) })
          return
        }
        if (message.type === 'auth_challenge') {
          sendMessage({
            type: 'auth',
            deviceId: device,
            signature: id.sign(sessionSigningPayload(message.nonce, device)),
            agentVersion: workerAgentVersion,
          })
        } else if (message.type === 'welcome') {
          wasOnline = true
          components.metrics?.linkUp.set(1)
          status = 'online'
          if (speedtestTimer === undefined) {
            scheduleSpeedtest(
              Math.round(random.next() * Math.min(firstSpeedtestDelayMaxMs, init.speedtestIntervalMs)),
            )
          }
          logger.info('online', {
            deviceId: message.deviceId,
            heartbeatIntervalMs: message.heartbeatIntervalMs,
          })
          if (init.askingPricePerGpuHourUsd === undefined && init.pricingMode === undefined) {
            logger.warn(
              'no pricing given: the machine keeps the pricing it has (a new one is not listed until it has a price: --price-per-gpu-hour or --pricing auto)',
            )
          }
          sendMessage({
            type: 'report',
            inventory,
            location: { region: init.region, country: init.country },
            ...(init.askingPricePerGpuHourUsd === undefined
              ? {}
              : { askingPricePerGpuHourUsd: init.askingPricePerGpuHourUsd }),
            ...(init.pricingMode === undefined ? {} : { pricingMode: init.pricingMode }),
            ...(rttResponder ? { rttProbePort: rttResponder.port } : {}),
            ...(capabilities ? { capabilities } : {}),
            ...(init.serveModels === undefined
              ? {}
              : {
                  serving: {
                    enabled: init.serveModels && modelReplicas !== undefined,
                    ...(init.serveMinPricePerGpuHourUsd === undefined
                      ? {}
                      : { minPricePerGpuHourUsd: init.serveMinPricePerGpuHourUsd }),
                  },
                }),
          })
          sendMessage({ type: 'cluster_nodes_held', clusterIds: clusterNodes?.heldClusterIds() ?? [] })
          sendMessage({ type: 'model_replicas_held', replicaIds: modelReplicas?.heldReplicaIds() ?? [] })
          clearInterval(heartbeatTimer)
          heartbeatTimer = setInterval(() => {
            sendMessage({ type: 'heartbeat', seq: seq++ })
            components.metrics?.heartbeatsSent.inc()
          }, message.heartbeatIntervalMs)
        } else if (message.type === 'error') {
          logger.warn('coordinator reported an error', { code: message.code, message: message.message })
        } else if (message.type === 'rtt_probe') {
          const { probeId, targets } = message
          measureRoundTrips(targets).then(
            (results) => sendMessage({ type: 'rtt_report', probeId, results }),
            (error: unknown) => logger.warn('round-trip measurement failed', { error: String(error) }),
          )
        } else if (message.type === 'model_replica_start' || message.type === 'model_replica_stop') {
          const refusal =
            message.type === 'model_replica_start' ? refusalOf(capabilities, 'modelReplicas') : undefined
          if (modelReplicas && !refusal) modelReplicas.handle(message)
          else
            sendMessage({
              type: 'model_replica_status',
              replicaId: message.replicaId,
              phase: message.type === 'model_replica_stop' ? 'stopped' : 'failed',
              detail: refusal ?? 'this machine does not serve models (start it with --serve-models)',
            })
        } else if (message.type.startsWith('cluster_')) {
          const command = message as ClusterCommandMessage
          const refusal =
            command.type !== 'cluster_node_prepare'
              ? undefined
              : // Prepared after releaseAll() began, a node would outlive the agent.
                stopping
                ? 'this worker is stopping'
                : refusalOf(capabilities, 'clusterNodes')
          if (clusterNodes && !refusal) {
            const nodes = clusterNodes
            const rented =
              command.type === 'cluster_node_prepare' && (modelReplicas?.heldReplicaIds().length ?? 0) > 0
            clusterCommandGate = clusterCommandGate
              .then(() =>
                rented
                  ? modelReplicas?.stopAll('this machine was rented for a cluster', rentalDrainMs)
                  : undefined,
              )
              .then(() => nodes.handle(command))
          } else
            sendMessage({
              type: 'cluster_node_status',
              clusterId: command.clusterId,
              phase: 'failed',
              detail: refusal ?? 'this machine does not run cluster nodes',
            })
        } else {
          if (message.type === 'challenge_result')
            components.metrics?.proofs.inc({ outcome: message.passed ? 'passed' : 'failed' })
          proofs.handle(message as Parameters<typeof proofs.handle>[0], sendMessage)
        }
      })
      ws.on('error', (error) => logger.warn('link error', { error: String(error) }))
      ws.on('close', (code, reasonBuffer) => {
        components.metrics?.linkUp.set(0)
        if (!stopping) components.metrics?.reconnects.inc()
        proofs.closeAll()
        clearInterval(heartbeatTimer)
        heartbeatTimer = undefined
        socket = undefined
        resolve({ code, reason: reasonBuffer.toString(), wasOnline })
      })
    })
  }

  async function run(): Promise<void> {
    try {
      identity = loadOrCreateIdentity(init.stateDir)
      deviceId = await enroll(identity)
      await clusterNodes?.cleanUpLeftovers()
      await modelReplicas?.cleanUpLeftovers()
      rttResponder = await startRttResponder(init.rttProbePort).catch((error: unknown) => {
        logger.warn('round-trip responder could not start; peers cannot measure this machine', {
          error: String(error),
        })
        return undefined
      })
      let attempt = 0
      while (!stopping) {
        const inventory = await components.probe()
        latestInventory = inventory
        // Tested once the hardware is known (the GPU check reads it), before the first report names it.
        if (!capabilities) {
          await testCapabilities('at start')
          if (init.selfTestIntervalMs > 0 && !stopping) {
            selfTestTimer = setInterval(
              () => void testCapabilities('periodic self-test').catch(() => undefined),
              init.selfTestIntervalMs,
            )
            selfTestTimer.unref()
          }
        }
        const { code, reason, wasOnline } = await runSession(identity, deviceId, inventory)
        if (stopping) break
        if (code === WorkerCloseCode.blocked)
          throw new WorkerFatalError(`the coordinator blocked this device: ${reason}`)
        if (code === WorkerCloseCode.authFailed) {
          logger.error("the coordinator refused this machine's identity", { reason })
        }
        attempt = wasOnline ? 0 : attempt + 1
        const delayMs = reconnectDelayMs(
          attempt,
          init.reconnectInitialDelayMs,
          init.reconnectMaxDelayMs,
          random,
        )
        logger.warn('link to coordinator lost; reconnecting', { code, reason, delayMs })
        if (!(await backoff(delayMs))) break
      }
      status = 'stopped'
      await rttResponder?.close()
      resolveFinished({})
    } catch (error) {
      status = 'fatal'
      await rttResponder?.close()
      const fatalError = error instanceof Error ? error : new Error(String(error))
      logger.error(fatalError.message)
      resolveFinished({ fatalError })
    }
  }

  return {
    get status() {
      return status
    },
    get deviceId() {
      return deviceId
    },
    get clusterNodeCount() {
      return clusterNodes?.heldClusterIds().length ?? 0
    },
    get modelReplicaCount() {
      return modelReplicas?.heldReplicaIds().length ?? 0
    },
    finished,
    async start() {
      void run()
    },
    async stop(reason = 'agent stopped') {
      if (stopping) return
      stopping = true
      clearTimeout(speedtestTimer)
      clearInterval(selfTestTimer)
      wakeBackoff?.()
      // Released before the goodbye, so the coordinator hears each node go and replaces it at once.
      await modelReplicas?.close(reason, rentalDrainMs)
      await clusterNodes?.releaseAll(reason)
      const ws = socket
      if (ws && ws.readyState === WebSocket.OPEN) {
        ws.send(JSON.stringify({ type: 'goodbye', reason } satisfies WorkerMessage))
        // The coordinator closes after a goodbye; don't wait forever for it.
        const closed = new Promise((resolve) => ws.once('close', resolve))
        const timeout = new Promise((resolve) => setTimeout(resolve, goodbyeTimeoutMs).unref())
        await Promise.race([closed, timeout])
        if ((ws.readyState as number) !== WebSocket.CLOSED) ws.terminate()
      } else if (ws) {
        ws.terminate()
      }
      await finished
    },
  }
}

/** Why this machine refuses work of that kind now, or undefined when it can do it. */
function refusalOf(
  capabilities: WorkerCapabilities | undefined,
  name: 'clusterNodes' | 'modelReplicas',
): string | undefined {
  const capability = capabilities?.[name]
  if (!capability) return 'this machine has not finished its self-test yet'
  if (capability.available) return undefined
  const what = name === 'clusterNodes' ? 'cluster nodes' : 'model replicas'
  return `this machine cannot run ${what}: ${capability.reason}${capability.fix ? ` (fix: ${capability.fix})` : ''}`
}

/**
 * Without a self-test (tests that build an agent by hand): the machine claims exactly what it was given
 * components for, and says it did not test them.
 */
export function claimedCapabilities(
  components: Pick<WorkerAgentComponents, 'clusters' | 'models'>,
  init: Pick<WorkerSettings, 'clustersEnabled' | 'serveModels'>,
  nowMs: number,
): WorkerCapabilities {
  const claim = (given: boolean, missing: string) => (given ? capable() : incapable(missing))
  return {
    clusterNodes: claim(
      components.clusters !== undefined && init.clustersEnabled,
      'this agent was not given cluster node support',
    ),
    modelReplicas: claim(
      components.models !== undefined && init.serveModels === true,
      'this agent was not given model serving support',
    ),
    gpus: incapable('not self-tested'),
    checks: [],
    testedAtMs: nowMs,
  }
}

/**
 * The largest challenge this machine should attempt. Without GPUs that nvidia-smi itself reported, a
 * production-size challenge (tens of GB, hours of CPU) is not attempted: it could only fail, slowly,
 * while starving the machine.
 */
export const cpuProverMaxMatrixSize = 4_096
export const gpuProverMaxMatrixSize = 65_536

export function proverMatrixSizeLimit(inventory: HardwareInventory | undefined): number {
  return inventory?.probeSource === 'nvidia-smi' && inventory.gpus.length > 0
    ? gpuProverMaxMatrixSize
    : cpuProverMaxMatrixSize
}

/** One proof-of-compute session at a time: a new challenge supersedes an unfinished one. */
function createProofHandler(prover: Prover, logger: WorkerLogger, matrixSizeLimit: () => number) {
  let active: { challengeId: string; session: Promise<ProofSession | undefined> } | undefined
  const closeAll = () => {
    void active?.session.then((session) => session?.close())
    active = undefined
  }
  return {
    closeAll,
    handle(
      message: Extract<CoordinatorMessage, { type: 'challenge' | 'challenge_open' | 'challenge_result' }>,
      send: (message: WorkerMessage) => void,
    ) {
      if (message.type === 'challenge') {
        closeAll()
        logger.info('proof-of-compute challenge received', {
          challengeId: message.challengeId,
          matrixSize: message.matrixSize,
        })
        if (message.matrixSize > matrixSizeLimit()) {
          logger.error("challenge is larger than this machine's real hardware can answer; not attempted", {
            matrixSize: message.matrixSize,
            limit: matrixSizeLimit(),
          })
          return
        }
        const session = prover.prove(message.seed, message.matrixSize).then(
          (proof) => {
            send({
              type: 'challenge_commitment',
              challengeId: message.challengeId,
              merkleRoot: proof.merkleRoot,
              backend: proof.backend,
              computeMs: proof.computeMs,
            })
            return proof
          },
          (error: unknown) => {
            logger.error('proof-of-compute failed on this machine', { error: String(error) })
            return undefined
          },
        )
        active = { challengeId: message.challengeId, session }
      } else if (message.type === 'challenge_open') {
        if (active?.challengeId !== message.challengeId) return
        void active.session.then(async (proof) => {
          if (!proof) return
          try {
            for (const opening of await proof.open(message.rows))
              send({
                type: 'challenge_opening',
                challengeId: message.challengeId,
                ...opening,
                proof: [...opening.proof],
              })
          } catch (error) {
            logger.error('could not open the requested rows', { error: String(error) })
          }
        })
      } else {
        const fields = { challengeId: message.challengeId, reason: message.reason }
        if (message.passed) logger.info('proof-of-compute passed', fields)
        else logger.warn('proof-of-compute failed', { ...fields, reasonCode: message.reasonCode })
        if (active?.challengeId === message.challengeId) closeAll()
      }
    },
  }
}
