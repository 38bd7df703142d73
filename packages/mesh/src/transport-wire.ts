// The framing on a worker's mesh UDP socket. One socket carries WireGuard's own packets (possibly
// obfuscated, see obfuscation.ts) and the transport's control messages: a STUN-style binding that the
// coordinator's rendezvous answers with the address it saw, hole-punching probes between peers, and relay
// frames that a relay forwards between the two ends of a session it was told about.
//
// A control frame starts with a 3-byte magic and a kind byte. WireGuard's plain packets start with a type
// byte 1–4 followed by three zero bytes, and obfuscated ones with a per-cluster 32-bit header that is
// never allowed to start with the magic, so the two kinds of frame cannot be confused.

export const controlMagic: readonly number[] = [0x47, 0x4d, 0x01] // "GM" v1

export const sessionIdLength = 8
export const transactionIdLength = 12
export const endTagLength = 16
export const probeTagLength = 16
const headerLength = 4

export type SessionId = Uint8Array // 8 bytes, chosen by the coordinator per pair of nodes

export type UdpAddress = { readonly address: string; readonly port: number }

export type ControlFrame =
  /** Worker → rendezvous: "what address do you see me at?" */
  | { readonly kind: 'binding-request'; readonly transactionId: Uint8Array }
  /** Rendezvous → worker: the source address of the request, as seen from outside every NAT. */
  | { readonly kind: 'binding-response'; readonly transactionId: Uint8Array; readonly mapped: UdpAddress }
  /** Peer → peer: a hole-punching probe (also the liveness probe of a direct path). */
  | {
      readonly kind: 'punch'
      readonly sessionId: SessionId
      readonly nonce: bigint
      readonly tag: Uint8Array
    }
  /** Peer → peer: the answer to a probe, echoing its nonce; proves the path works both ways. */
  | {
      readonly kind: 'punch-ack'
      readonly sessionId: SessionId
      readonly nonce: bigint
      readonly tag: Uint8Array
    }
  /** Worker → relay: "this address is my end of the session" (the end tag proves which end). */
  | { readonly kind: 'relay-register'; readonly sessionId: SessionId; readonly endTag: Uint8Array }
  /** Relay → worker: registration accepted. */
  | { readonly kind: 'relay-registered'; readonly sessionId: SessionId }
  /** Either way through a relay: an (encrypted, possibly obfuscated) WireGuard packet for the session. */
  | { readonly kind: 'relay-data'; readonly sessionId: SessionId; readonly payload: Uint8Array }

export type ControlKind = ControlFrame['kind']

const kindCodes: Record<ControlKind, number> = {
  'binding-request': 1,
  'binding-response': 2,
  punch: 3,
  'punch-ack': 4,
  'relay-register': 5,
  'relay-registered': 6,
  'relay-data': 7,
}
const kindsByCode = new Map(Object.entries(kindCodes).map(([kind, code]) => [code, kind as ControlKind]))

export type DecodedFrame =
  | { readonly type: 'control'; readonly frame: ControlFrame }
  /** Not a control frame: a WireGuard packet (plain or obfuscated), for the obfuscation layer to check. */
  | { readonly type: 'wireguard'; readonly packet: Uint8Array }
  /** Starts with the magic but is malformed: dropped and counted. */
  | { readonly type: 'invalid'; readonly reason: string }

export function startsWithControlMagic(bytes: Uint8Array): boolean {
  return (
    bytes.length >= headerLength &&
    bytes[0] === controlMagic[0] &&
    bytes[1] === controlMagic[1] &&
    bytes[2] === controlMagic[2]
  )
}

function frameOf(kind: ControlKind, bodyLength: number): { bytes: Uint8Array; view: DataView } {
  const bytes = new Uint8Array(headerLength + bodyLength)
  bytes.set(controlMagic, 0)
  bytes[3] = kindCodes[kind]
  return { bytes, view: new DataView(bytes.buffer) }
}

function requireLength(value: Uint8Array, length: number, what: string): void {
  if (value.length !== length) throw new RangeError(`${what} must be ${length} bytes, not ${value.length}`)
}

/** IPv4 dotted quad to 4 bytes; undefined for anything else (IPv6 is not carried yet). */
function ipv4Bytes(address: string): Uint8Array | undefined {
  const parts = address.split('.')
  if (parts.length !== 4) return undefined
  const bytes = new Uint8Array(4)
  for (const [index, part] of parts.entries()) {
    if (!/^\d{1,3}$/.test(part)) return undefined
    const value = Number(part)
    if (value > 255) return undefined
    bytes[index] = value
  }
  return bytes
}

