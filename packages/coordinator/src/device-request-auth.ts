import { IdPrefix, isIdOf, WorkerAuthError, type Clock } from '@gpumesh/core'
import { DeviceRequestHeader, deviceRequestMaxSkewMs, deviceRequestSigningPayload } from '@gpumesh/protocol'
import type { DeviceRecord, Store } from '@gpumesh/store'
import type { FastifyRequest } from 'fastify'
import { decodeCanonicalBase64Url, verifyEd25519 } from './signatures.ts'

// Plain HTTP requests from a device, signed with its Ed25519 key (see protocol/device-request.ts). Checks
// run cheapest first, and a signature enters the replay guard only once it verified, so nobody without a
// device key can fill the guard. The guard is keyed on the signature's bytes, and only the canonical
// base64url spelling of them is accepted, so re-spelling a used signature is no way around it.

/** Signatures remembered at most; past it the oldest is forgotten (it may then be replayed within its window). */
export const maxReplayGuardEntries = 100_000

/** Remembers verified signatures (by their bytes) until their timestamp leaves the skew window. */
export class ReplayGuard {
  readonly #maxEntries: number
  readonly #windowMs: number
  /** signature key → the time (coordinator clock) after which its timestamp is refused anyway. Insertion order. */
  readonly #expiresAtMs = new Map<string, number>()

  constructor(maxEntries = maxReplayGuardEntries, windowMs = deviceRequestMaxSkewMs) {
    this.#maxEntries = maxEntries
    this.#windowMs = windowMs
  }

  get size(): number {
    return this.#expiresAtMs.size
  }

  /** Records the signature; returns false when it was already seen and has not expired. */
  remember(key: string, timestampMs: number, nowMs: number): boolean {
    this.#prune(nowMs)
    const expiresAtMs = this.#expiresAtMs.get(key)
    if (expiresAtMs !== undefined && expiresAtMs >= nowMs) return false
    this.#expiresAtMs.delete(key)
    this.#expiresAtMs.set(key, timestampMs + this.#windowMs)
    while (this.#expiresAtMs.size > this.#maxEntries) {
      const oldest = this.#expiresAtMs.keys().next().value
      if (oldest === undefined) break
      this.#expiresAtMs.delete(oldest)
    }
    return true
  }

  /** Drops expired entries from the front; entries are roughly in time order, so this stops early. */
  #prune(nowMs: number): void {
    for (const [key, expiresAtMs] of this.#expiresAtMs) {
      if (expiresAtMs >= nowMs) return
      this.#expiresAtMs.delete(key)
    }
  }
}

const timestampPattern = /^\d{1,15}$/
const signaturePattern = /^[A-Za-z0-9_-]{86}$/

function header(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name]
  return typeof value === 'string' && value.length > 0 ? value : undefined
}

/** Returns the signing device; throws WorkerAuthError (401) naming what is wrong. */
export async function authenticateDevice(
  request: FastifyRequest,
  store: Store,
  clock: Clock,
  replayGuard: ReplayGuard,
): Promise<DeviceRecord> {
  const deviceId = header(request, DeviceRequestHeader.deviceId)
  const timestampText = header(request, DeviceRequestHeader.timestampMs)
  const signature = header(request, DeviceRequestHeader.signature)
  if (!deviceId || !timestampText || !signature) {
    throw new WorkerAuthError(
      `unsigned request: send ${DeviceRequestHeader.deviceId}, ${DeviceRequestHeader.timestampMs} and ${DeviceRequestHeader.signature} (signed with the device key)`,
    )
  }
  if (!isIdOf(IdPrefix.device, deviceId)) {
    throw new WorkerAuthError(`malformed ${DeviceRequestHeader.deviceId}: expected dev_...`)
  }
  if (!timestampPattern.test(timestampText)) {
    throw new WorkerAuthError(
      `malformed ${DeviceRequestHeader.timestampMs}: expected milliseconds since the epoch`,
    )
  }
  const signatureBytes = signaturePattern.test(signature) ? decodeCanonicalBase64Url(signature) : undefined
  if (!signatureBytes) {
    throw new WorkerAuthError(
      `malformed ${DeviceRequestHeader.signature}: expected a canonical base64url Ed25519 signature (86 characters, no padding)`,
    )
  }
  const timestampMs = Number(timestampText)
  const nowMs = clock.nowMs()
  const skewMs = timestampMs - nowMs
  if (Math.abs(skewMs) > deviceRequestMaxSkewMs) {
    throw new WorkerAuthError(
      `request timestamp is ${Math.round(Math.abs(skewMs) / 1000)} s ${skewMs < 0 ? 'old' : 'in the future'}; at most ${deviceRequestMaxSkewMs / 1000} s either way is accepted: check this machine's clock`,
      { skewMs },
    )
  }
  const device = await store.getDevice(deviceId)
  const payload = deviceRequestSigningPayload(request.method, request.url, timestampMs)
  if (!device || !verifyEd25519(device.publicKey, payload, signature)) {
    request.log.warn({ deviceId }, 'refused device request: unknown device or bad signature')
    throw new WorkerAuthError('signature does not match the device key (or the device is unknown)')
  }
  if (!replayGuard.remember(`${deviceId}:${signatureBytes.toString('hex')}`, timestampMs, nowMs)) {
    request.log.warn({ deviceId }, 'refused device request: replayed signature')
    throw new WorkerAuthError('this signed request was already used: sign each request afresh')
  }
  if (device.state === 'blocked') throw new WorkerAuthError('this device is blocked by an operator')
  return device
}
