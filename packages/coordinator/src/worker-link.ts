import { randomBytes } from 'node:crypto'
import {
  parseUsdToMicro,
  ValidationError,
  WorkerAuthError,
  type Clock,
  type DevicePricing,
} from '@gpumesh/core'
import {
  workerMessageValidator,
  sessionSigningPayload,
  workerProtocolVersion,
  WorkerCloseCode,
  WorkerMessage,
  type CapabilitiesMessage,
  type ChallengeCommitmentMessage,
  type ChallengeOpeningMessage,
  type ClusterReportMessage,
  type CoordinatorMessage,
  type ModelReplicaReportMessage,
  type ReportMessage,
  type RttReportMessage,
} from '@gpumesh/protocol'
import type { DeviceStateChange, Store } from '@gpumesh/store'
import type { FastifyBaseLogger } from 'fastify'
import type { WebSocket } from 'ws'
import { mintIdBody } from './credentials.ts'
import type { Presence } from '@gpumesh/presence'
import { verifyEd25519 } from './signatures.ts'
import { unstorableFields } from './edge-validation.ts'

// One WebSocket per worker. Every frame is size-checked (by ws), parsed and schema-validated before it is
// acted on; a bad frame closes that connection with a reason and nothing else is affected.

export const workerAuthTimeoutMs = 10_000
/** A worker may re-report its hardware at most this often; extra reports are dropped. */
export const minReportIntervalMs = 5_000
const maxCloseReasonBytes = 120

export type WorkerLinkComponents = {
  readonly store: Store
  readonly clock: Clock
  readonly presence: Presence
  readonly logger: FastifyBaseLogger
  readonly heartbeatIntervalMs: number
  /** Persists state changes; a failed write is retried by the caller. */
  recordStateChanges(changes: readonly DeviceStateChange[]): Promise<void>
  readonly events?: WorkerLinkEvents
  /** Counts heartbeats for GET /metrics. */
  onHeartbeat?(): void
}

/** What other parts (proof-of-compute, the cluster controller) hear from the link. */
export type WorkerLinkEvents = {
  onReport?(deviceId: string, message: ReportMessage): Promise<void>
  /** The device's self-test found something new (stored before this is called). */
  onCapabilities?(deviceId: string, message: CapabilitiesMessage): Promise<void>
  onChallengeMessage?(
    deviceId: string,
    message: ChallengeCommitmentMessage | ChallengeOpeningMessage,
  ): Promise<void>
  onChallengeMalformed?(deviceId: string, detail: string): Promise<void>
  onDisconnected?(deviceId: string, closeCode: number): Promise<void>
  onClusterReport?(deviceId: string, message: ClusterReportMessage): Promise<void>
  onRttReport?(deviceId: string, message: RttReportMessage): Promise<void>
  onModelReplicaReport?(deviceId: string, message: ModelReplicaReportMessage): Promise<void>
}

type Session = {
  readonly deviceId: string
  readonly sessionId: string
  lastReportAtMs: number
  lastCapabilitiesAtMs: number
  /** A newer self-test outcome that came too soon after the last: applied when the interval has passed. */
  pendingCapabilities?: CapabilitiesMessage
  capabilitiesTimer?: NodeJS.Timeout
}
/** A new self-test outcome is applied at most this often per connection; a sooner one waits. */
export const minCapabilitiesIntervalMs = 1_000

export class WorkerLinks {
  readonly #components: WorkerLinkComponents
  readonly #sockets = new Map<string, { socket: WebSocket; sessionId: string; remoteAddress: string }>()
  /** Each connection's frame queue while it has work; drained on shutdown so nothing writes after it. */
  readonly #queues = new Set<Promise<void>>()
  #shuttingDown = false
  #openSockets = 0

  constructor(components: WorkerLinkComponents) {
    this.#components = components
  }

  get connectedCount(): number {
    return this.#sockets.size
  }

  /** Open worker sockets, authenticated or not: what uses descriptors. */
  get openSocketCount(): number {
    return this.#openSockets
  }