export function encodeControlFrame(frame: ControlFrame): Uint8Array {
  switch (frame.kind) {
    case 'binding-request': {
      requireLength(frame.transactionId, transactionIdLength, 'transaction id')
      const { bytes } = frameOf(frame.kind, transactionIdLength)
      bytes.set(frame.transactionId, headerLength)
      return bytes
    }
    case 'binding-response': {
      requireLength(frame.transactionId, transactionIdLength, 'transaction id')
      const ip = ipv4Bytes(frame.mapped.address)
      if (!ip) throw new RangeError(`only IPv4 mapped addresses are carried, not ${frame.mapped.address}`)
      if (!Number.isInteger(frame.mapped.port) || frame.mapped.port < 0 || frame.mapped.port > 65_535)
        throw new RangeError(`port ${frame.mapped.port} out of range`)
      const { bytes, view } = frameOf(frame.kind, transactionIdLength + 1 + 2 + 4)
      bytes.set(frame.transactionId, headerLength)
      let offset = headerLength + transactionIdLength
      bytes[offset++] = 4
      view.setUint16(offset, frame.mapped.port)
      bytes.set(ip, offset + 2)
      return bytes
    }
    case 'punch':
    case 'punch-ack': {
      requireLength(frame.sessionId, sessionIdLength, 'session id')
      requireLength(frame.tag, probeTagLength, 'probe tag')
      const { bytes, view } = frameOf(frame.kind, sessionIdLength + 8 + probeTagLength)
      bytes.set(frame.sessionId, headerLength)
      view.setBigUint64(headerLength + sessionIdLength, BigInt.asUintN(64, frame.nonce))
      bytes.set(frame.tag, headerLength + sessionIdLength + 8)
      return bytes
    }
    case 'relay-register': {
      requireLength(frame.sessionId, sessionIdLength, 'session id')
      requireLength(frame.endTag, endTagLength, 'end tag')
      const { bytes } = frameOf(frame.kind, sessionIdLength + endTagLength)
      bytes.set(frame.sessionId, headerLength)
      bytes.set(frame.endTag, headerLength + sessionIdLength)
      return bytes
    }
    case 'relay-registered': {
      requireLength(frame.sessionId, sessionIdLength, 'session id')
      const { bytes } = frameOf(frame.kind, sessionIdLength)
      bytes.set(frame.sessionId, headerLength)
      return bytes
    }
    case 'relay-data': {
      requireLength(frame.sessionId, sessionIdLength, 'session id')
      const { bytes } = frameOf(frame.kind, sessionIdLength + frame.payload.length)
      bytes.set(frame.sessionId, headerLength)
      bytes.set(frame.payload, headerLength + sessionIdLength)
      return bytes
    }
  }
}

const fixedBodyLengths: Partial<Record<ControlKind, number>> = {
  'binding-request': transactionIdLength,
  'binding-response': transactionIdLength + 1 + 2 + 4,
  punch: sessionIdLength + 8 + probeTagLength,
  'punch-ack': sessionIdLength + 8 + probeTagLength,
  'relay-register': sessionIdLength + endTagLength,
  'relay-registered': sessionIdLength,
}

/** Splits what arrived on the mesh socket. Never throws: malformed input comes back as 'invalid'. */
export function decodeFrame(input: Uint8Array): DecodedFrame {
  // A Node Buffer's slice() is a view, not a copy: work on a plain Uint8Array over the same bytes.
  const bytes = asPlainBytes(input)
  if (!startsWithControlMagic(bytes)) return { type: 'wireguard', packet: bytes }
  const kind = kindsByCode.get(bytes[3]!)
  if (!kind) return { type: 'invalid', reason: `unknown control kind ${bytes[3]}` }
  const body = bytes.subarray(headerLength)
  const fixed = fixedBodyLengths[kind]
  if (fixed !== undefined && body.length !== fixed)
    return { type: 'invalid', reason: `${kind} of ${body.length} bytes, expected ${fixed}` }
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength)
  const copy = (start: number, length: number) => body.slice(start, start + length)
  switch (kind) {
    case 'binding-request':
      return { type: 'control', frame: { kind, transactionId: copy(0, transactionIdLength) } }
    case 'binding-response': {
      if (body[transactionIdLength] !== 4)
        return { type: 'invalid', reason: `address family ${body[transactionIdLength]}` }
      const port = view.getUint16(transactionIdLength + 1)
      const ip = body.subarray(transactionIdLength + 3, transactionIdLength + 7)
      return {
        type: 'control',
        frame: {
          kind,
          transactionId: copy(0, transactionIdLength),
          mapped: { address: [...ip].join('.'), port },
        },
      }
    }
    case 'punch':
    case 'punch-ack':
      return {
        type: 'control',
        frame: {
          kind,
          sessionId: copy(0, sessionIdLength),
          nonce: view.getBigUint64(sessionIdLength),
          tag: copy(sessionIdLength + 8, probeTagLength),
        },
      }
    case 'relay-register':
      return {
        type: 'control',
        frame: { kind, sessionId: copy(0, sessionIdLength), endTag: copy(sessionIdLength, endTagLength) },
      }
    case 'relay-registered':
      return { type: 'control', frame: { kind, sessionId: copy(0, sessionIdLength) } }
    case 'relay-data':
      if (body.length <= sessionIdLength) return { type: 'invalid', reason: 'relay-data without payload' }
      return {
        type: 'control',
        frame: { kind, sessionId: copy(0, sessionIdLength), payload: copy(sessionIdLength, body.length) },
      }
  }
}

export function asPlainBytes(input: Uint8Array): Uint8Array {
  return Object.getPrototypeOf(input) === Uint8Array.prototype
    ? input
    : new Uint8Array(input.buffer, input.byteOffset, input.byteLength)
}

/** Session ids as map keys. */
export function sessionKey(sessionId: SessionId): string {
  let hex = ''
  for (const byte of sessionId) hex += byte.toString(16).padStart(2, '0')
  return hex
}

export function sessionIdFromHex(hex: string): SessionId {
  if (!/^[0-9a-f]{16}$/.test(hex)) throw new RangeError(`session id must be 16 hex digits, not ${hex}`)
  const bytes = new Uint8Array(sessionIdLength)
  for (let index = 0; index < sessionIdLength; index++)
    bytes[index] = parseInt(hex.slice(index * 2, index * 2 + 2), 16)
  return bytes
}
