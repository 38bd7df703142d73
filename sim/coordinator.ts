import { GpumeshError, type Clock } from '@gpumesh/core'
import {
  buildClusterControl,
  OfferFeed,
  OfferIndex,
  reliabilityMinHistoryMs,
  reliabilityWindowMs,
  type ClusterControl,
  type ClusterControllerComponents,
} from '@gpumesh/coordinator'
import { Presence } from '@gpumesh/presence'
import type { ClusterReportMessage } from '@gpumesh/protocol'
import type { DeviceReport, Store } from '@gpumesh/store'
import { MemoryLinks, type LinkEnd } from './link.ts'

// The coordinator's side of the simulation: the real Presence, OfferIndex and OfferFeed, and the real
// cluster controller and billing as buildCoordinator wires them (buildClusterControl), over the in-memory
// links. tick() does what the coordinator's background loops do, in their order. A "restart" is a new
// SimCoordinator over the same store: everything held in memory is gone, the store is not.

export type SimSettings = {
  readonly heartbeatIntervalMs: number
  readonly missedHeartbeatsBeforeOffline: number
  readonly restartGraceMs: number
  readonly gmtUnitsPerUsd: bigint
  readonly feeBasisPoints: number
  readonly billingIntervalMs: number
  readonly provisionTimeoutMs: number
  readonly nodeJoinTimeoutMs: number
  /** The controller's tick; heartbeats are flushed every `flushEveryTicks` ticks. */
  readonly tickMs: number
  readonly flushEveryTicks: number
}

export const defaultSimSettings: SimSettings = {
  heartbeatIntervalMs: 1_000,
  missedHeartbeatsBeforeOffline: 3,
  restartGraceMs: 10_000,
  gmtUnitsPerUsd: 1_000_000n,
  feeBasisPoints: 1_000,
  billingIntervalMs: 60_000,
  provisionTimeoutMs: 60_000,
  nodeJoinTimeoutMs: 30_000,
  tickMs: 1_000,
  flushEveryTicks: 5,
}

/** Errors the controller logged: a billing failure is logged and retried, and the simulation calls it a bug. */
export type LoggedErrors = string[]

export class SimCoordinator {
  readonly presence: Presence
  readonly index = new OfferIndex()
  readonly links: MemoryLinks
  readonly control: ClusterControl
  readonly #feed: OfferFeed
  readonly #store: Store
  readonly #clock: Clock
  readonly #offlineAfterMs: number
  readonly #flushIntervalMs: number

  constructor(
    components: {
      readonly store: Store
      readonly clock: Clock
      addressOf(deviceId: string): string
      mintId(prefix: string): string
      readonly errors: LoggedErrors
    },
    settings: SimSettings,
  ) {
    const { store, clock } = components
    this.#store = store
    this.#clock = clock
    this.#offlineAfterMs = settings.heartbeatIntervalMs * settings.missedHeartbeatsBeforeOffline
    this.#flushIntervalMs = settings.tickMs * settings.flushEveryTicks
    this.presence = new Presence({
      offlineAfterMs: this.#offlineAfterMs,
      restartGraceMs: settings.restartGraceMs,
    })
    this.links = new MemoryLinks(components.addressOf)
    this.#feed = new OfferFeed(store, this.index)
    this.control = buildClusterControl(
      {
        store,
        clock,
        index: this.index,
        links: this.links,
        presence: this.presence,
        logger: recordingLogger(components.errors),
        pullOffers: async () => {
          await this.#feed.pull()
        },
        mintId: components.mintId,
      },
      {
        offlineAfterMs: this.#offlineAfterMs,
        gmtUnitsPerUsd: settings.gmtUnitsPerUsd,
        billingEnabled: true,
        feeBasisPoints: settings.feeBasisPoints,
        billingIntervalMs: settings.billingIntervalMs,
        provisionTimeoutMs: settings.provisionTimeoutMs,
        nodeJoinTimeoutMs: settings.nodeJoinTimeoutMs,
      },
    )
  }

  get controller() {
    return this.control.controller
  }

