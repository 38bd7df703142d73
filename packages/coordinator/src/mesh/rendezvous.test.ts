import assert from 'node:assert/strict'
import { createSocket, type Socket } from 'node:dgram'
import { after, before, describe, it } from 'node:test'
import { decodeFrame, encodeControlFrame, sessionIdFromHex, type ControlFrame } from '@gpumesh/mesh'
import { createRendezvous, type Rendezvous } from './rendezvous.ts'

// Real UDP sockets on loopback: the rendezvous answers bindings, the relay joins exactly two registered ends.

type Endpoint = { socket: Socket; port: number; next(timeoutMs?: number): Promise<Buffer | undefined> }

async function endpoint(): Promise<Endpoint> {
  const socket = createSocket('udp4')
  const queue: Buffer[] = []
  const waiters: ((message: Buffer) => void)[] = []
  socket.on('message', (message) => {
    const waiter = waiters.shift()
    if (waiter) waiter(message)
    else queue.push(message)
  })
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve))
  return {
    socket,
    port: socket.address().port,
    next(timeoutMs = 500) {
      const queued = queue.shift()
      if (queued) return Promise.resolve(queued)
      return new Promise((resolve) => {
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(waiter), 1)
          resolve(undefined)
        }, timeoutMs)
        const waiter = (message: Buffer) => {
          clearTimeout(timer)
          resolve(message)
        }
        waiters.push(waiter)
      })
    },
  }
}

const control = (message: Buffer | undefined): ControlFrame | undefined => {
  if (!message) return undefined
  const decoded = decodeFrame(message)
  return decoded.type === 'control' ? decoded.frame : undefined
}

describe('coordinator rendezvous and relay', () => {
  let rendezvous: Rendezvous
  let port: number
  const sockets: Endpoint[] = []
  const open = async () => {
    const opened = await endpoint()
    sockets.push(opened)
    return opened
  }
  const send = (from: Endpoint, frame: ControlFrame) =>
    from.socket.send(encodeControlFrame(frame), port, '127.0.0.1')
  const sessionHex = '0102030405060708'
  const sessionId = sessionIdFromHex(sessionHex)
  const tagA = new Uint8Array(16).fill(0xa)
  const tagB = new Uint8Array(16).fill(0xb)

  before(async () => {
    rendezvous = createRendezvous({ host: '127.0.0.1' })
    port = (await rendezvous.start()).port
  })
  after(async () => {
    for (const opened of sockets) opened.socket.close()
    await rendezvous.stop()
  })

  it('answers a binding request with the address it came from', async () => {
    const worker = await open()
    const transactionId = new Uint8Array(12).fill(5)
    send(worker, { kind: 'binding-request', transactionId })
    const answer = control(await worker.next())
    assert.deepEqual(
      { ...answer },
      { kind: 'binding-response', transactionId, mapped: { address: '127.0.0.1', port: worker.port } },
    )
    assert.equal(rendezvous.stats().bindingsAnswered, 1)
  })

  it('relays between the two registered ends of a session, byte for byte', async () => {
    const a = await open()
    const b = await open()
    rendezvous.allowSession(sessionHex, [tagA, tagB])
    send(a, { kind: 'relay-register', sessionId, endTag: tagA })
    assert.equal(control(await a.next())?.kind, 'relay-registered')
    send(b, { kind: 'relay-register', sessionId, endTag: tagB })
    assert.equal(control(await b.next())?.kind, 'relay-registered')
    assert.deepEqual(rendezvous.sessionEnds(sessionHex), [
      { address: '127.0.0.1', port: a.port },
      { address: '127.0.0.1', port: b.port },
    ])
    const payload = new Uint8Array([4, 0, 0, 0, ...new Uint8Array(60).fill(9)])
    const frame = encodeControlFrame({ kind: 'relay-data', sessionId, payload })
    a.socket.send(frame, port, '127.0.0.1')
    assert.deepEqual(new Uint8Array((await b.next())!), frame)
    b.socket.send(frame, port, '127.0.0.1')
    assert.deepEqual(new Uint8Array((await a.next())!), frame)
    assert.equal(rendezvous.stats().framesRelayed, 2)
  })

  it('drops frames for unknown sessions, from strangers, with forged tags or that are not its business', async () => {
    const stranger = await open()
    const before = rendezvous.stats().framesRelayed
    send(stranger, { kind: 'relay-register', sessionId, endTag: new Uint8Array(16).fill(0xc) })
    send(stranger, { kind: 'relay-data', sessionId, payload: new Uint8Array([1, 2, 3]) })
    send(stranger, {
      kind: 'relay-data',
      sessionId: sessionIdFromHex('ffffffffffffffff'),
      payload: new Uint8Array([1]),
    })
    stranger.socket.send(new Uint8Array([4, 0, 0, 0, 1, 2, 3]), port, '127.0.0.1')
    stranger.socket.send(new Uint8Array([0x47, 0x4d, 0x01, 99]), port, '127.0.0.1')
    assert.equal(await stranger.next(300), undefined, 'nothing comes back to a stranger')
    const { dropped, framesRelayed } = rendezvous.stats()
    assert.equal(framesRelayed, before)
    assert.deepEqual(dropped, {
      'bad-end-tag': 1,
      'unregistered-source': 1,
      'unknown-session': 1,
      'not-control': 1,
      malformed: 1,
    })
  })

  it('stops relaying a revoked session, and refuses sessions with equal or short tags', async () => {
    rendezvous.revokeSession(sessionHex)
    assert.equal(rendezvous.sessionEnds(sessionHex), undefined)
    assert.throws(() => rendezvous.allowSession(sessionHex, [tagA, tagA]), /different tags/)
    assert.throws(() => rendezvous.allowSession(sessionHex, [tagA, new Uint8Array(3)]), /16 bytes/)
    assert.throws(() => rendezvous.allowSession('nothex', [tagA, tagB]))
  })
})
