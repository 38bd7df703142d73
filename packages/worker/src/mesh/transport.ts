import { randomBytes } from 'node:crypto'
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram'
import {
  decodeFrame,
  deobfuscatePacket,
  encodeControlFrame,
  obfuscatePacket,
  probeTag,
  sessionIdFromHex,
  sessionKey,
  tagsEqual,
  type ControlFrame,
  type SessionId,
  type TransportKeys,
  type UdpAddress,
} from '@gpumesh/mesh'
import type { Random } from '@gpumesh/core'

// The transport between wireguard-go and the network on a cluster node. wireguard-go talks only to this
// proxy, on loopback: each peer's WireGuard endpoint is a local port of ours, so WireGuard never sees the
// path change underneath it. The proxy owns the node's one public-facing "mesh socket"; on it it learns its
// public endpoint from the coordinator's rendezvous, punches holes towards the peer's candidates, keeps a
// relay registration as the fallback, and sends each packet (disguised by the cluster's obfuscation
// profile) over the best live path.
//
// Path rule (documented in docs/mesh.md): a confirmed direct path is used while it answers probes; the
// relay carries traffic until one is confirmed and whenever the direct path has gone silent for
// `pathTimeoutMs`. Packets arriving over any path are accepted, so a switch drops nothing in flight.

export type PathKind = 'direct' | 'relay'

export type PathView = {
  readonly kind: PathKind
  readonly address: UdpAddress
  readonly alive: boolean
  readonly inUse: boolean
  /** Last measured round trip: to the peer for a direct path, to the relay for a relayed one. */
  readonly rttMs: number | undefined
}

export type PathChange = {
  readonly peerId: string
  readonly from: PathKind | 'none'
  readonly to: PathKind | 'none'
}

export type TransportPeerInit = {
  readonly peerId: string
  /** 16 hex digits, the same on both ends; the coordinator picks it per pair of nodes. */
  readonly sessionId: string
  /** This node's end tag at the relay (the coordinator gives each end its own). */
  readonly relayEndTag?: Uint8Array
  readonly relay?: UdpAddress
  /** Where the peer may be reached directly: its public endpoint and its local addresses. */
  readonly candidates: readonly UdpAddress[]
}

export type TransportDropReason =
  'malformed' | 'failed-check' | 'unknown-source' | 'unknown-session' | 'bad-probe-tag' | 'not-wireguard'

export type MeshTransportInit = {
  readonly keys: TransportKeys
  /** The port wireguard-go listens on, on this machine. */
  readonly wireguardPort: number
  /** The public-facing socket's port; 0 (the default) lets the kernel pick. */
  readonly meshPort?: number
  readonly meshHost?: string
  readonly rendezvous?: UdpAddress
  /** How often to probe candidates while no direct path is confirmed. Default 100 ms. */
  readonly punchIntervalMs?: number
  /** How often to probe a confirmed direct path. Default 200 ms. */
  readonly probeIntervalMs?: number
  /** Silence after which a direct path counts as dead. Default 800 ms. */
  readonly pathTimeoutMs?: number
  /** How often to refresh the relay registration (keeps the NAT mapping open). Default 1000 ms. */
  readonly relayRefreshMs?: number
  readonly random?: Random
  readonly onPathChange?: (change: PathChange) => void
}

export type MeshTransport = {
  /** Binds the mesh socket; returns its local address. */
  start(): Promise<UdpAddress>
  /** Asks the rendezvous for this socket's public endpoint, retrying until `timeoutMs`. */
  discoverPublicEndpoint(timeoutMs?: number): Promise<UdpAddress>
  /** Adds a peer; returns the loopback endpoint to give wireguard-go for it. */
  addPeer(init: TransportPeerInit): Promise<UdpAddress>
  setCandidates(peerId: string, candidates: readonly UdpAddress[]): void
  removePeer(peerId: string): void
  paths(peerId: string): readonly PathView[]
  stats(): { readonly dropped: Readonly<Partial<Record<TransportDropReason, number>>>; readonly sent: number }
  stop(): Promise<void>
}

