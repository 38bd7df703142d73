import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { seededRandom } from '@gpumesh/core'
import {
  deobfuscatePacket,
  deriveTransportKeys,
  obfuscatePacket,
  plainMessageType,
  probeTag,
  standardLimits,
  tagsEqual,
} from './obfuscation.ts'
import { decodeFrame, startsWithControlMagic } from './transport-wire.ts'

const secret = new Uint8Array(32).fill(7)
const otherSecret = new Uint8Array(32).fill(8)

/** A packet shaped as wireguard-go sends it: type byte, three zeros, the size its type has. */
const wireguardPacket = fc
  .oneof(
    fc.constant([1, 148] as const),
    fc.constant([2, 92] as const),
    fc.constant([3, 64] as const),
    fc.nat(90).map((blocks) => [4, 32 + blocks * 16] as const),
  )
  .chain(([type, size]) =>
    fc
      .uint8Array({ minLength: size - 4, maxLength: size - 4 })
      .map((rest) => new Uint8Array([type, 0, 0, 0, ...rest])),
  )

describe('mesh obfuscation', () => {
  it('round-trips every WireGuard packet under each profile', () => {
    for (const profile of ['off', 'standard'] as const) {
      const keys = deriveTransportKeys(secret, profile)
      fc.assert(
        fc.property(wireguardPacket, fc.integer(), (packet, seed) => {
          const out = obfuscatePacket(packet, keys, seededRandom(seed))!
          const back = deobfuscatePacket(out.packet, keys)
          assert.deepEqual(back, { ok: true, packet })
          for (const junk of out.junk) assert.equal(deobfuscatePacket(junk, keys).ok, false)
        }),
        { numRuns: 300 },
      )
    }
  })

  it('under standard, leaves no WireGuard header, no fixed handshake size and no control-frame look', () => {
    const keys = deriveTransportKeys(secret, 'standard')
    const sizes = new Set<number>()
    fc.assert(
      fc.property(wireguardPacket, fc.integer(), (packet, seed) => {
        const out = obfuscatePacket(packet, keys, seededRandom(seed))!
        assert.equal(plainMessageType(out.packet), undefined)
        assert.equal(startsWithControlMagic(out.packet), false)
        assert.equal(decodeFrame(out.packet).type, 'wireguard')
        if (packet[0] === 1) {
          sizes.add(out.packet.length)
          assert.ok(
            out.junk.length >= standardLimits.junkCount[0] && out.junk.length <= standardLimits.junkCount[1],
          )
        }
      }),
      { numRuns: 400 },
    )
    assert.ok(sizes.size > 5, `handshake initiations vary in size (${[...sizes].join(',')})`)
  })

  it('gives every cluster its own headers, and a packet from another cluster fails the check', () => {
    const ours = deriveTransportKeys(secret, 'standard')
    const theirs = deriveTransportKeys(otherSecret, 'standard')
    assert.notDeepEqual(ours.headers, theirs.headers)
    assert.equal(new Set(ours.headers).size, 5)
    const packet = new Uint8Array(148)
    packet[0] = 1
    const out = obfuscatePacket(packet, theirs, seededRandom(1))!
    assert.deepEqual(deobfuscatePacket(out.packet, ours), { ok: false, reason: 'unknown-header' })
  })

  it('drops what wireguard-go would never send, and malformed sizes', () => {
    const off = deriveTransportKeys(secret, 'off')
    const standard = deriveTransportKeys(secret, 'standard')
    assert.equal(obfuscatePacket(new Uint8Array([9, 0, 0, 0, 1, 2]), standard, seededRandom(1)), undefined)
    assert.equal(obfuscatePacket(new Uint8Array([1, 0, 0, 0]), off, seededRandom(1)), undefined)
    assert.deepEqual(deobfuscatePacket(new Uint8Array([1, 0, 0, 0, 5]), off), {
      ok: false,
      reason: 'bad-size',
    })
    const truncated = new Uint8Array(40)
    new DataView(truncated.buffer).setUint32(0, standard.headers[4]!)
    assert.deepEqual(deobfuscatePacket(truncated, standard), { ok: false, reason: 'bad-size' })
    assert.deepEqual(deobfuscatePacket(new Uint8Array(2), standard), { ok: false, reason: 'bad-size' })
  })

  it('tags punch probes so only holders of the cluster key can make them', () => {
    const keys = deriveTransportKeys(secret, 'standard')
    const other = deriveTransportKeys(otherSecret, 'standard')
    const session = new Uint8Array(8).fill(3)
    const tag = probeTag(keys, 'punch', session, 42n)
    assert.equal(tag.length, 16)
    assert.ok(tagsEqual(tag, probeTag(keys, 'punch', session, 42n)))
    assert.ok(!tagsEqual(tag, probeTag(keys, 'punch-ack', session, 42n)))
    assert.ok(!tagsEqual(tag, probeTag(keys, 'punch', session, 43n)))
    assert.ok(!tagsEqual(tag, probeTag(other, 'punch', session, 42n)))
    assert.throws(() => deriveTransportKeys(new Uint8Array(4), 'standard'))
  })
})
