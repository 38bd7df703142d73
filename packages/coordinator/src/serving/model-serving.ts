import { randomBytes } from 'node:crypto'
import { formatMicroUsd, parseUsdToMicro, type Clock } from '@gpumesh/core'
import {
  defaultInferencePricingPolicy,
  quoteTokenPrices,
  type InferencePricingPolicy,
  type TokenPrices,
} from '@gpumesh/pricing'
import {
  rentalDrainMs,
  type ModelReplicaReportMessage,
  type ModelReplicaStatusMessage,
  type ReportMessage,
  type ServingPreference,
  capable,
  incapable,
  type WorkerCapabilities,
} from '@gpumesh/protocol'
import { planModelReplicas, type ReplicaState, type ServingDevice } from '@gpumesh/scheduler'
import type { DeviceServingRecord, ModelRecord, Store } from '@gpumesh/store'
import type { FastifyBaseLogger } from 'fastify'
import { mintIdBody } from '../credentials.ts'
import type { OfferIndex } from '../offers/offer-index.ts'
import type { Presence } from '@gpumesh/presence'
import type { WorkerLinks } from '../worker-link.ts'

// The replicas serving models on idle devices, as this coordinator knows them: it places them (see
// planModelReplicas), hears how each is doing from its worker, evicts them the moment their device is rented,
// and tells the gateway which ready replica is least loaded. A replica is reached only through its worker's
// relay, with a token minted here for that replica alone.

export type ModelServingComponents = {
  readonly store: Store
  readonly clock: Clock
  readonly index: OfferIndex
  readonly presence: Presence
  readonly links: WorkerLinks
  readonly log: FastifyBaseLogger
  readonly gmtUnitsPerUsd: bigint
}

export type ModelServingInit = {
  readonly drainMs: number
  /** Requests in flight per replica the placement aims for: above it, more replicas are wanted. */
  readonly targetInFlightPerReplica: number
  /** A replica not ready this long after it was asked for is given up and its device skipped for a while. */
  readonly startTimeoutMs: number
  /** Only devices that passed proof-of-compute serve (off only where verification itself is off). */
  readonly requireVerified: boolean
  readonly pricingPolicy?: InferencePricingPolicy
}

export type Replica = {
  readonly replicaId: string
  readonly deviceId: string
  readonly supplierAccountId: string
  readonly model: ModelRecord
  readonly accessToken: string
  readonly askedAtMs: number
  phase: ModelReplicaStatusMessage['phase'] | 'requested'
  relayUrl?: string
  outputTokensPerSecond?: number
  inFlight: number
  /** When the coordinator decided to stop it (null while it serves): the gateway sends it nothing new. */
  drainingSinceMs: number | null
  /** Failures before a first token since its last answer; a few in a row rest it for a while. */
  consecutiveFailures: number
  restingUntilMs: number
}

export type ModelServing = {
  /** The model a request names (name, or name:version), if it is in the store and ready. */
  resolveModel(requested: string): ModelRecord | undefined
  /** The model's token prices now; undefined while no replica is ready. */
  pricesOf(modelId: string): TokenPrices | undefined
  /** Replicas the gateway may send requests to: ready, and not being stopped. */
  readyReplicas(modelId?: string): Replica[]
  /** Replicas this coordinator knows, by phase (draining ones apart), for GET /metrics. */
  replicasByPhase(): Record<string, number>
  /** Live models, with their ready replica counts. */
  servedModels(): { model: ModelRecord; ready: number }[]
  /** A supplier's choice for one device (API or report). */
  setPreference(deviceId: string, preference: ServingPreference): Promise<DeviceServingRecord>
  preferenceOf(deviceId: string): DeviceServingRecord | undefined
  replicaOn(deviceId: string): Replica | undefined
  onReport(deviceId: string, message: ReportMessage): Promise<void>
  onReplicaReport(deviceId: string, message: ModelReplicaReportMessage): Promise<void>
  onDisconnected(deviceId: string): void
  /** The device's self-test found something new. */
  onCapabilities(deviceId: string, capabilities: WorkerCapabilities): void
  /** Stops a device's replica now (it was rented): the gateway routes around it from this moment. */
  evict(deviceId: string, reason: string): void
  /** Places and stops replicas; run every modelServingPlanMs. */
  tick(): Promise<void>
  start(): Promise<void>
}

