import { hkdf } from '@noble/hashes/hkdf.js'
import { hmac } from '@noble/hashes/hmac.js'
import { sha256 } from '@noble/hashes/sha2.js'
import { utf8ToBytes } from '@noble/hashes/utils.js'
import type { Random } from '@gpumesh/core'
import {
  asPlainBytes,
  controlMagic,
  probeTagLength,
  sessionIdLength,
  type SessionId,
} from './transport-wire.ts'

// Obfuscation profiles of the mesh transport. WireGuard's encryption is untouched underneath; what an
// observer could otherwise key on is its framing: a type byte 1–4 followed by three zero bytes, and
// handshake packets of exactly 148, 92 and 64 bytes. Under 'standard' (in the manner of AmneziaWG, an
// independent design, not its code) the 4-byte header is replaced by a per-cluster 32-bit value for each
// message type, handshake packets get random-length trailing junk, and each handshake initiation is
// preceded by a few junk packets of random size. The per-cluster values come from the cluster's transport
// secret, so two clusters' traffic does not share a signature either.

export const meshPrivacyProfiles = ['off', 'standard'] as const
export type MeshPrivacyProfile = (typeof meshPrivacyProfiles)[number]

const messageInitiation = 1
const messageResponse = 2
const messageCookieReply = 3
const messageTransport = 4
/** WireGuard's fixed handshake sizes, by message type. */
const handshakeSizes = new Map([
  [messageInitiation, 148],
  [messageResponse, 92],
  [messageCookieReply, 64],
])
/** A transport message is a 16-byte header, the padded ciphertext (a multiple of 16) and a 16-byte tag. */
const transportMinimumSize = 32

export type ObfuscationLimits = {
  /** Random trailing junk on a handshake packet, in bytes, inclusive range. */
  readonly handshakePadding: readonly [number, number]
  /** How many junk packets go before each handshake initiation, inclusive range. */
  readonly junkCount: readonly [number, number]
  /** Size of each junk packet, inclusive range. */
  readonly junkSize: readonly [number, number]
}

export const standardLimits: ObfuscationLimits = {
  handshakePadding: [8, 96],
  junkCount: [2, 4],
  junkSize: [40, 240],
}

export type TransportKeys = {
  readonly profile: MeshPrivacyProfile
  /** The 32-bit header that stands for each WireGuard message type (index = type); unused under 'off'. */
  readonly headers: readonly number[]
  /** Authenticates punch probes, so a stranger cannot steer a peer's direct path. */
  readonly probeKey: Uint8Array
  readonly limits: ObfuscationLimits
}

const salt = utf8ToBytes('gpumesh mesh transport v1')

function plainHeader(type: number): number {
  return (type << 24) >>> 0
}

function isUsableHeader(value: number, taken: readonly number[]): boolean {
  const top = value >>> 8
  const magic = (controlMagic[0]! << 16) | (controlMagic[1]! << 8) | controlMagic[2]!
  // Neither a control frame, nor anything that reads as plain WireGuard, nor a value already taken.
  return top !== magic && (value & 0x00ffffff) !== 0 && !taken.includes(value)
}

/** The keys of one cluster's transport, derived from its transport secret (at least 16 random bytes). */
export function deriveTransportKeys(
  clusterSecret: Uint8Array,
  profile: MeshPrivacyProfile,
  limits: ObfuscationLimits = standardLimits,
): TransportKeys {
  if (clusterSecret.length < 16)
    throw new RangeError('the cluster transport secret must be at least 16 bytes')
  const probeKey = hkdf(sha256, clusterSecret, salt, utf8ToBytes('probe'), 32)
  if (profile === 'off') return { profile, headers: [0, 1, 2, 3, 4].map(plainHeader), probeKey, limits }
  const headers = [0]
  for (let round = 0; headers.length < 5; round++) {
    const block = hkdf(sha256, clusterSecret, salt, utf8ToBytes(`headers ${round}`), 16)
    const view = new DataView(block.buffer, block.byteOffset, block.byteLength)
    for (let index = 0; index < 4 && headers.length < 5; index++) {
      const value = view.getUint32(index * 4)
      if (isUsableHeader(value, headers)) headers.push(value)
    }
  }
  return { profile, headers, probeKey, limits }
}

function randomInt(random: Random, [low, high]: readonly [number, number]): number {
  return low + Math.floor(random.next() * (high - low + 1))
}

function randomBytesFrom(random: Random, length: number): Uint8Array {
  const bytes = new Uint8Array(length)
  for (let index = 0; index < length; index++) bytes[index] = Math.floor(random.next() * 256)
  return bytes
}

