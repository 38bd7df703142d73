import { randomBytes } from 'node:crypto'
import { findGpuModel, type Clock, type Random } from '@gpumesh/core'
import type {
  ChallengeCommitmentMessage,
  ChallengeOpeningMessage,
  CoordinatorMessage,
} from '@gpumesh/protocol'
import type { ChallengeRecord, DeviceRecord, Store, VerificationOutcome } from '@gpumesh/store'
import {
  challengeSize,
  checkRowOpening,
  commitDeadlineMs,
  ChallengeFailure,
  fromHex,
  matrixFlops,
  pickRows,
  sampleColumns,
  type ChallengeClaim,
  type SampledColumns,
  type ChallengePolicy,
} from '@gpumesh/verification'
import type { FastifyBaseLogger } from 'fastify'
import { mintIdBody } from '../credentials.ts'
import type { CoordinatorMetrics } from '../metrics.ts'

// Runs proof-of-compute against the workers connected to this process: issues challenges at enrollment and
// again at random times, times the answers, checks the opened rows, and records every outcome with a reason.
// The decisions are in @gpumesh/verification; this class holds the timers, the randomness and the I/O.

export type VerifierInit = {
  readonly policy: ChallengePolicy
  /** Mean time between re-verifications of a verified device; each gap is drawn from [0.5, 1.5] × this. */
  readonly reverifyIntervalMs: number
  /** After the k-th failure in a row, the next challenge waits min(max, base · 2^(k-1)). */
  readonly failureBackoffBaseMs: number
  readonly failureBackoffMaxMs: number
}

export const defaultVerifierInit: Omit<VerifierInit, 'policy'> = {
  reverifyIntervalMs: 6 * 3_600_000,
  failureBackoffBaseMs: 60_000,
  failureBackoffMaxMs: 24 * 3_600_000,
}

export type VerifierComponents = {
  readonly store: Store
  readonly clock: Clock
  readonly random: Random
  readonly logger: FastifyBaseLogger
  send(deviceId: string, message: CoordinatorMessage): boolean
  /** Outcomes counted for GET /metrics. */
  readonly metrics?: Pick<CoordinatorMetrics, 'verificationOutcomes'>
}

type Pending = {
  readonly record: ChallengeRecord
  readonly seed: Uint8Array
  readonly claim: ChallengeClaim
  phase: 'commit' | 'open'
  root?: Uint8Array
  requestedRows: number[]
  sampled?: SampledColumns
  openedRows: Set<number>
  openDeadlineAtMs: number
  committedAtMs?: number
  backend?: string
}

export class Verifier {
  readonly #components: VerifierComponents
  readonly #init: VerifierInit
  readonly #pending = new Map<string, Pending>()
  /** Connected devices and when each is next due: checked every tick without touching the store. */
  readonly #due = new Map<string, number>()

  constructor(components: VerifierComponents, init: VerifierInit) {
    this.#components = components
    this.#init = init
  }

  get pendingCount(): number {
    return this.#pending.size
  }