  /** The address a connected device's link comes from (IPv4-mapped IPv6 unwrapped). */
  remoteAddressOf(deviceId: string): string | undefined {
    return this.#sockets.get(deviceId)?.remoteAddress.replace(/^::ffff:/, '')
  }

  /** Closes the socket of a device's current session (used when presence expires it). */
  close(deviceId: string, sessionId: string, code: number, reason: string): void {
    const current = this.#sockets.get(deviceId)
    if (current && current.sessionId === sessionId) {
      this.#sockets.delete(deviceId)
      current.socket.close(code, truncateReason(reason))
    }
  }

  /** Sends to a device's current session; false when it has none here. */
  send(deviceId: string, message: CoordinatorMessage): boolean {
    const current = this.#sockets.get(deviceId)
    if (!current || current.socket.readyState !== current.socket.OPEN) return false
    current.socket.send(JSON.stringify(message))
    return true
  }

  /** Closes every socket; from here on, closes and frames no longer reach the store. */
  closeAll(code: number, reason: string): void {
    this.#shuttingDown = true
    for (const { socket } of this.#sockets.values()) socket.close(code, reason)
    this.#sockets.clear()
  }

  /** Waits for the frames already being handled. */
  async drain(): Promise<void> {
    await Promise.allSettled([...this.#queues])
  }

  accept(socket: WebSocket, remoteAddress: string): void {
    const { logger, clock } = this.#components
    this.#openSockets += 1
    socket.once('close', () => (this.#openSockets -= 1))
    const nonce = randomBytes(32).toString('base64url')
    let session: Session | undefined
    let closed = false
    // Frames are handled strictly in order, one at a time, since auth and reports await the store.
    let queue: Promise<void> = Promise.resolve()
    const enqueue = (work: () => Promise<void> | void) => {
      if (this.#shuttingDown) return
      const next = queue.then(work)
      queue = next.catch((error: unknown) => {
        logger.error({ err: error, deviceId: session?.deviceId }, 'worker frame handling failed')
        refuse(WorkerCloseCode.goingAway, 'internal error')
      })
      this.#queues.add(queue)
      const tracked = queue
      void tracked.finally(() => this.#queues.delete(tracked))
    }

    const refuse = (code: number, reason: string) => {
      if (closed) return
      closed = true
      socket.close(code, truncateReason(reason))
    }
    const authTimer = setTimeout(
      () => refuse(WorkerCloseCode.authFailed, 'authentication timed out'),
      workerAuthTimeoutMs,
    )
    const authenticated = (next: Session) => {
      session = next
      clearTimeout(authTimer)
    }

    send(socket, { type: 'auth_challenge', nonce, protocolVersion: workerProtocolVersion })

    socket.on('message', (data, isBinary) => {
      if (closed) return
      if (isBinary) return refuse(WorkerCloseCode.protocolError, 'binary frames are not part of the protocol')
      let message: WorkerMessage
      let raw: unknown
      try {
        raw = JSON.parse(rawToString(data))
        message = workerMessageValidator.parse(raw)
        // The store refuses NUL and lone surrogates; a frame carrying them is bad input, not an internal error.
        const unstorable = unstorableFields(raw)
        if (unstorable.length > 0) throw new ValidationError(unstorable, 'worker message')
      } catch (error) {
        // A bad proof-of-compute answer fails that challenge, with its reason; the session itself goes on.
        const type = (raw as { type?: unknown } | undefined)?.type
        const events = this.#components.events
        if (
          session &&
          events?.onChallengeMalformed &&
          typeof type === 'string' &&
          type.startsWith('challenge_')
        ) {
          const deviceId = session.deviceId
          const onMalformed = events.onChallengeMalformed
          enqueue(() => onMalformed(deviceId, String((error as Error).message)))
          return
        }
        logger.warn(
          { remoteAddress, deviceId: session?.deviceId, error: String(error) },
          'malformed worker frame',
        )
        return refuse(
          WorkerCloseCode.policyViolation,
          error instanceof SyntaxError ? 'malformed JSON' : String((error as Error).message),
        )
      }
      enqueue(() =>
        closed
          ? undefined
          : this.#handle(socket, remoteAddress, message, nonce, session, authenticated, refuse, enqueue),
      )
    })

    socket.on('error', (error) => logger.warn({ remoteAddress, err: error }, 'worker socket error'))
    socket.on('close', (code, reasonBuffer) => {
      closed = true
      clearTimeout(authTimer)
      const ended = session
      if (!ended) return
      clearTimeout(ended.capabilitiesTimer)
      enqueue(async () => {
        const current = this.#sockets.get(ended.deviceId)
        if (current?.socket === socket) this.#sockets.delete(ended.deviceId)
        const change = this.#components.presence.disconnect(ended.deviceId, ended.sessionId, clock.nowMs(), {
          kind: 'closed',
          detail: `code ${code}${reasonBuffer.length ? `: ${reasonBuffer.toString()}` : ''}`,
        })
        if (change) await this.#components.recordStateChanges([change])
        await this.#components.events?.onDisconnected?.(ended.deviceId, code)
      })
    })
  }

  async #handle(
    socket: WebSocket,
    remoteAddress: string,
    message: WorkerMessage,
    nonce: string,
    session: Session | undefined,
    setSession: (session: Session) => void,
    refuse: (code: number, reason: string) => void,
    enqueue: (work: () => Promise<void> | void) => void,
  ): Promise<void> {
    const { presence, clock, store, logger } = this.#components
    if (!session) {
      if (message.type !== 'auth')
        return refuse(WorkerCloseCode.policyViolation, `expected auth, got ${message.type}`)
      const device = await store.getDevice(message.deviceId)
      const payload = sessionSigningPayload(nonce, message.deviceId)
      if (!device || !verifyEd25519(device.publicKey, payload, message.signature)) {
        const error = new WorkerAuthError('unknown device or bad signature')
        logger.warn({ deviceId: message.deviceId }, 'refused worker credentials')
        send(socket, { type: 'error', code: error.code, message: error.message })
        return refuse(WorkerCloseCode.authFailed, error.message)
      }
      if (device.state === 'blocked') {
        send(socket, { type: 'error', code: 'GPUMESH_ERR_DEVICE_BLOCKED', message: device.stateReason })
        return refuse(WorkerCloseCode.blocked, `device blocked: ${device.stateReason}`)
      }
      const sessionId = mintIdBody()
      const previous = this.#sockets.get(device.id)
      this.#sockets.set(device.id, { socket, sessionId, remoteAddress })
      if (previous) previous.socket.close(WorkerCloseCode.replaced, 'replaced by a newer session')
      const outcome = presence.connect(
        device.id,
        sessionId,
        clock.nowMs(),
        device.lastSeenAtMs,
        message.agentVersion,
      )
      // What the last session could do is not what this one can (a worker restarted with --no-clusters):
      // the device gets nothing that needs a capability until this session's report says it has it.
      if (device.capabilities !== null) await store.setDeviceCapabilities(device.id, null)
      setSession({
        deviceId: device.id,
        sessionId,
        lastReportAtMs: -Infinity,
        lastCapabilitiesAtMs: -Infinity,
      })
      await this.#components.recordStateChanges([outcome.change])
      send(socket, {
        type: 'welcome',
        deviceId: device.id,
        sessionId,
        heartbeatIntervalMs: this.#components.heartbeatIntervalMs,
      })
      logger.info({ deviceId: device.id, creditedGapMs: outcome.creditedGapMs }, 'worker connected')
      return
    }
    switch (message.type) {
      case 'auth':
        return refuse(WorkerCloseCode.policyViolation, 'already authenticated')
      case 'heartbeat':
        this.#components.onHeartbeat?.()
        presence.heartbeat(session.deviceId, session.sessionId, clock.nowMs())
        return
      case 'report':
        if (!(await this.#report(socket, session, message))) return
        return this.#components.events?.onReport?.(session.deviceId, message)
      case 'capabilities': {
        // Too soon after the last: kept and applied once the interval has passed, in this connection's order;
        // a flood costs one write per interval, and the newest outcome is never dropped.
        const waitMs = session.lastCapabilitiesAtMs + minCapabilitiesIntervalMs - clock.nowMs()
        if (waitMs <= 0) return this.#applyCapabilities(session, message)
        session.pendingCapabilities = message
        session.capabilitiesTimer ??= setTimeout(() => {
          session.capabilitiesTimer = undefined
          enqueue(() => {
            const pending = session.pendingCapabilities
            session.pendingCapabilities = undefined
            return pending && this.#sockets.get(session.deviceId)?.sessionId === session.sessionId
              ? this.#applyCapabilities(session, pending)
              : undefined
          })
        }, waitMs)
        return
      }
      case 'challenge_commitment':
      case 'challenge_opening':
        return this.#components.events?.onChallengeMessage?.(session.deviceId, message)
      case 'cluster_node_key':
      case 'cluster_node_status':
      case 'cluster_ray_nodes':
      case 'cluster_job_log':
      case 'cluster_job_status':
      case 'cluster_nodes_held':
        return this.#components.events?.onClusterReport?.(session.deviceId, message)
      case 'rtt_report':
        return this.#components.events?.onRttReport?.(session.deviceId, message)
      case 'model_replica_status':
      case 'model_replicas_held':
        return this.#components.events?.onModelReplicaReport?.(session.deviceId, message)
      case 'goodbye': {
        const change = presence.disconnect(session.deviceId, session.sessionId, clock.nowMs(), {
          kind: 'goodbye',
          reason: message.reason,
        })
        this.#sockets.delete(session.deviceId)
        if (change) await this.#components.recordStateChanges([change])
        return refuse(WorkerCloseCode.normal, 'goodbye')
      }
    }
  }

  async #applyCapabilities(session: Session, message: CapabilitiesMessage): Promise<void> {
    session.lastCapabilitiesAtMs = this.#components.clock.nowMs()
    await this.#components.store.setDeviceCapabilities(session.deviceId, message.capabilities)
    await this.#components.events?.onCapabilities?.(session.deviceId, message)
  }

  /** False when the report was dropped for coming too soon after the last. */
  async #report(socket: WebSocket, session: Session, message: ReportMessage): Promise<boolean> {
    const nowMs = this.#components.clock.nowMs()
    if (nowMs - session.lastReportAtMs < minReportIntervalMs) {
      send(socket, {
        type: 'error',
        code: 'GPUMESH_ERR_RATE_LIMITED',
        message: 'hardware report ignored: too frequent',
      })
      return false
    }
    session.lastReportAtMs = nowMs
    this.#components.presence.heartbeat(session.deviceId, session.sessionId, nowMs)
    await this.#components.store.saveDeviceReport(session.deviceId, {
      hostname: message.inventory.hostname,
      inventory: message.inventory,
      region: message.location.region,
      country: message.location.country,
      ...reportedPricing(message),
      ...(message.capabilities ? { capabilities: message.capabilities } : {}),
    })
    return true
  }
}

/** The pricing a report carries, if any (see ReportMessage). */
function reportedPricing(message: ReportMessage): { pricing?: DevicePricing } {
  const price =
    message.askingPricePerGpuHourUsd === undefined ? null : parseUsdToMicro(message.askingPricePerGpuHourUsd)
  if (message.pricingMode === undefined && price === null) return {}
  return { pricing: { mode: message.pricingMode ?? 'fixed', askingPriceMicroUsd: price } }
}

function send(socket: WebSocket, message: CoordinatorMessage): void {
  if (socket.readyState === socket.OPEN) socket.send(JSON.stringify(message))
}

function rawToString(data: unknown): string {
  if (Buffer.isBuffer(data)) return data.toString('utf8')
  if (Array.isArray(data)) return Buffer.concat(data as Buffer[]).toString('utf8')
  return Buffer.from(data as ArrayBuffer).toString('utf8')
}

function truncateReason(reason: string): string {
  const bytes = Buffer.from(reason)
  return bytes.length <= maxCloseReasonBytes
    ? reason
    : bytes.subarray(0, maxCloseReasonBytes).toString('utf8')
}