type Peer = {
  readonly init: TransportPeerInit
  readonly sessionId: SessionId
  readonly loopback: Socket
  candidates: UdpAddress[]
  direct: { address: UdpAddress; lastAckMs: number; rttMs: number } | undefined
  relayRegistered: { lastAckMs: number; rttMs: number } | undefined
  relaySentMs: number
  lastPunchMs: number
  lastRelayRefreshMs: number
  /** Outstanding probe nonces and when each went out. */
  readonly probes: Map<bigint, number>
  activePath: PathKind | 'none'
}

const addressKey = (address: UdpAddress) => `${address.address}:${address.port}`
const cryptoRandom: Random = { next: () => randomBytes(4).readUInt32BE(0) / 4294967296 }
const maxOutstandingProbes = 64

async function bindSocket(port: number, host: string | undefined): Promise<Socket> {
  const socket = createSocket('udp4')
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject)
    socket.bind(port, host, () => {
      socket.off('error', reject)
      resolve()
    })
  })
  // A peer that went away (ICMP unreachable) must not take the transport down.
  socket.on('error', () => undefined)
  return socket
}

export function createMeshTransport(init: MeshTransportInit): MeshTransport {
  const punchIntervalMs = init.punchIntervalMs ?? 100
  const probeIntervalMs = init.probeIntervalMs ?? 200
  const pathTimeoutMs = init.pathTimeoutMs ?? 800
  const relayRefreshMs = init.relayRefreshMs ?? 1000
  const random = init.random ?? cryptoRandom
  const peers = new Map<string, Peer>()
  const peersBySession = new Map<string, Peer>()
  const dropped: Partial<Record<TransportDropReason, number>> = {}
  const bindingWaiters = new Map<string, (mapped: UdpAddress) => void>()
  let socket: Socket | undefined
  let ticker: NodeJS.Timeout | undefined
  let sent = 0

  const drop = (reason: TransportDropReason) => {
    dropped[reason] = (dropped[reason] ?? 0) + 1
  }
  const now = () => performance.now()
  const sendTo = (bytes: Uint8Array, to: UdpAddress) => socket?.send(bytes, to.port, to.address)

  const choosePath = (peer: Peer): PathKind | 'none' => {
    if (peer.direct && now() - peer.direct.lastAckMs < pathTimeoutMs) return 'direct'
    if (peer.init.relay) return 'relay'
    return 'none'
  }
  const updatePath = (peer: Peer) => {
    const next = choosePath(peer)
    if (next === peer.activePath) return
    const from = peer.activePath
    peer.activePath = next
    init.onPathChange?.({ peerId: peer.init.peerId, from, to: next })
  }

  const sendProbe = (peer: Peer, to: UdpAddress) => {
    const nonce =
      BigInt.asUintN(64, BigInt(Math.floor(random.next() * 2 ** 32)) << 32n) | BigInt(peer.probes.size)
    if (peer.probes.size >= maxOutstandingProbes) {
      const oldest = peer.probes.keys().next().value
      if (oldest !== undefined) peer.probes.delete(oldest)
    }
    peer.probes.set(nonce, now())
    const tag = probeTag(init.keys, 'punch', peer.sessionId, nonce)
    sendTo(encodeControlFrame({ kind: 'punch', sessionId: peer.sessionId, nonce, tag }), to)
  }
  const registerWithRelay = (peer: Peer) => {
    if (!peer.init.relay || !peer.init.relayEndTag) return
    peer.relaySentMs = now()
    peer.lastRelayRefreshMs = now()
    sendTo(
      encodeControlFrame({
        kind: 'relay-register',
        sessionId: peer.sessionId,
        endTag: peer.init.relayEndTag,
      }),
      peer.init.relay,
    )
  }

  const tick = () => {
    const at = now()
    for (const peer of peers.values()) {
      const directAlive = peer.direct !== undefined && at - peer.direct.lastAckMs < pathTimeoutMs
      if (directAlive && at - peer.lastPunchMs >= probeIntervalMs) {
        peer.lastPunchMs = at
        sendProbe(peer, peer.direct!.address)
      } else if (!directAlive && at - peer.lastPunchMs >= punchIntervalMs) {
        peer.lastPunchMs = at
        const targets = new Map(peer.candidates.map((candidate) => [addressKey(candidate), candidate]))
        if (peer.direct) targets.set(addressKey(peer.direct.address), peer.direct.address)
        for (const target of targets.values()) sendProbe(peer, target)
      }
      if (at - peer.lastRelayRefreshMs >= relayRefreshMs) registerWithRelay(peer)
      updatePath(peer)
    }
  }

  /** A packet from wireguard-go for this peer: disguise it and send it over the path in use. */
  const fromWireguard = (peer: Peer, message: Buffer) => {
    const out = obfuscatePacket(message, init.keys, random)
    if (!out) return drop('not-wireguard')
    const path = choosePath(peer)
    const send = (bytes: Uint8Array) => {
      sent++
      if (path === 'direct') sendTo(bytes, peer.direct!.address)
      else if (path === 'relay')
        sendTo(
          encodeControlFrame({ kind: 'relay-data', sessionId: peer.sessionId, payload: bytes }),
          peer.init.relay!,
        )
    }
    for (const junk of out.junk) send(junk)
    send(out.packet)
  }

  const toWireguard = (peer: Peer, packet: Uint8Array) => {
    const result = deobfuscatePacket(packet, init.keys)
    if (!result.ok) return drop('failed-check')
    peer.loopback.send(result.packet, init.wireguardPort, '127.0.0.1')
  }

  const onControl = (frame: ControlFrame, from: RemoteInfo) => {
    if (frame.kind === 'binding-response') {
      bindingWaiters.get(sessionKey(frame.transactionId))?.(frame.mapped)
      return
    }
    if (frame.kind === 'binding-request' || frame.kind === 'relay-register') return drop('malformed')
    const peer = peersBySession.get(sessionKey(frame.sessionId))
    if (!peer) return drop('unknown-session')
    const source = { address: from.address, port: from.port }
    if (frame.kind === 'punch') {
      if (!tagsEqual(frame.tag, probeTag(init.keys, 'punch', peer.sessionId, frame.nonce)))
        return drop('bad-probe-tag')
      const tag = probeTag(init.keys, 'punch-ack', peer.sessionId, frame.nonce)
      sendTo(
        encodeControlFrame({ kind: 'punch-ack', sessionId: peer.sessionId, nonce: frame.nonce, tag }),
        source,
      )
      // The address a probe came from is a candidate too (the peer's NAT may map it differently than for
      // the rendezvous), as ICE's peer-reflexive candidates.
      if (!peer.candidates.some((candidate) => addressKey(candidate) === addressKey(source)))
        peer.candidates.push(source)
      return
    }
    if (frame.kind === 'punch-ack') {
      if (!tagsEqual(frame.tag, probeTag(init.keys, 'punch-ack', peer.sessionId, frame.nonce)))
        return drop('bad-probe-tag')
      const sentAt = peer.probes.get(frame.nonce)
      if (sentAt === undefined) return drop('bad-probe-tag')
      peer.probes.delete(frame.nonce)
      const at = now()
      peer.direct = { address: source, lastAckMs: at, rttMs: at - sentAt }
      updatePath(peer)
      return
    }
    const fromRelay = peer.init.relay !== undefined && addressKey(peer.init.relay) === addressKey(source)
    if (!fromRelay) return drop('unknown-source')
    if (frame.kind === 'relay-registered') {
      peer.relayRegistered = { lastAckMs: now(), rttMs: now() - peer.relaySentMs }
      return
    }
    toWireguard(peer, frame.payload)
  }

  const onMeshMessage = (message: Buffer, from: RemoteInfo) => {
    const decoded = decodeFrame(message)
    if (decoded.type === 'invalid') return drop('malformed')
    if (decoded.type === 'control') return onControl(decoded.frame, from)
    // A bare (disguised) WireGuard packet: only from the direct address of a known peer.
    const key = `${from.address}:${from.port}`
    for (const peer of peers.values())
      if (peer.direct && addressKey(peer.direct.address) === key) return toWireguard(peer, decoded.packet)
    drop('unknown-source')
  }

  return {
    async start() {
      if (!socket) {
        socket = await bindSocket(init.meshPort ?? 0, init.meshHost)
        socket.on('message', onMeshMessage)
        ticker = setInterval(tick, Math.max(10, Math.min(punchIntervalMs, probeIntervalMs) / 2))
      }
      const bound = socket.address()
      return { address: bound.address, port: bound.port }
    },
    async discoverPublicEndpoint(timeoutMs = 5_000) {
      if (!socket || !init.rendezvous) throw new Error('the mesh transport needs start() and a rendezvous')
      const transactionId = new Uint8Array(randomBytes(12))
      const key = sessionKey(transactionId)
      const rendezvous = init.rendezvous
      return new Promise<UdpAddress>((resolve, reject) => {
        const retry = setInterval(
          () => sendTo(encodeControlFrame({ kind: 'binding-request', transactionId }), rendezvous),
          250,
        )
        const timer = setTimeout(() => {
          clearInterval(retry)
          bindingWaiters.delete(key)
          reject(new Error(`no binding answer from ${addressKey(rendezvous)} in ${timeoutMs} ms`))
        }, timeoutMs)
        bindingWaiters.set(key, (mapped) => {
          clearInterval(retry)
          clearTimeout(timer)
          bindingWaiters.delete(key)
          resolve(mapped)
        })
        sendTo(encodeControlFrame({ kind: 'binding-request', transactionId }), rendezvous)
      })
    },
    async addPeer(peerInit) {
      if (peers.has(peerInit.peerId)) throw new Error(`peer ${peerInit.peerId} is already on the transport`)
      const loopback = await bindSocket(0, '127.0.0.1')
      const peer: Peer = {
        init: peerInit,
        sessionId: sessionIdFromHex(peerInit.sessionId),
        loopback,
        candidates: [...peerInit.candidates],
        direct: undefined,
        relayRegistered: undefined,
        relaySentMs: 0,
        lastPunchMs: 0,
        lastRelayRefreshMs: 0,
        probes: new Map(),
        activePath: 'none',
      }
      loopback.on('message', (message, from) => {
        // Only wireguard-go on this machine may hand us packets for the peer.
        if (from.address === '127.0.0.1' && from.port === init.wireguardPort) fromWireguard(peer, message)
        else drop('unknown-source')
      })
      peers.set(peerInit.peerId, peer)
      peersBySession.set(peerInit.sessionId, peer)
      registerWithRelay(peer)
      tick()
      const bound = loopback.address()
      return { address: '127.0.0.1', port: bound.port }
    },
    setCandidates(peerId, candidates) {
      const peer = peers.get(peerId)
      if (peer) peer.candidates = [...candidates]
    },
    removePeer(peerId) {
      const peer = peers.get(peerId)
      if (!peer) return
      peers.delete(peerId)
      peersBySession.delete(peer.init.sessionId)
      peer.loopback.close()
    },
    paths(peerId) {
      const peer = peers.get(peerId)
      if (!peer) return []
      const active = choosePath(peer)
      const views: PathView[] = []
      if (peer.direct)
        views.push({
          kind: 'direct',
          address: peer.direct.address,
          alive: now() - peer.direct.lastAckMs < pathTimeoutMs,
          inUse: active === 'direct',
          rttMs: peer.direct.rttMs,
        })
      if (peer.init.relay)
        views.push({
          kind: 'relay',
          address: peer.init.relay,
          alive:
            peer.relayRegistered !== undefined && now() - peer.relayRegistered.lastAckMs < 3 * relayRefreshMs,
          inUse: active === 'relay',
          rttMs: peer.relayRegistered?.rttMs,
        })
      return views
    },
    stats() {
      return { dropped: { ...dropped }, sent }
    },
    async stop() {
      if (ticker) clearInterval(ticker)
      ticker = undefined
      for (const peerId of [...peers.keys()]) this.removePeer(peerId)
      const closing = socket
      socket = undefined
      if (closing) await new Promise<void>((resolve) => closing.close(() => resolve()))
    },
  }
}
