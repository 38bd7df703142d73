import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import {
  decodeFrame,
  encodeControlFrame,
  sessionIdFromHex,
  sessionKey,
  type ControlFrame,
} from './transport-wire.ts'

const bytes = (length: number) => fc.uint8Array({ minLength: length, maxLength: length })
const address = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((parts) => parts.join('.'))

const controlFrame: fc.Arbitrary<ControlFrame> = fc.oneof(
  bytes(12).map((transactionId) => ({ kind: 'binding-request' as const, transactionId })),
  fc
    .record({ transactionId: bytes(12), address, port: fc.nat(65_535) })
    .map(({ transactionId, address, port }) => ({
      kind: 'binding-response' as const,
      transactionId,
      mapped: { address, port },
    })),
  fc
    .record({
      kind: fc.constantFrom('punch' as const, 'punch-ack' as const),
      sessionId: bytes(8),
      nonce: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
      tag: bytes(16),
    })
    .map((frame) => frame),
  fc.record({ kind: fc.constant('relay-register' as const), sessionId: bytes(8), endTag: bytes(16) }),
  fc.record({ kind: fc.constant('relay-registered' as const), sessionId: bytes(8) }),
  fc.record({
    kind: fc.constant('relay-data' as const),
    sessionId: bytes(8),
    payload: fc.uint8Array({ minLength: 1, maxLength: 1500 }),
  }),
)

describe('mesh transport wire format', () => {
  it('decodes every control frame it encodes to the same frame', () => {
    fc.assert(
      fc.property(controlFrame, (frame) => {
        const decoded = decodeFrame(encodeControlFrame(frame))
        assert.equal(decoded.type, 'control')
        // fast-check's records are not plain objects: compare fields
        assert.deepEqual({ ...(decoded.type === 'control' ? decoded.frame : {}) }, { ...frame })
      }),
      { numRuns: 500 },
    )
  })

  it('passes plain WireGuard packets through as WireGuard, untouched', () => {
    const initiation = new Uint8Array(148)
    initiation[0] = 1
    const decoded = decodeFrame(initiation)
    assert.equal(decoded.type, 'wireguard')
    assert.equal(decoded.type === 'wireguard' && decoded.packet, initiation)
  })

  it('never throws on arbitrary bytes, and reports malformed control frames as invalid', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 200 }), (input) => {
        const framed = new Uint8Array([0x47, 0x4d, 0x01, ...input])
        const decoded = decodeFrame(framed)
        assert.ok(['control', 'invalid'].includes(decoded.type))
        decodeFrame(input)
      }),
      { numRuns: 1000 },
    )
    assert.deepEqual(decodeFrame(new Uint8Array([0x47, 0x4d, 0x01, 9])), {
      type: 'invalid',
      reason: 'unknown control kind 9',
    })
    assert.equal(decodeFrame(new Uint8Array([0x47, 0x4d, 0x01, 1, 0, 0])).type, 'invalid')
    // a relay frame must carry something to relay
    assert.equal(decodeFrame(new Uint8Array([0x47, 0x4d, 0x01, 7, 1, 2, 3, 4, 5, 6, 7, 8])).type, 'invalid')
  })

  it('refuses to encode wrong-sized fields or non-IPv4 addresses', () => {
    assert.throws(
      () => encodeControlFrame({ kind: 'binding-request', transactionId: new Uint8Array(3) }),
      /transaction id must be 12 bytes/,
    )
    assert.throws(
      () =>
        encodeControlFrame({
          kind: 'binding-response',
          transactionId: new Uint8Array(12),
          mapped: { address: '::1', port: 1 },
        }),
      /IPv4/,
    )
    assert.throws(() =>
      encodeControlFrame({
        kind: 'binding-response',
        transactionId: new Uint8Array(12),
        mapped: { address: '1.2.3.4', port: 70_000 },
      }),
    )
  })

  it('writes session ids as hex keys and back', () => {
    fc.assert(
      fc.property(bytes(8), (sessionId) =>
        assert.deepEqual(sessionIdFromHex(sessionKey(sessionId)), sessionId),
      ),
    )
    assert.throws(() => sessionIdFromHex('xyz'))
  })
})
