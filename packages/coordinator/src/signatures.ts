import { createPublicKey, verify } from 'node:crypto'

/**
 * Decodes base64url only in its canonical form (no padding, unused low bits zero), else undefined.
 * Node's decoder ignores the unused bits of the last character, so without this check one signature has
 * several spellings (16 for an Ed25519 signature), and a guard keyed on the text would let each replay.
 */
export function decodeCanonicalBase64Url(text: string): Buffer | undefined {
  const bytes = Buffer.from(text, 'base64url')
  return bytes.toString('base64url') === text ? bytes : undefined
}

/**
 * Verifies an Ed25519 signature; public key and signature are base64url (raw 32 and 64 bytes). Either in a
 * non-canonical encoding never verifies, so one key has one spelling at enrollment too.
 */
export function verifyEd25519(
  publicKeyBase64Url: string,
  payload: string,
  signatureBase64Url: string,
): boolean {
  const signature = decodeCanonicalBase64Url(signatureBase64Url)
  if (signature?.length !== 64) return false
  if (decodeCanonicalBase64Url(publicKeyBase64Url)?.length !== 32) return false
  try {
    const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: publicKeyBase64Url }, format: 'jwk' })
    return verify(null, Buffer.from(payload), key, signature)
  } catch {
    return false
  }
}
