import {
  mergeFlushEntries,
  type DeviceStateChange,
  type HeartbeatFlushEntry,
  type UptimeBucket,
} from './records.ts'
import { mergeBuckets, splitIntoBuckets } from './uptime.ts'

// Who is connected, as seen by this coordinator process: absorbs heartbeats in memory and hands the store
// one batch per flush. Pure: time comes in as arguments, decisions come out as values.

export type PresenceRules = {
  /** A device silent for longer than this goes offline (default 3 × 10 s). */
  readonly offlineAfterMs: number
  /** A device back within this long of its last heartbeat is credited the gap: a restart is not downtime. */
  readonly restartGraceMs: number
}

type SessionPresence = {
  readonly sessionId: string
  lastHeartbeatMs: number
  /** Uptime has been accounted up to here. */
  accountedUntilMs: number
  pendingBuckets: UptimeBucket[][]
}

export type ConnectOutcome = {
  readonly change: DeviceStateChange
  /** The gap credited under the restart grace, in ms (0 when none). */
  readonly creditedGapMs: number
}

export type DisconnectCause =
  | { readonly kind: 'goodbye'; readonly reason: string }
  | { readonly kind: 'closed'; readonly detail: string }
  | { readonly kind: 'replaced' }

export class Presence {
  readonly #rules: PresenceRules
  readonly #sessions = new Map<string, SessionPresence>()
  /** Sessions that ended since the last flush; their final uptime still has to be written. */
  #finished: { deviceId: string; lastSeenAtMs: number; buckets: UptimeBucket[][] }[] = []

  constructor(rules: PresenceRules) {
    this.#rules = rules
  }

  get connectedCount(): number {
    return this.#sessions.size
  }

  isConnected(deviceId: string): boolean {
    return this.#sessions.has(deviceId)
  }

  sessionOf(deviceId: string): string | undefined {
    return this.#sessions.get(deviceId)?.sessionId
  }

  /**
   * A worker authenticated. `lastSeenAtMs` is the store's last record of it (from any process);
   * when it is within the restart grace, the gap counts as uptime.
   */
  connect(
    deviceId: string,
    sessionId: string,
    nowMs: number,
    lastSeenAtMs: number | null,
    agentVersion: string,
  ): ConnectOutcome {
    const previous = this.#sessions.get(deviceId)
    if (previous) this.#finish(deviceId, previous)
    const gapStartMs = previous?.lastHeartbeatMs ?? lastSeenAtMs
    const withinGrace =
      gapStartMs !== null && nowMs - gapStartMs <= this.#rules.restartGraceMs && nowMs >= gapStartMs
    const creditedGapMs = withinGrace ? nowMs - gapStartMs : 0
    const session: SessionPresence = {
      sessionId,
      lastHeartbeatMs: nowMs,
      accountedUntilMs: nowMs,
      pendingBuckets: withinGrace ? [splitIntoBuckets(gapStartMs, nowMs)] : [],
    }
    this.#sessions.set(deviceId, session)
    const graceNote =
      creditedGapMs > 0
        ? `; back within the restart grace, ${Math.round(creditedGapMs / 1000)} s gap not counted as downtime`
        : ''
    return {
      creditedGapMs,
      change: {
        deviceId,
        state: 'online',
        reasonCode: 'connected',
        reason: `worker connected (agent ${agentVersion})${graceNote}`,
        atMs: nowMs,
      },
    }
  }

  /** False when the session is not the device's current one (a stale socket). */
  heartbeat(deviceId: string, sessionId: string, nowMs: number): boolean {
    const session = this.#sessions.get(deviceId)
    if (!session || session.sessionId !== sessionId) return false
    session.lastHeartbeatMs = Math.max(session.lastHeartbeatMs, nowMs)
    return true
  }

  /** The session ended; returns the state change to record, or undefined when it was not current. */
  disconnect(
    deviceId: string,
    sessionId: string,
    nowMs: number,
    cause: DisconnectCause,
  ): DeviceStateChange | undefined {
    const session = this.#sessions.get(deviceId)
    if (!session || session.sessionId !== sessionId) return undefined
    this.#sessions.delete(deviceId)
    this.#finish(deviceId, session)
    if (cause.kind === 'replaced') return undefined
    return cause.kind === 'goodbye'
      ? {
          deviceId,
          state: 'offline',
          reasonCode: 'worker_shutdown',
          reason: `worker shut down: ${cause.reason}`,
          atMs: nowMs,
        }
      : {
          deviceId,
          state: 'offline',
          reasonCode: 'connection_closed',
          reason: `connection lost without a goodbye (${cause.detail})`,
          atMs: nowMs,
        }
  }

  /** Ends every session (coordinator shutdown); workers reconnect, and the restart grace covers the gap. */
  disconnectAll(nowMs: number, reason: string): DeviceStateChange[] {
    const changes: DeviceStateChange[] = []
    for (const [deviceId, session] of this.#sessions) {
      this.#sessions.delete(deviceId)
      this.#finish(deviceId, session)
      changes.push({ deviceId, state: 'offline', reasonCode: 'coordinator_restart', reason, atMs: nowMs })
    }
    return changes
  }

  /** Devices silent past the window: they go offline now, uptime ending at their last heartbeat. */
  expire(nowMs: number): { deviceId: string; sessionId: string; change: DeviceStateChange }[] {
    const expired: { deviceId: string; sessionId: string; change: DeviceStateChange }[] = []
    for (const [deviceId, session] of this.#sessions) {
      const silentMs = nowMs - session.lastHeartbeatMs
      if (silentMs <= this.#rules.offlineAfterMs) continue
      this.#sessions.delete(deviceId)
      this.#finish(deviceId, session)
      expired.push({
        deviceId,
        sessionId: session.sessionId,
        change: {
          deviceId,
          state: 'offline',
          reasonCode: 'missed_heartbeats',
          reason: `no heartbeat for ${Math.round(silentMs / 1000)} s (limit ${Math.round(this.#rules.offlineAfterMs / 1000)} s)`,
          atMs: nowMs,
        },
      })
    }
    return expired
  }

  /** Everything to persist since the last call: one entry per device, uptime up to its last heartbeat. */
  drainFlush(): HeartbeatFlushEntry[] {
    const entries: HeartbeatFlushEntry[] = []
    for (const finished of this.#finished) {
      entries.push({
        deviceId: finished.deviceId,
        lastSeenAtMs: finished.lastSeenAtMs,
        uptimeBuckets: mergeBuckets(finished.buckets),
      })
    }
    this.#finished = []
    for (const [deviceId, session] of this.#sessions) {
      this.#accrue(session)
      entries.push({
        deviceId,
        lastSeenAtMs: session.lastHeartbeatMs,
        uptimeBuckets: mergeBuckets(session.pendingBuckets),
      })
      session.pendingBuckets = []
    }
    return mergeFlushEntries(entries)
  }

  #accrue(session: SessionPresence): void {
    if (session.lastHeartbeatMs > session.accountedUntilMs) {
      session.pendingBuckets.push(splitIntoBuckets(session.accountedUntilMs, session.lastHeartbeatMs))
      session.accountedUntilMs = session.lastHeartbeatMs
    }
  }

  #finish(deviceId: string, session: SessionPresence): void {
    this.#accrue(session)
    this.#finished.push({ deviceId, lastSeenAtMs: session.lastHeartbeatMs, buckets: session.pendingBuckets })
    session.pendingBuckets = []
  }
}
