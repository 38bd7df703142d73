import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { createPublicKey, randomBytes } from 'node:crypto'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { wireguardKeyPairFromSecret, wireguardPublicKey } from './wireguard-keys.ts'

// The pure key code against two independent implementations: Node's own X25519 and `wg pubkey`.

function nodePublicKey(privateKeyBase64: string): string {
  const d = Buffer.from(privateKeyBase64, 'base64').toString('base64url')
  const key = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', d, x: '' }, format: 'jwk' })
  return Buffer.from(key.export({ format: 'jwk' }).x!, 'base64url').toString('base64')
}

describe('WireGuard keys', () => {
  it('derives the public key Node derives, for any secret, clamped as wg genkey clamps', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (secret) => {
        const pair = wireguardKeyPairFromSecret(secret)
        const privateBytes = Buffer.from(pair.privateKey, 'base64')
        assert.equal(privateBytes.length, 32)
        assert.equal(privateBytes[0]! & 7, 0)
        assert.equal(privateBytes[31]! & 0xc0, 0x40)
        assert.equal(pair.publicKey, nodePublicKey(pair.privateKey))
        assert.equal(wireguardPublicKey(pair.privateKey), pair.publicKey)
      }),
      { numRuns: 200 },
    )
  })

  it('agrees with `wg pubkey`', () => {
    const pair = wireguardKeyPairFromSecret(randomBytes(32))
    const printed = execFileSync('wg', ['pubkey'], { input: `${pair.privateKey}\n` })
      .toString()
      .trim()
    assert.equal(printed, pair.publicKey)
  })

  it('refuses a secret of the wrong length', () => {
    assert.throws(() => wireguardKeyPairFromSecret(new Uint8Array(31)), /32 bytes/)
  })
})