function readHeader(packet: Uint8Array): number {
  return new DataView(packet.buffer, packet.byteOffset, 4).getUint32(0)
}

/** The WireGuard message type of a plain packet, or undefined when it is not one wireguard-go would send. */
export function plainMessageType(packet: Uint8Array): number | undefined {
  if (packet.length < 4 || packet[1] !== 0 || packet[2] !== 0 || packet[3] !== 0) return undefined
  const type = packet[0]!
  const size = handshakeSizes.get(type)
  if (size !== undefined) return packet.length === size ? type : undefined
  if (type !== messageTransport) return undefined
  return packet.length >= transportMinimumSize && (packet.length - transportMinimumSize) % 16 === 0
    ? type
    : undefined
}

export type ObfuscatedOutput = {
  /** Junk to send first (only before a handshake initiation under 'standard'). */
  readonly junk: readonly Uint8Array[]
  readonly packet: Uint8Array
}

/** Disguises one packet from wireguard-go; undefined when it is not a valid WireGuard message at all. */
export function obfuscatePacket(
  packet: Uint8Array,
  keys: TransportKeys,
  random: Random,
): ObfuscatedOutput | undefined {
  const type = plainMessageType(packet)
  if (type === undefined) return undefined
  if (keys.profile === 'off') return { junk: [], packet }
  const padding = handshakeSizes.has(type) ? randomInt(random, keys.limits.handshakePadding) : 0
  const out = new Uint8Array(packet.length + padding)
  out.set(packet, 0)
  new DataView(out.buffer).setUint32(0, keys.headers[type]!)
  if (padding > 0) out.set(randomBytesFrom(random, padding), packet.length)
  const junk: Uint8Array[] = []
  if (type === messageInitiation) {
    const count = randomInt(random, keys.limits.junkCount)
    for (let index = 0; index < count; index++) {
      let bytes: Uint8Array
      do bytes = randomBytesFrom(random, randomInt(random, keys.limits.junkSize))
      while (
        keys.headers.includes(readHeader(bytes)) ||
        (bytes[0] === controlMagic[0] && bytes[1] === controlMagic[1])
      )
      junk.push(bytes)
    }
  }
  return { junk, packet: out }
}

export type DeobfuscateResult =
  | { readonly ok: true; readonly packet: Uint8Array }
  | { readonly ok: false; readonly reason: 'unknown-header' | 'bad-size' }

/** Restores a packet from a peer for wireguard-go, or says why it must be dropped (junk lands here too). */
export function deobfuscatePacket(input: Uint8Array, keys: TransportKeys): DeobfuscateResult {
  const frame = asPlainBytes(input)
  if (frame.length < 4) return { ok: false, reason: 'bad-size' }
  if (keys.profile === 'off') {
    const type = plainMessageType(frame)
    if (type !== undefined) return { ok: true, packet: frame }
    return { ok: false, reason: frame[0]! >= 1 && frame[0]! <= 4 ? 'bad-size' : 'unknown-header' }
  }
  const type = keys.headers.indexOf(readHeader(frame))
  if (type < 1) return { ok: false, reason: 'unknown-header' }
  const size = handshakeSizes.get(type)
  let packet: Uint8Array
  if (size !== undefined) {
    const [low, high] = keys.limits.handshakePadding
    if (frame.length < size + low || frame.length > size + high) return { ok: false, reason: 'bad-size' }
    packet = frame.slice(0, size)
  } else {
    if (frame.length < transportMinimumSize || (frame.length - transportMinimumSize) % 16 !== 0)
      return { ok: false, reason: 'bad-size' }
    packet = frame.slice()
  }
  new DataView(packet.buffer).setUint32(0, plainHeader(type))
  return { ok: true, packet }
}

/** The tag on a punch probe or its answer: HMAC-SHA256 over kind, session and nonce, cut to 16 bytes. */
export function probeTag(
  keys: TransportKeys,
  kind: 'punch' | 'punch-ack',
  sessionId: SessionId,
  nonce: bigint,
): Uint8Array {
  const message = new Uint8Array(1 + sessionIdLength + 8)
  message[0] = kind === 'punch' ? 1 : 2
  message.set(sessionId, 1)
  new DataView(message.buffer).setBigUint64(1 + sessionIdLength, BigInt.asUintN(64, nonce))
  return hmac(sha256, keys.probeKey, message).slice(0, probeTagLength)
}

/** Compares without an early exit, so timing does not leak how much of a forged tag was right. */
export function tagsEqual(left: Uint8Array, right: Uint8Array): boolean {
  if (left.length !== right.length) return false
  let difference = 0
  for (let index = 0; index < left.length; index++) difference |= left[index]! ^ right[index]!
  return difference === 0
}