const modelsRefreshMs = 2_000

/** How receipts, statistics and the explorer name a model version: name:version. */
export function modelKeyOf(model: Pick<ModelRecord, 'name' | 'version'>): string {
  return `${model.name}:${model.version}`
}

/** Whether the gateway may send a replica requests: ready, and not being stopped. */
const serves = (replica: Replica) => replica.phase === 'ready' && replica.drainingSinceMs === null
/** After a failed replica its device rests this long, doubling with each failure in a row. */
export const failedReplicaCooldownMs = 30_000
export const maxFailedReplicaCooldownMs = 10 * 60_000
/** This many failed replicas in a row and the device is no longer tried until its supplier acts. */
export const maxFailedReplicasInARow = 3
const suspendedReasonPrefix = 'suspended after'

export function createModelServing(components: ModelServingComponents, init: ModelServingInit): ModelServing {
  const { store, clock, index, presence, links, log } = components
  const policy = init.pricingPolicy ?? defaultInferencePricingPolicy
  const replicas = new Map<string, Replica>()
  const preferences = new Map<string, DeviceServingRecord>()
  /** Devices whose replicas failed: how many in a row, and until when they rest. */
  const failures = new Map<string, { inARow: number; restUntilMs: number }>()
  /** Counts a failure; the third in a row suspends the device's serving, with the reason, until fixed. */
  const recordFailure = async (deviceId: string, detail: string) => {
    const inARow = (failures.get(deviceId)?.inARow ?? 0) + 1
    const restMs = Math.min(maxFailedReplicaCooldownMs, failedReplicaCooldownMs * 2 ** (inARow - 1))
    failures.set(deviceId, { inARow, restUntilMs: clock.nowMs() + restMs })
    if (inARow < maxFailedReplicasInARow) return
    const capabilities = index.capabilitiesOf(deviceId)
    if (!capabilities || !capabilities.modelReplicas.available) return
    const reason = `${suspendedReasonPrefix} ${inARow} failed replicas in a row; the last: ${detail}`
    log.warn({ deviceId, reason }, 'model serving suspended on a device')
    await store.setDeviceCapabilities(deviceId, {
      ...capabilities,
      modelReplicas: incapable(
        reason,
        'fix the cause (see the worker log), then restart the worker or run: gpumesh inference serve DEVICE',
      ),
    })
  }
  /** A supplier turning serving on again lifts a suspension: the next replica is tried at once. */
  const liftSuspension = async (deviceId: string) => {
    failures.delete(deviceId)
    const capabilities = index.capabilitiesOf(deviceId)
    if (capabilities?.modelReplicas.reason?.startsWith(suspendedReasonPrefix))
      await store.setDeviceCapabilities(deviceId, { ...capabilities, modelReplicas: capable() })
  }
  /** Load per model, smoothed: what placement scales on. */
  const smoothedInFlight = new Map<string, number>()
  let models: ModelRecord[] = []
  let modelsReadAtMs = -Infinity

  const refreshModels = async () => {
    if (clock.nowMs() - modelsReadAtMs < modelsRefreshMs) return
    models = (await store.models.listModels()).filter((model) => model.state === 'ready')
    modelsReadAtMs = clock.nowMs()
  }

  const replicaOn = (deviceId: string) => {
    for (const replica of replicas.values()) if (replica.deviceId === deviceId) return replica
    return undefined
  }

  const stopReplica = (replica: Replica, reason: string, drainMs = init.drainMs) => {
    if (replica.drainingSinceMs !== null) return
    replica.drainingSinceMs = clock.nowMs()
    log.info({ replicaId: replica.replicaId, deviceId: replica.deviceId, reason }, 'stopping model replica')
    links.send(replica.deviceId, {
      type: 'model_replica_stop',
      replicaId: replica.replicaId,
      reason,
      drainMs,
    })
  }

  const floorOf = (deviceId: string): bigint | undefined => {
    const preference = preferences.get(deviceId)
    if (preference?.minPriceMicroUsd != null) return preference.minPriceMicroUsd
    const offer = index.idleOfferOf(deviceId)
    return offer ? (parseUsdToMicro(offer.pricePerGpuHourUsd) ?? undefined) : undefined
  }

  const servingDevices = (): ServingDevice[] => {
    const devices: ServingDevice[] = []
    const consider = new Set([...preferences.keys(), ...[...replicas.values()].map((r) => r.deviceId)])
    for (const deviceId of consider) {
      const preference = preferences.get(deviceId)
      const offer = index.idleOfferOf(deviceId)
      const capability = index.capabilitiesOf(deviceId)?.modelReplicas
      const reason = !preference?.enabled
        ? 'its supplier stopped serving models on it'
        : capability && !capability.available
          ? `it cannot run model replicas: ${capability.reason}`
          : !capability
            ? 'its worker has not reported what it can do'
            : !presence.isConnected(deviceId)
              ? 'device offline'
              : !offer
                ? 'device rented or unlisted'
                : init.requireVerified && offer.verificationState !== 'verified'
                  ? 'device not verified'
                  : (failures.get(deviceId)?.restUntilMs ?? 0) > clock.nowMs()
                    ? 'device failed a replica recently'
                    : undefined
      devices.push({
        deviceId,
        eligible: reason === undefined,
        ...(reason ? { ineligibleReason: reason } : {}),
        gpuCount: offer?.gpuCount ?? 0,
        vramMibPerGpu: offer?.vramMibPerGpu ?? 0,
        memoryMib: offer?.memoryMib ?? 0,
        floorMicroUsdPerGpuHour: floorOf(deviceId) ?? 0n,
      })
    }
    return devices
  }

  const startReplica = async (deviceId: string, model: ModelRecord) => {
    const device = await store.getDevice(deviceId)
    if (!device) return
    const replica: Replica = {
      replicaId: `mr_${mintIdBody()}`,
      deviceId,
      supplierAccountId: device.accountId,
      model,
      accessToken: randomBytes(32).toString('base64url'),
      askedAtMs: clock.nowMs(),
      phase: 'requested',
      inFlight: 0,
      drainingSinceMs: null,
      consecutiveFailures: 0,
      restingUntilMs: 0,
    }
    replicas.set(replica.replicaId, replica)
    log.info({ replicaId: replica.replicaId, deviceId, model: modelKeyOf(model) }, 'placing model replica')
    const sent = links.send(deviceId, {
      type: 'model_replica_start',
      replicaId: replica.replicaId,
      model: {
        name: model.name,
        version: model.version,
        artifacts: model.artifacts.map((artifact) => ({ ...artifact })),
      },
      accessToken: replica.accessToken,
      minReplicas: 1,
      maxReplicas: Math.max(1, Math.min(4, index.idleOfferOf(deviceId)?.gpuCount ?? 1)),
    })
    if (!sent) replicas.delete(replica.replicaId)
  }

  return {
    resolveModel(requested) {
      const [name, version] = requested.split(':', 2)
      const candidates = models.filter(
        (model) => model.name === name && (!version || model.version === version),
      )
      // By name alone: the newest version that is being served, else the newest.
      const served = candidates.filter((model) =>
        [...replicas.values()].some((r) => r.model.id === model.id && r.phase === 'ready'),
      )
      return (served[0] ?? candidates[0]) as ModelRecord | undefined
    },

    pricesOf(modelId) {
      const ready = [...replicas.values()].filter(
        (r) => r.model.id === modelId && serves(r) && r.outputTokensPerSecond,
      )
      const utilizationBp =
        ready.length === 0
          ? undefined
          : Math.min(
              10_000,
              Math.round(
                ((smoothedInFlight.get(modelId) ?? 0) / (ready.length * init.targetInFlightPerReplica)) *
                  10_000,
              ),
            )
      return quoteTokenPrices(
        policy,
        ready.map((replica) => ({
          deviceId: replica.deviceId,
          minPricePerGpuHourMicroUsd: floorOf(replica.deviceId) ?? 0n,
          gpuCount: index.idleOfferOf(replica.deviceId)?.gpuCount ?? 1,
          outputTokensPerSecond: replica.outputTokensPerSecond!,
        })),
        utilizationBp,
        index.pricingPolicy,
        components.gmtUnitsPerUsd,
      )
    },

    readyReplicas(modelId) {
      return [...replicas.values()].filter(
        (r) => serves(r) && (modelId === undefined || r.model.id === modelId),
      )
    },

    replicasByPhase() {
      const counts: Record<string, number> = {}
      for (const replica of replicas.values()) {
        const phase = replica.drainingSinceMs === null ? replica.phase : 'draining'
        counts[phase] = (counts[phase] ?? 0) + 1
      }
      return counts
    },

    servedModels() {
      return models.map((model) => ({
        model,
        ready: [...replicas.values()].filter((r) => r.model.id === model.id && serves(r)).length,
      }))
    },

    async setPreference(deviceId, preference) {
      const minPrice =
        preference.minPricePerGpuHourUsd === undefined
          ? null
          : parseUsdToMicro(preference.minPricePerGpuHourUsd)
      const record: DeviceServingRecord = {
        deviceId,
        enabled: preference.enabled,
        minPriceMicroUsd: minPrice,
      }
      await store.inference.setServing(record, clock.nowMs())
      preferences.set(deviceId, record)
      if (record.enabled) await liftSuspension(deviceId)
      return record
    },

    preferenceOf: (deviceId) => preferences.get(deviceId),
    replicaOn,

    async onReport(deviceId, message) {
      if (!message.serving) return
      const known = preferences.get(deviceId)
      const minPrice =
        message.serving.minPricePerGpuHourUsd === undefined
          ? null
          : parseUsdToMicro(message.serving.minPricePerGpuHourUsd)
      if (known && known.enabled === message.serving.enabled && known.minPriceMicroUsd === minPrice) return
      await this.setPreference(deviceId, message.serving)
    },

    async onReplicaReport(deviceId, message) {
      if (message.type === 'model_replicas_held') {
        // Replicas this coordinator does not know (it restarted) are stopped; placement starts fresh ones.
        for (const replicaId of message.replicaIds) {
          const replica = replicas.get(replicaId)
          if (!replica || replica.deviceId !== deviceId)
            links.send(deviceId, {
              type: 'model_replica_stop',
              replicaId,
              reason: 'unknown to the coordinator',
              drainMs: 0,
            })
        }
        for (const replica of [...replicas.values()])
          if (
            replica.deviceId === deviceId &&
            !message.replicaIds.includes(replica.replicaId) &&
            replica.phase !== 'requested'
          )
            replicas.delete(replica.replicaId)
        return
      }
      const replica = replicas.get(message.replicaId)
      if (!replica || replica.deviceId !== deviceId) return
      if (message.refusedArtifact) {
        log.warn(
          { deviceId, replicaId: replica.replicaId, ...message.refusedArtifact },
          'worker refused a model artifact',
        )
        await store.inference.recordArtifactRefusal({
          deviceId,
          model: modelKeyOf(replica.model),
          path: message.refusedArtifact.path,
          expectedSha256: message.refusedArtifact.expectedSha256,
          receivedSha256: message.refusedArtifact.receivedSha256,
          atMs: clock.nowMs(),
        })
      }
      replica.phase = message.phase
      if (message.relayPort) {
        const host = message.relayHost ?? links.remoteAddressOf(deviceId)
        if (host) replica.relayUrl = `http://${host}:${message.relayPort}`
      }
      if (message.outputTokensPerSecond !== undefined)
        replica.outputTokensPerSecond = message.outputTokensPerSecond
      if (message.phase === 'ready') failures.delete(deviceId)
      if (message.phase === 'ready')
        log.info(
          {
            replicaId: replica.replicaId,
            deviceId,
            readyAfterMs: clock.nowMs() - replica.askedAtMs,
            tokensPerSecond: replica.outputTokensPerSecond,
          },
          'model replica ready',
        )
      if (message.phase === 'failed') {
        log.warn({ replicaId: replica.replicaId, deviceId, detail: message.detail }, 'model replica failed')
        replicas.delete(replica.replicaId)
        await recordFailure(deviceId, message.detail)
      }
      if (message.phase === 'stopped') replicas.delete(replica.replicaId)
    },

    onCapabilities(deviceId, capabilities) {
      // A new self-test outcome: whatever failed before may be fixed, so the device starts with a clean slate.
      failures.delete(deviceId)
      if (!capabilities.modelReplicas.available)
        this.evict(deviceId, `it can no longer run model replicas: ${capabilities.modelReplicas.reason}`)
    },

    onDisconnected(deviceId) {
      for (const replica of [...replicas.values()])
        if (replica.deviceId === deviceId) replicas.delete(replica.replicaId)
    },

    evict(deviceId, reason) {
      const replica = replicaOn(deviceId)
      if (replica) stopReplica(replica, reason, rentalDrainMs)
    },

    async tick() {
      await refreshModels()
      const nowMs = clock.nowMs()
      for (const replica of [...replicas.values()]) {
        if (
          replica.phase !== 'ready' &&
          replica.drainingSinceMs === null &&
          nowMs - replica.askedAtMs > init.startTimeoutMs
        ) {
          stopReplica(replica, 'not ready in time')
          await recordFailure(replica.deviceId, 'not ready in time')
        }
        // A draining replica whose worker never confirmed the stop is forgotten after twice the drain time.
        if (replica.drainingSinceMs !== null && nowMs - replica.drainingSinceMs > 2 * init.drainMs + 10_000)
          replicas.delete(replica.replicaId)
      }
      const wanted = new Map<string, number>()
      for (const model of models) {
        const inFlight = [...replicas.values()]
          .filter((r) => r.model.id === model.id)
          .reduce((sum, r) => sum + r.inFlight, 0)
        const smoothed = 0.7 * (smoothedInFlight.get(model.id) ?? 0) + 0.3 * inFlight
        smoothedInFlight.set(model.id, smoothed)
        wanted.set(model.id, Math.ceil(smoothed / init.targetInFlightPerReplica))
      }
      const state: ReplicaState[] = [...replicas.values()].map((replica) => ({
        replicaId: replica.replicaId,
        deviceId: replica.deviceId,
        modelId: replica.model.id,
        draining: replica.drainingSinceMs !== null,
        inFlight: replica.inFlight,
      }))
      const decisions = planModelReplicas(
        models.map((model) => ({
          modelId: model.id,
          requiredVramMib: model.requiredVramMib,
          minReplicas: model.minReplicas,
          maxReplicas: model.maxReplicas,
          wantedByLoad: wanted.get(model.id) ?? 0,
        })),
        servingDevices(),
        state,
      )
      for (const { replicaId, reason } of decisions.stop) {
        const replica = replicas.get(replicaId)
        if (replica) stopReplica(replica, reason)
      }
      for (const { deviceId, modelId } of decisions.start) {
        const model = models.find((candidate) => candidate.id === modelId)
        if (model) await startReplica(deviceId, model)
      }
    },

    async start() {
      for (const record of await store.inference.listServing()) preferences.set(record.deviceId, record)
      await refreshModels()
    },
  }
}

/** A floor for display: USD per GPU-hour, or null for "the rental price". */
export function formatFloor(record: DeviceServingRecord | undefined): string | null {
  return record?.minPriceMicroUsd == null ? null : formatMicroUsd(record.minPriceMicroUsd)
}
