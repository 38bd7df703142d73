import { chmodSync, mkdirSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import type { ModelReplicaCommandMessage, ModelReplicaStartMessage, WorkerMessage } from '@gpumesh/protocol'
import type { WorkerLogger } from '../logger.ts'
import { ArtifactMismatchError, createArtifactCache } from './artifact-cache.ts'
import { cleanUpModelReplicaLeftovers, createModelReplica, type ModelReplica } from './model-replica.ts'

// The model replicas this machine serves while nobody rents it. The coordinator decides which model and
// when; this fetches the artifacts (hash-checked, cached), starts the replica in its sandbox, measures its
// speed, and reports. Rentals win: before a cluster node is prepared here, every replica drains and stops.

export type ModelReplicasInit = {
  readonly pythonPath: string
  readonly stateDir: string
  readonly coordinatorUrl: string
  readonly runAs?: { readonly uid: number; readonly gid: number }
  readonly numCpus?: number
  /** The GPUs a replica may use (real ones nvidia-smi reported); none on a CPU-only machine. */
  readonly visibleGpuIndices: () => readonly number[]
  readonly objectStoreMemoryBytes?: number
  readonly netnsMountNamespace?: string
  /** Where the relay listens; the address announced to the coordinator when it is a specific one. */
  readonly relayHost?: string
  readonly relayPort: number
  readonly logger: WorkerLogger
  /** See ModelReplicaInit.launcherPath (tests start a stand-in launcher). */
  readonly launcherPath?: string
}

export type ModelReplicas = {
  handle(message: ModelReplicaCommandMessage): void
  heldReplicaIds(): string[]
  /** Drains and stops every replica (the machine was rented, or the agent is stopping). */
  stopAll(reason: string, drainMs: number): Promise<void>
  /**
   * Stops every replica for good: starts asked for from now on are refused (reported failed), and it resolves
   * once nothing this made is left, replicas still starting included. For the agent's own stop.
   */
  close(reason: string, drainMs: number): Promise<void>
  cleanUpLeftovers(): Promise<void>
}

/** How many tokens the speed measurement asks for. */
const speedProbeTokens = 32

export function createModelReplicas(
  init: ModelReplicasInit,
  send: (message: WorkerMessage) => void,
): ModelReplicas {
  const { logger } = init
  const running = new Map<string, { replica?: ModelReplica; stopping?: Promise<void> }>()
  let closedBecause: string | undefined
  // The replica runs as an unprivileged user and reads its model from the cache: the state directory must let it
  // pass (0711: no listing; the identity key inside stays 0600), the cache itself is world-readable (the
  // artifacts are public, anyone can fetch them from the store).
  mkdirSync(init.stateDir, { recursive: true, mode: 0o700 })
  if (init.runAs) chmodSync(init.stateDir, 0o711)
  const cache = createArtifactCache({
    cacheDir: join(init.stateDir, 'artifacts'),
    urlOf: (sha256) => `${init.coordinatorUrl.replace(/\/$/, '')}/v1/store/artifacts/${sha256}`,
  })

  const status = (
    replicaId: string,
    phase: Extract<WorkerMessage, { type: 'model_replica_status' }>['phase'],
    detail: string,
    extra: Partial<Extract<WorkerMessage, { type: 'model_replica_status' }>> = {},
  ) => send({ type: 'model_replica_status', replicaId, phase, detail: detail.slice(0, 2048), ...extra })

  const start = async (message: ModelReplicaStartMessage) => {
    const { replicaId } = message
    if (running.has(replicaId)) return
    const entry: { replica?: ModelReplica; stopping?: Promise<void> } = {}
    running.set(replicaId, entry)
    const modelKey = `${message.model.name}:${message.model.version}`
    try {
      status(replicaId, 'downloading', `fetching ${modelKey}`)
      const { directory, downloaded } = await cache.materialize(
        `${message.model.name}@${message.model.version}`,
        message.model.artifacts,
      )
      if (entry.stopping) return
      status(replicaId, 'starting', `${downloaded} artifacts downloaded; starting Ray Serve`)
      const replica = createModelReplica({
        replicaId,
        pythonPath: init.pythonPath,
        modelDir: directory,
        artifacts: message.model.artifacts,
        stateDir: init.stateDir,
        ...(init.runAs ? { runAs: init.runAs } : {}),
        numCpus: init.numCpus ?? availableParallelism(),
        visibleGpuIndices: init.visibleGpuIndices(),
        minReplicas: message.minReplicas,
        maxReplicas: message.maxReplicas,
        ...(init.objectStoreMemoryBytes ? { objectStoreMemoryBytes: init.objectStoreMemoryBytes } : {}),
        ...(init.netnsMountNamespace ? { netnsMountNamespace: init.netnsMountNamespace } : {}),
        relayHost: init.relayHost ?? '0.0.0.0',
        relayPort: init.relayPort,
        accessToken: message.accessToken,
        ...(init.launcherPath ? { launcherPath: init.launcherPath } : {}),
        logger,
        onExit: (detail) => {
          if (running.get(replicaId)?.replica === replica && !entry.stopping) {
            running.delete(replicaId)
            status(replicaId, 'failed', `the replica exited: ${detail}`)
            void replica.stop()
          }
        },
      })
      entry.replica = replica
      const { relayUrl } = await replica.start()
      if (entry.stopping) return
      const outputTokensPerSecond = await measureSpeed(relayUrl, message.accessToken, message.model.name)
      const relayPort = Number(new URL(relayUrl).port)
      status(replicaId, 'ready', `serving ${modelKey} at ${outputTokensPerSecond.toFixed(1)} tokens/s`, {
        relayPort,
        ...(init.relayHost && init.relayHost !== '0.0.0.0' ? { relayHost: init.relayHost } : {}),
        outputTokensPerSecond,
      })
      logger.info('model replica ready', { replicaId, model: modelKey, relayPort, outputTokensPerSecond })
    } catch (error) {
      running.delete(replicaId)
      await entry.replica?.stop().catch(() => undefined)
      // Stopped while it started: stop() reports it stopped, which is all there is to say.
      if (entry.stopping) return
      if (error instanceof ArtifactMismatchError) {
        logger.error('refused a model artifact whose bytes do not match its hash', {
          replicaId,
          error: error.message,
        })
        status(replicaId, 'failed', error.message, {
          refusedArtifact: {
            path: error.artifact.path,
            expectedSha256: error.artifact.sha256,
            receivedSha256: error.receivedSha256,
          },
        })
        return
      }
      logger.error('model replica failed to start', { replicaId, error: String(error) })
      status(replicaId, 'failed', String(error))
    }
  }

  const stop = (replicaId: string, reason: string, drainMs: number): Promise<void> => {
    const entry = running.get(replicaId)
    if (!entry) {
      status(replicaId, 'stopped', reason)
      return Promise.resolve()
    }
    entry.stopping ??= (async () => {
      status(replicaId, 'draining', reason)
      logger.info('draining model replica', { replicaId, reason })
      await entry.replica
        ?.drain(drainMs)
        .catch((error: unknown) =>
          logger.warn('draining the replica failed; stopping it', { replicaId, error: String(error) }),
        )
      await entry.replica?.stop()
      running.delete(replicaId)
      status(replicaId, 'stopped', reason)
    })()
    return entry.stopping
  }

  const stopAll = async (reason: string, drainMs: number) => {
    await Promise.all([...running.keys()].map((replicaId) => stop(replicaId, reason, drainMs)))
  }

  return {
    handle(message) {
      if (message.type === 'model_replica_stop') void stop(message.replicaId, message.reason, message.drainMs)
      // A start that came in after close() would outlive the agent: its launcher, namespace and temp dir.
      else if (closedBecause !== undefined)
        status(message.replicaId, 'failed', `this worker is stopping (${closedBecause})`)
      else void start(message)
    },
    heldReplicaIds: () => [...running.keys()],
    stopAll,
    async close(reason, drainMs) {
      closedBecause ??= reason
      // Every start began before close() is in `running` from its first step, so this empties it for good.
      while (running.size > 0) await stopAll(reason, drainMs)
    },
    async cleanUpLeftovers() {
      const removed = await cleanUpModelReplicaLeftovers(init.stateDir, init.netnsMountNamespace)
      if (removed > 0) logger.warn('removed model replicas left by an earlier run', { removed })
    },
  }
}

/** Output tokens per second of one short generation, through the relay as the gateway will call it. */
async function measureSpeed(relayUrl: string, accessToken: string, model: string): Promise<number> {
  const startedAt = performance.now()
  const response = await fetch(`${relayUrl}/v1/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model, prompt: 'The ', max_tokens: speedProbeTokens, temperature: 0 }),
    signal: AbortSignal.timeout(120_000),
  })
  if (!response.ok)
    throw new Error(`speed measurement answered HTTP ${response.status}: ${await response.text()}`)
  const body = (await response.json()) as { usage?: { completion_tokens?: number } }
  const seconds = (performance.now() - startedAt) / 1000
  return Math.max(0.1, (body.usage?.completion_tokens ?? 0) / seconds)
}
