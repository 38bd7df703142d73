import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { createSocket, type Socket } from 'node:dgram'
import { after, describe, it } from 'node:test'
import { createRendezvous, type Rendezvous } from '@gpumesh/coordinator'
import { deriveTransportKeys, type UdpAddress } from '@gpumesh/mesh'
import { createMeshTransport, type MeshTransport, type PathChange } from '@gpumesh/worker'

// Two mesh transports, a rendezvous and a relay on loopback, with a UDP socket standing in for each
// node's wireguard-go: a packet handed to one node's loopback endpoint comes out at the other node's
// "wireguard-go" unchanged, first through the relay, then directly once a probe is answered.

const keys = deriveTransportKeys(randomBytes(32), 'standard')

type FakeWireguard = { socket: Socket; port: number; received: Buffer[] }
async function fakeWireguard(): Promise<FakeWireguard> {
  const socket = createSocket('udp4')
  const received: Buffer[] = []
  socket.on('message', (message) => received.push(message))
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve))
  return { socket, port: socket.address().port, received }
}

const transportPacket = (fill: number) => Buffer.from([4, 0, 0, 0, ...new Uint8Array(44).fill(fill)])
const waitFor = async (condition: () => boolean, timeoutMs: number, what: string) => {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

describe('mesh transport on loopback', () => {
  const transports: MeshTransport[] = []
  const fakes: FakeWireguard[] = []
  let rendezvous: Rendezvous
  after(async () => {
    for (const transport of transports) await transport.stop()
    for (const fake of fakes) fake.socket.close()
    await rendezvous?.stop()
  })

  it('learns its endpoint, relays first, then goes direct without losing a packet', async () => {
    rendezvous = createRendezvous({ host: '127.0.0.1' })
    const relay: UdpAddress = await rendezvous.start()
    const sessionId = randomBytes(8).toString('hex')
    const tags = [new Uint8Array(randomBytes(16)), new Uint8Array(randomBytes(16))] as const
    rendezvous.allowSession(sessionId, tags)
    const changes: PathChange[] = []
    const nodes = []
    for (const index of [0, 1]) {
      const fake = await fakeWireguard()
      fakes.push(fake)
      const transport = createMeshTransport({
        keys,
        wireguardPort: fake.port,
        meshHost: '127.0.0.1',
        rendezvous: relay,
        onPathChange: (change) => changes.push({ ...change, peerId: `${index}->${change.peerId}` }),
      })
      transports.push(transport)
      const local = await transport.start()
      const mapped = await transport.discoverPublicEndpoint()
      assert.deepEqual(mapped, local, 'on loopback, the rendezvous sees the socket as bound')
      nodes.push({ fake, transport, mapped })
    }
    const [a, b] = nodes as [(typeof nodes)[0], (typeof nodes)[0]]
    // No candidates yet: only the relay can carry traffic.
    const aToB = await a.transport.addPeer({
      peerId: 'b',
      sessionId,
      relay,
      relayEndTag: tags[0],
      candidates: [],
    })
    const bToA = await b.transport.addPeer({
      peerId: 'a',
      sessionId,
      relay,
      relayEndTag: tags[1],
      candidates: [],
    })
    await waitFor(
      () => a.transport.paths('b').some((path) => path.kind === 'relay' && path.alive),
      2_000,
      'relay',
    )
    await waitFor(
      () => b.transport.paths('a').some((path) => path.kind === 'relay' && path.alive),
      2_000,
      'relay',
    )
    a.fake.socket.send(transportPacket(1), aToB.port, '127.0.0.1')
    await waitFor(() => b.fake.received.length === 1, 2_000, 'relayed packet')
    assert.deepEqual(b.fake.received[0], transportPacket(1))
    assert.equal(rendezvous.stats().framesRelayed, 1)
    b.fake.socket.send(transportPacket(2), bToA.port, '127.0.0.1')
    await waitFor(() => a.fake.received.length === 1, 2_000, 'relayed answer')

    // Candidates arrive: a probe is answered, and traffic moves to the direct path.
    a.transport.setCandidates('b', [b.mapped])
    b.transport.setCandidates('a', [a.mapped])
    await waitFor(
      () => a.transport.paths('b').some((path) => path.kind === 'direct' && path.inUse),
      2_000,
      'direct',
    )
    const relayedBefore = rendezvous.stats().framesRelayed
    for (let fill = 10; fill < 20; fill++) a.fake.socket.send(transportPacket(fill), aToB.port, '127.0.0.1')
    await waitFor(() => b.fake.received.length === 11, 2_000, 'direct packets')
    assert.equal(rendezvous.stats().framesRelayed, relayedBefore, 'nothing more went through the relay')
    const direct = a.transport.paths('b').find((path) => path.kind === 'direct')!
    assert.ok(direct.rttMs !== undefined && direct.rttMs < 50, `direct RTT ${direct.rttMs} ms`)
    assert.ok(
      changes.some((change) => change.peerId === '0->b' && change.from === 'relay' && change.to === 'direct'),
    )
  })

  it('drops what fails the check and what comes from strangers, never passing it to WireGuard', async () => {
    const [a] = transports as [MeshTransport]
    const received = fakes[0]!.received.length
    const stranger = createSocket('udp4')
    await new Promise<void>((resolve) => stranger.bind(0, '127.0.0.1', resolve))
    const mesh = (await a.start()).port
    stranger.send(Buffer.from([1, 0, 0, 0, ...new Uint8Array(144)]), mesh, '127.0.0.1')
    stranger.send(Buffer.from([0x47, 0x4d, 0x01, 42]), mesh, '127.0.0.1')
    stranger.send(Buffer.from([0x47, 0x4d, 0x01, 3, ...new Uint8Array(32)]), mesh, '127.0.0.1')
    await waitFor(
      () => Object.values(a.stats().dropped).reduce((sum, count) => sum + (count ?? 0), 0) >= 3,
      2_000,
      'drops',
    )
    stranger.close()
    assert.equal(fakes[0]!.received.length, received)
    const { dropped } = a.stats()
    assert.equal(dropped['unknown-source'], 1)
    assert.equal(dropped.malformed, 1)
    assert.equal(dropped['unknown-session'], 1)
  })
})
