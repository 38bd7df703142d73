import assert from 'node:assert/strict'
import { generateKeyPairSync, sign } from 'node:crypto'
import { describe, it } from 'node:test'
import { base64UrlRespellings } from '@gpumesh/testing'
import { decodeCanonicalBase64Url, verifyEd25519 } from '../src/signatures.ts'

describe('decodeCanonicalBase64Url', () => {
  it('accepts the canonical spelling and refuses padded, stray-character and unused-bit spellings', () => {
    const bytes = Buffer.from([0xff, 0x00, 0x7f])
    assert.deepEqual(decodeCanonicalBase64Url(bytes.toString('base64url')), bytes)
    assert.equal(decodeCanonicalBase64Url('_w=='), undefined, 'padding')
    assert.equal(decodeCanonicalBase64Url('_x'), undefined, 'unused bits set')
    assert.equal(decodeCanonicalBase64Url('_w+'), undefined, 'standard base64 character')
    assert.equal(decodeCanonicalBase64Url('_w '), undefined, 'space')
  })
})

describe('verifyEd25519', () => {
  it('verifies the canonical signature and none of its 15 other spellings', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519')
    const publicKeyText = publicKey.export({ format: 'jwk' }).x!
    const signature = sign(null, Buffer.from('payload'), privateKey).toString('base64url')
    assert.equal(verifyEd25519(publicKeyText, 'payload', signature), true)
    const variants = base64UrlRespellings(signature)
    assert.equal(variants.length, 15)
    for (const variant of variants) {
      assert.deepEqual(Buffer.from(variant, 'base64url'), Buffer.from(signature, 'base64url'), 'same bytes')
      assert.equal(verifyEd25519(publicKeyText, 'payload', variant), false, variant)
    }
  })

  it('refuses a public key in a non-canonical spelling (its last character carries 4 bits and 2 unused)', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519')
    const publicKeyText = publicKey.export({ format: 'jwk' }).x!
    const signature = sign(null, Buffer.from('payload'), privateKey).toString('base64url')
    const last = publicKeyText.at(-1)!
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
    const respelled = publicKeyText.slice(0, -1) + alphabet[alphabet.indexOf(last) ^ 0b01]!
    assert.deepEqual(Buffer.from(respelled, 'base64url'), Buffer.from(publicKeyText, 'base64url'))
    assert.equal(verifyEd25519(respelled, 'payload', signature), false)
    assert.equal(verifyEd25519(publicKeyText, 'payload', signature), true)
  })
})