  /** What buildCoordinator does before it serves: figures brought up to now, the index read, clusters loaded. */
  async start(): Promise<void> {
    const nowMs = this.#clock.nowMs()
    await this.#store.refreshReliability(nowMs, reliabilityWindowMs, reliabilityMinHistoryMs)
    await this.#feed.resync()
    this.index.updateMarket(new Date(nowMs).getUTCHours())
    await this.controller.start()
  }

  /** A worker authenticated, reported its machine and said which cluster nodes it holds. */
  async connect(deviceId: string, end: LinkEnd, report: DeviceReport, heldClusterIds: string[]) {
    const nowMs = this.#clock.nowMs()
    const device = await this.#store.getDevice(deviceId)
    if (!device) throw new Error(`sim: no device ${deviceId}`)
    this.links.open(deviceId, end)
    const outcome = this.presence.connect(deviceId, end.sessionId, nowMs, device.lastSeenAtMs, 'simulated')
    await this.#store.applyDeviceStateChanges([outcome.change])
    await this.#store.saveDeviceReport(deviceId, report)
    await this.controller.onReport(deviceId, { type: 'cluster_nodes_held', clusterIds: heldClusterIds })
  }

  /** The connection closed (the network dropped it, or the worker went away cleanly). */
  async disconnect(deviceId: string, sessionId: string, detail: string): Promise<void> {
    if (!this.links.close(deviceId, sessionId)) return
    const change = this.presence.disconnect(deviceId, sessionId, this.#clock.nowMs(), {
      kind: 'closed',
      detail,
    })
    if (change) await this.#store.applyDeviceStateChanges([change])
  }

  heartbeat(deviceId: string, sessionId: string): void {
    this.presence.heartbeat(deviceId, sessionId, this.#clock.nowMs())
  }

  /** A frame from a worker; dropped when its connection is no longer the device's current one. */
  async fromWorker(deviceId: string, sessionId: string, message: ClusterReportMessage): Promise<void> {
    if (!this.links.isCurrent(deviceId, sessionId)) return
    await this.controller.onReport(deviceId, message)
  }

  /** One pass of the background loops: silent workers expired, heartbeats flushed, index, market, clusters. */
  async tick({ flush }: { flush: boolean }): Promise<void> {
    const nowMs = this.#clock.nowMs()
    const expired = this.presence.expire(nowMs)
    if (expired.length > 0) {
      await this.#store.applyDeviceStateChanges(expired.map((entry) => entry.change))
      for (const { deviceId, sessionId } of expired) this.links.close(deviceId, sessionId)
    }
    if (flush) {
      const entries = this.presence.drainFlush()
      if (entries.length > 0) await this.#store.flushHeartbeats(entries)
      await this.#store.sweepSilentDevices(
        nowMs - this.#offlineAfterMs - 2 * this.#flushIntervalMs,
        nowMs,
        'no heartbeat recorded by any coordinator',
      )
    }
    await this.#feed.pull()
    this.index.updateMarket(new Date(nowMs).getUTCHours())
    await this.controller.tick()
    await this.#store.ledger.expirePending(nowMs)
  }
}

/** A renter's refusal the API would answer with a 4xx: expected. Anything else is a bug found. */
export function isRefusal(error: unknown): boolean {
  return error instanceof GpumeshError
}

function recordingLogger(errors: LoggedErrors): ClusterControllerComponents['logger'] {
  const ignore = () => undefined
  const logger = {
    level: 'error',
    silent: ignore,
    trace: ignore,
    debug: ignore,
    info: ignore,
    warn: ignore,
    fatal: (...args: unknown[]) => errors.push(describe(args)),
    error: (...args: unknown[]) => errors.push(describe(args)),
    child: () => logger,
  }
  return logger as unknown as ClusterControllerComponents['logger']
}

function describe(args: unknown[]): string {
  const [first, second] = args
  const err = (first as { err?: unknown } | undefined)?.err
  const message = typeof second === 'string' ? second : typeof first === 'string' ? first : 'error'
  return err instanceof Error ? `${message}: ${err.message}` : message
}
