import { createSocket, type RemoteInfo, type Socket } from 'node:dgram'
import {
  decodeFrame,
  encodeControlFrame,
  endTagLength,
  sessionIdFromHex,
  sessionKey,
  tagsEqual,
  type UdpAddress,
} from '@gpumesh/mesh'

// The coordinator's UDP side of the mesh transport. The rendezvous answers binding requests with the
// source address it saw, which is a worker's public endpoint once every NAT on the way has rewritten it.
// The relay forwards packets between the two ends of a session it was told about, and only those: each
// end proves which end it is with a tag the coordinator gave that worker alone, so nobody can register
// for someone else's session, and a frame is only ever sent on to the address that registered the other
// end — the relay cannot be aimed at any address outside the mesh. It forwards the frame as it came,
// without looking inside: what it carries is WireGuard ciphertext under the cluster's obfuscation.

export type RelayDropReason =
  | 'not-control'
  | 'malformed'
  | 'unexpected-kind'
  | 'unknown-session'
  | 'bad-end-tag'
  | 'unregistered-source'
  | 'other-end-absent'

export type RendezvousStats = {
  readonly bindingsAnswered: number
  readonly framesRelayed: number
  readonly bytesRelayed: number
  readonly dropped: Readonly<Partial<Record<RelayDropReason, number>>>
}

export type RendezvousInit = {
  /** Address to bind; defaults to every interface. */
  readonly host?: string
  /** UDP port; 0 (the default) lets the kernel pick. */
  readonly port?: number
  /** Whether this socket also relays (a supplier may run a relay without being a rendezvous, and back). */
  readonly relay?: boolean
  readonly bindings?: boolean
}

export type Rendezvous = {
  start(): Promise<UdpAddress>
  /** Lets two ends relay through here, each proving itself with its own 16-byte tag. */
  allowSession(sessionIdHex: string, endTags: readonly [Uint8Array, Uint8Array]): void
  revokeSession(sessionIdHex: string): void
  /** Where each end of a session has registered from (for the cluster view and tests). */
  sessionEnds(sessionIdHex: string): readonly (UdpAddress | undefined)[] | undefined
  stats(): RendezvousStats
  stop(): Promise<void>
}

type RelaySession = {
  readonly endTags: readonly [Uint8Array, Uint8Array]
  readonly ends: [UdpAddress | undefined, UdpAddress | undefined]
}

const sameAddress = (left: UdpAddress | undefined, right: RemoteInfo) =>
  left !== undefined && left.address === right.address && left.port === right.port

export function createRendezvous(init: RendezvousInit = {}): Rendezvous {
  const relayEnabled = init.relay ?? true
  const bindingsEnabled = init.bindings ?? true
  const sessions = new Map<string, RelaySession>()
  const dropped: Partial<Record<RelayDropReason, number>> = {}
  let bindingsAnswered = 0
  let framesRelayed = 0
  let bytesRelayed = 0
  let socket: Socket | undefined

  const drop = (reason: RelayDropReason) => {
    dropped[reason] = (dropped[reason] ?? 0) + 1
  }

  const onMessage = (message: Buffer, from: RemoteInfo) => {
    const decoded = decodeFrame(message)
    if (decoded.type === 'wireguard') return drop('not-control')
    if (decoded.type === 'invalid') return drop('malformed')
    const frame = decoded.frame
    if (frame.kind === 'binding-request' && bindingsEnabled) {
      bindingsAnswered++
      const answer = encodeControlFrame({
        kind: 'binding-response',
        transactionId: frame.transactionId,
        mapped: { address: from.address, port: from.port },
      })
      socket?.send(answer, from.port, from.address)
      return
    }
    if (!relayEnabled || (frame.kind !== 'relay-register' && frame.kind !== 'relay-data'))
      return drop('unexpected-kind')
    const session = sessions.get(sessionKey(frame.sessionId))
    if (!session) return drop('unknown-session')
    if (frame.kind === 'relay-register') {
      const end = session.endTags.findIndex((tag) => tagsEqual(tag, frame.endTag))
      if (end < 0) return drop('bad-end-tag')
      session.ends[end] = { address: from.address, port: from.port }
      socket?.send(
        encodeControlFrame({ kind: 'relay-registered', sessionId: frame.sessionId }),
        from.port,
        from.address,
      )
      return
    }
    const end = sameAddress(session.ends[0], from) ? 0 : sameAddress(session.ends[1], from) ? 1 : -1
    if (end < 0) return drop('unregistered-source')
    const other = session.ends[1 - end]
    if (!other) return drop('other-end-absent')
    framesRelayed++
    bytesRelayed += message.length
    socket?.send(message, other.port, other.address)
  }

  return {
    async start() {
      if (socket) {
        const bound = socket.address()
        return { address: bound.address, port: bound.port }
      }
      const opened = createSocket('udp4')
      opened.on('message', onMessage)
      // A bad packet or an unreachable end must never take the rendezvous down.
      opened.on('error', () => undefined)
      await new Promise<void>((resolve, reject) => {
        opened.once('error', reject)
        opened.bind(init.port ?? 0, init.host, () => {
          opened.off('error', reject)
          resolve()
        })
      })
      socket = opened
      const bound = opened.address()
      return { address: bound.address, port: bound.port }
    },
    allowSession(sessionIdHex, endTags) {
      sessionIdFromHex(sessionIdHex)
      for (const tag of endTags)
        if (tag.length !== endTagLength) throw new RangeError(`end tags are ${endTagLength} bytes`)
      if (tagsEqual(endTags[0], endTags[1])) throw new RangeError('the two ends need different tags')
      const existing = sessions.get(sessionIdHex)
      sessions.set(sessionIdHex, { endTags, ends: existing?.ends ?? [undefined, undefined] })
    },
    revokeSession(sessionIdHex) {
      sessions.delete(sessionIdHex)
    },
    sessionEnds(sessionIdHex) {
      return sessions.get(sessionIdHex)?.ends
    },
    stats() {
      return { bindingsAnswered, framesRelayed, bytesRelayed, dropped: { ...dropped } }
    },
    async stop() {
      const closing = socket
      socket = undefined
      if (closing) await new Promise<void>((resolve) => closing.close(() => resolve()))
    },
  }
}
