import { randomBytes } from 'node:crypto'
import type { Clock, Random } from '@gpumesh/core'
import type { ReportMessage, RttReportMessage } from '@gpumesh/protocol'
import type { OfferIndex } from '../offers/offer-index.ts'
import type { Presence } from '@gpumesh/presence'
import type { WorkerLinks } from '../worker-link.ts'

// Measured round trips between workers, for placement. Every interval each connected worker is asked to
// ping a few peers, chosen among the machines it would most likely be placed with (its own region first,
// then its country), and the medians it reports are kept here, in memory, for the placement snapshot.
// All pairs of a large fleet are never measured: unmeasured pairs fall back to the scheduler's estimate.

export const rttTargetsPerProbe = 8
/** A probe not answered within this long is forgotten (measuring takes about 1.2 s). */
export const rttProbeAnswerMs = 30_000
/** A measurement older than this is no longer used. */
export const rttMaxAgeMs = 24 * 3_600_000

export type RttProberComponents = {
  readonly clock: Clock
  readonly random: Random
  readonly index: OfferIndex
  readonly links: WorkerLinks
  readonly presence: Presence
}

type Measurement = { readonly rttMs: number; readonly atMs: number }

export class RttProber {
  readonly #components: RttProberComponents
  readonly #probePorts = new Map<string, number>()
  readonly #outstanding = new Map<string, { deviceId: string; targets: Set<string>; sentAtMs: number }>()
  readonly #measured = new Map<string, Measurement>()
  /** Every device some measured pair has involved (never shrinks: a stale entry only costs a lookup). */
  readonly #measuredDevices = new Set<string>()

  constructor(components: RttProberComponents) {
    this.#components = components
  }

  /** The worker's hardware report carries its echo responder's port. */
  onReport(deviceId: string, message: ReportMessage): void {
    if (message.rttProbePort === undefined) this.#probePorts.delete(deviceId)
    else this.#probePorts.set(deviceId, message.rttProbePort)
  }

  onRttReport(deviceId: string, message: RttReportMessage): void {
    const probe = this.#outstanding.get(message.probeId)
    // Only answers to a probe this process sent that device, about the targets it named.
    if (!probe || probe.deviceId !== deviceId) return
    this.#outstanding.delete(message.probeId)
    const atMs = this.#components.clock.nowMs()
    for (const result of message.results) {
      if (!probe.targets.has(result.deviceId) || result.rttMs === null) continue
      this.#measured.set(pairKey(deviceId, result.deviceId), { rttMs: result.rttMs, atMs })
      this.#measuredDevices.add(deviceId)
      this.#measuredDevices.add(result.deviceId)
    }
  }

  /** Measured round trip between two devices, either direction; undefined when not measured recently. */
  roundTripMs(a: string, b: string): number | undefined {
    const measurement = this.#measured.get(pairKey(a, b))
    if (!measurement || this.#components.clock.nowMs() - measurement.atMs > rttMaxAgeMs) return undefined
    return measurement.rttMs
  }

  /** False when no measurement has ever involved the device: placement can skip looking its pairs up. */
  isMeasured(deviceId: string): boolean {
    return this.#measuredDevices.has(deviceId)
  }

  get measuredPairs(): number {
    return this.#measured.size
  }

  /** Asks every connected worker with a responder to measure a few peers. */
  probeAll(): number {
    const { links, presence, index } = this.#components
    const candidates = [...this.#probePorts.keys()].filter(
      (deviceId) => presence.isConnected(deviceId) && links.remoteAddressOf(deviceId) !== undefined,
    )
    const nowMs = this.#components.clock.nowMs()
    for (const [probeId, probe] of this.#outstanding)
      if (nowMs - probe.sentAtMs > rttProbeAnswerMs) this.#outstanding.delete(probeId)
    let sent = 0
    for (const deviceId of candidates) {
      const own = index.offerOf(deviceId)
      const ranked = candidates
        .filter((other) => other !== deviceId)
        .map((other) => {
          const offer = index.offerOf(other)
          const closeness =
            own && offer ? (offer.region === own.region ? 0 : offer.country === own.country ? 1 : 2) : 2
          return { other, rank: closeness + this.#components.random.next() }
        })
        .sort((a, b) => a.rank - b.rank)
        .slice(0, rttTargetsPerProbe)
      if (ranked.length === 0) continue
      const targets = ranked.map(({ other }) => ({
        deviceId: other,
        host: links.remoteAddressOf(other)!,
        port: this.#probePorts.get(other)!,
      }))
      const probeId = randomBytes(8).toString('hex')
      if (links.send(deviceId, { type: 'rtt_probe', probeId, targets })) {
        this.#outstanding.set(probeId, {
          deviceId,
          targets: new Set(targets.map((target) => target.deviceId)),
          sentAtMs: nowMs,
        })
        sent += 1
      }
    }
    return sent
  }
}

function pairKey(a: string, b: string): string {
  return a < b ? `${a}|${b}` : `${b}|${a}`
}