  onDisconnected(deviceId: string, closeCode: number): Promise<void> {
    this.#due.delete(deviceId)
    const pending = this.#pending.get(deviceId)
    if (!pending) return Promise.resolve()
    // An oversized answer is the worker's doing; any other disconnect is not held against it.
    if (closeCode === 1009)
      return this.#fail(
        deviceId,
        pending,
        ChallengeFailure.malformedResponse,
        'an answer exceeded the frame limit',
      )
    this.#pending.delete(deviceId)
    return this.#components.store.updateChallenge({
      ...pending.record,
      outcome: 'failed',
      reasonCode: ChallengeFailure.disconnected,
      reason: 'the worker disconnected during the challenge; not counted as a failure',
      finishedAtMs: this.#components.clock.nowMs(),
    })
  }

  /** After each hardware report: flag cloned GPUs, and challenge the device when it is due. */
  async onReport(deviceId: string): Promise<void> {
    const device = await this.#components.store.getDevice(deviceId)
    if (!device) return
    this.#due.set(deviceId, device.nextVerificationAtMs)
    if (await this.#flagUuidConflicts(device)) return
    if (!this.#pending.has(deviceId) && device.nextVerificationAtMs <= this.#components.clock.nowMs())
      await this.issue(device)
  }

  /** Deadlines and re-verifications due; called about once a second. */
  async tick(): Promise<void> {
    const nowMs = this.#components.clock.nowMs()
    for (const [deviceId, pending] of [...this.#pending]) {
      if (pending.phase === 'commit' && nowMs > pending.record.commitDeadlineAtMs) {
        await this.#fail(
          deviceId,
          pending,
          ChallengeFailure.lateCommitment,
          `no commitment within ${pending.record.commitDeadlineAtMs - pending.record.issuedAtMs} ms`,
        )
      } else if (pending.phase === 'open' && nowMs > pending.openDeadlineAtMs) {
        const missing = pending.requestedRows.filter((row) => !pending.openedRows.has(row))
        await this.#fail(
          deviceId,
          pending,
          ChallengeFailure.lateOpening,
          `rows ${missing.join(', ')} not opened in time`,
        )
      }
    }
    for (const [deviceId, dueAtMs] of [...this.#due]) {
      if (dueAtMs > nowMs || this.#pending.has(deviceId)) continue
      const device = await this.#components.store.getDevice(deviceId)
      if (device && device.inventory && device.state === 'online' && device.nextVerificationAtMs <= nowMs)
        await this.issue(device)
    }
  }

  /**
   * Challenges about `fraction` of the connected devices now, picked at random, whatever their schedule:
   * the spot check at an epoch's close. A device that fails it is paid nothing for the epoch.
   */
  async spotCheck(fraction: number): Promise<number> {
    if (fraction <= 0) return 0
    const { random, store } = this.#components
    let issued = 0
    for (const deviceId of [...this.#due.keys()]) {
      if (this.#pending.has(deviceId) || random.next() >= fraction) continue
      const device = await store.getDevice(deviceId)
      if (!device?.inventory || device.state !== 'online') continue
      await this.issue(device)
      issued += 1
    }
    return issued
  }

  async issue(device: DeviceRecord): Promise<void> {
    // Checked again here, in the same synchronous step that marks the challenge pending: a report and the
    // tick can both find a device due while each awaits the store, and a second challenge would make the
    // honest answer to the first look like a replay.
    if (this.#pending.has(device.id)) return
    const { clock, store } = this.#components
    const claim = claimOf(device)
    const matrixSize = challengeSize(claim, this.#init.policy)
    const commitWithinMs = commitDeadlineMs(matrixSize, claim, this.#init.policy)
    const seed = randomBytes(32)
    const issuedAtMs = clock.nowMs()
    const record: ChallengeRecord = {
      id: `chl_${mintIdBody()}`,
      deviceId: device.id,
      issuedAtMs,
      matrixSize,
      seedHex: seed.toString('hex'),
      commitDeadlineAtMs: issuedAtMs + commitWithinMs,
      outcome: 'issued',
      reasonCode: null,
      reason: `waiting for the commitment (n=${matrixSize}, within ${commitWithinMs} ms)`,
      merkleRootHex: null,
      committedAtMs: null,
      finishedAtMs: null,
      backend: null,
      effectiveTflops: null,
    }
    this.#components.logger.info(
      { deviceId: device.id, matrixSize, commitWithinMs },
      'issuing proof-of-compute challenge',
    )
    this.#pending.set(device.id, {
      record,
      seed,
      claim,
      phase: 'commit',
      requestedRows: [],
      openedRows: new Set(),
      openDeadlineAtMs: 0,
    })
    await store.insertChallenge(record)
    await this.#record(device.id, {
      state: device.verificationState === 'verified' ? 'verified' : 'verifying',
      reason:
        device.verificationState === 'verified'
          ? device.verificationReason
          : `proof-of-compute in progress (n=${matrixSize})`,
      failures: device.verificationFailures,
      nextVerificationAtMs: device.nextVerificationAtMs,
    })
    const sent = this.#components.send(device.id, {
      type: 'challenge',
      challengeId: record.id,
      seed: record.seedHex,
      matrixSize,
      commitWithinMs,
    })
    if (!sent) await this.onDisconnected(device.id, 1001)
  }

  async onMessage(
    deviceId: string,
    message: ChallengeCommitmentMessage | ChallengeOpeningMessage,
  ): Promise<void> {
    const pending = this.#pending.get(deviceId)
    if (!pending) {
      this.#components.logger.warn(
        { deviceId, challengeId: message.challengeId },
        'challenge answer with no challenge open',
      )
      return
    }
    if (message.challengeId !== pending.record.id) {
      return this.#fail(
        deviceId,
        pending,
        ChallengeFailure.replayedResponse,
        `answer to another challenge (${message.challengeId})`,
      )
    }
    const nowMs = this.#components.clock.nowMs()
    if (message.type === 'challenge_commitment') {
      if (pending.phase !== 'commit')
        return this.#fail(deviceId, pending, ChallengeFailure.malformedResponse, 'a second commitment')
      if (nowMs > pending.record.commitDeadlineAtMs) {
        return this.#fail(
          deviceId,
          pending,
          ChallengeFailure.lateCommitment,
          `commitment after ${nowMs - pending.record.issuedAtMs} ms; the deadline for the claimed hardware was ${pending.record.commitDeadlineAtMs - pending.record.issuedAtMs} ms`,
        )
      }
      pending.phase = 'open'
      pending.root = fromHex(message.merkleRoot)
      pending.committedAtMs = nowMs
      pending.backend = message.backend
      pending.requestedRows = pickRows(
        pending.record.matrixSize,
        this.#init.policy.rowsToOpen,
        this.#components.random,
      )
      pending.sampled = sampleColumns(
        pending.seed,
        pending.record.matrixSize,
        this.#init.policy,
        this.#components.random,
      )
      pending.openDeadlineAtMs = nowMs + this.#init.policy.openingTimeoutMs
      this.#components.send(deviceId, {
        type: 'challenge_open',
        challengeId: pending.record.id,
        rows: pending.requestedRows,
      })
      return
    }
    if (pending.phase !== 'open' || !pending.root || !pending.sampled)
      return this.#fail(deviceId, pending, ChallengeFailure.malformedResponse, 'a row before the commitment')
    if (pending.openedRows.has(message.row))
      return this.#fail(
        deviceId,
        pending,
        ChallengeFailure.malformedResponse,
        `row ${message.row} opened twice`,
      )
    const values = decodeRow(message.values)
    const proof = message.proof.map((hex) => fromHex(hex)!)
    if (!values)
      return this.#fail(
        deviceId,
        pending,
        ChallengeFailure.malformedResponse,
        `row ${message.row} is not whole int32 values`,
      )
    const check = checkRowOpening(
      { row: message.row, values, proof },
      {
        n: pending.record.matrixSize,
        seed: pending.seed,
        root: pending.root,
        requestedRows: pending.requestedRows,
        sampled: pending.sampled,
      },
    )
    if (!check.ok) return this.#fail(deviceId, pending, check.reason, check.detail)
    pending.openedRows.add(message.row)
    if (pending.openedRows.size === pending.requestedRows.length) await this.#pass(deviceId, pending)
  }

  async #record(deviceId: string, outcome: VerificationOutcome): Promise<void> {
    await this.#components.store.recordVerificationOutcome(deviceId, outcome)
    if (this.#due.has(deviceId)) this.#due.set(deviceId, outcome.nextVerificationAtMs)
  }

  /** A challenge answer that did not parse. */
  onMalformed(deviceId: string, detail: string): Promise<void> {
    const pending = this.#pending.get(deviceId)
    return pending
      ? this.#fail(deviceId, pending, ChallengeFailure.malformedResponse, detail)
      : Promise.resolve()
  }

  async #pass(deviceId: string, pending: Pending): Promise<void> {
    this.#components.metrics?.verificationOutcomes.inc({ outcome: 'passed', reason: '' })
    const { clock, store, random } = this.#components
    const device = await store.getDevice(deviceId)
    if (device && (await this.#flagUuidConflicts(device))) {
      this.#pending.delete(deviceId)
      return
    }
    this.#pending.delete(deviceId)
    const nowMs = clock.nowMs()
    const elapsedMs = Math.max(1, (pending.committedAtMs ?? nowMs) - pending.record.issuedAtMs)
    // Conservative: the round trip includes generation, hashing and the network, not just the multiply.
    const effectiveTflops = matrixFlops(pending.record.matrixSize) / (elapsedMs / 1000) / 1e12
    const reason = `passed proof-of-compute: n=${pending.record.matrixSize}, committed in ${elapsedMs} ms (${effectiveTflops.toFixed(3)} TFLOPS effective, ${pending.backend})`
    await store.updateChallenge({
      ...pending.record,
      outcome: 'passed',
      reason,
      merkleRootHex: pending.root ? Buffer.from(pending.root).toString('hex') : null,
      committedAtMs: pending.committedAtMs ?? null,
      finishedAtMs: nowMs,
      backend: pending.backend ?? null,
      effectiveTflops,
    })
    await this.#record(deviceId, {
      state: 'verified',
      reason,
      failures: 0,
      nextVerificationAtMs: nowMs + Math.round(this.#init.reverifyIntervalMs * (0.5 + random.next())),
      measuredFp32Tflops: effectiveTflops,
    })
    this.#components.send(deviceId, {
      type: 'challenge_result',
      challengeId: pending.record.id,
      passed: true,
      reasonCode: null,
      reason,
    })
    this.#components.logger.info(
      { deviceId, challengeId: pending.record.id, effectiveTflops },
      'proof-of-compute passed',
    )
  }

  async #fail(
    deviceId: string,
    pending: Pending,
    reasonCode: ChallengeFailure,
    detail: string,
  ): Promise<void> {
    this.#pending.delete(deviceId)
    const { clock, store } = this.#components
    this.#components.metrics?.verificationOutcomes.inc({ outcome: 'failed', reason: reasonCode })
    const nowMs = clock.nowMs()
    const device = await store.getDevice(deviceId)
    const failures = (device?.verificationFailures ?? 0) + 1
    const backoffMs = Math.min(
      this.#init.failureBackoffMaxMs,
      this.#init.failureBackoffBaseMs * 2 ** (failures - 1),
    )
    const reason = `${reasonCode}: ${detail}`
    await store.updateChallenge({
      ...pending.record,
      outcome: 'failed',
      reasonCode,
      reason,
      merkleRootHex: pending.root ? Buffer.from(pending.root).toString('hex') : null,
      committedAtMs: pending.committedAtMs ?? null,
      finishedAtMs: nowMs,
      backend: pending.backend ?? null,
    })
    await this.#record(deviceId, {
      state: 'failed',
      reason: `${reason} (next attempt in ${Math.round(backoffMs / 1000)} s)`,
      failures,
      nextVerificationAtMs: nowMs + backoffMs,
    })
    this.#components.send(deviceId, {
      type: 'challenge_result',
      challengeId: pending.record.id,
      passed: false,
      reasonCode,
      reason,
    })
    this.#components.logger.warn(
      { deviceId, challengeId: pending.record.id, reasonCode, detail },
      'proof-of-compute failed',
    )
  }

  /** Both holders of a GPU UUID are flagged: neither is offered until the conflict is gone. */
  async #flagUuidConflicts(device: DeviceRecord): Promise<boolean> {
    const { store, clock } = this.#components
    const conflicts = await store.findGpuUuidConflicts(device.id)
    if (conflicts.length === 0) return false
    const nowMs = clock.nowMs()
    const byDevice = new Map<string, string[]>()
    for (const conflict of conflicts)
      byDevice.set(conflict.deviceId, [...(byDevice.get(conflict.deviceId) ?? []), conflict.uuid])
    for (const [otherId, uuids] of byDevice) {
      for (const [flagged, other] of [
        [device.id, otherId],
        [otherId, device.id],
      ] as const) {
        const record = await store.getDevice(flagged)
        await this.#record(flagged, {
          state: 'failed',
          reason: `${ChallengeFailure.gpuUuidConflict}: GPU ${uuids.join(', ')} is also reported by live device ${other}`,
          failures: (record?.verificationFailures ?? 0) + 1,
          nextVerificationAtMs: nowMs + this.#init.failureBackoffBaseMs,
        })
      }
    }
    this.#components.logger.warn({ deviceId: device.id, conflicts }, 'GPU UUID reported by two live devices')
    return true
  }
}

export function claimOf(device: DeviceRecord): ChallengeClaim {
  const gpus = device.inventory?.gpus ?? []
  if (gpus.length === 0) return { gpuModel: undefined, vramMib: 0 }
  return {
    gpuModel: findGpuModel(gpus[0]!.productName),
    vramMib: Math.min(...gpus.map((gpu) => gpu.vramMib)),
  }
}

function decodeRow(base64: string): Int32Array | undefined {
  const bytes = Buffer.from(base64, 'base64')
  if (bytes.length % 4 !== 0) return undefined
  const values = new Int32Array(bytes.length / 4)
  for (let i = 0; i < values.length; i += 1) values[i] = bytes.readInt32LE(i * 4)
  return values
}
