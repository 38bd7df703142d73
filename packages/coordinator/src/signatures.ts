import { createPublicKey, verify } from 'node:crypto'

/** Verifies an Ed25519 signature; public key and signature are base64url (raw 32 and 64 bytes). */
export function verifyEd25519(
  publicKeyBase64Url: string,
  payload: string,
  signatureBase64Url: string,
): boolean {
  try {
    const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: publicKeyBase64Url }, format: 'jwk' })
    return verify(null, Buffer.from(payload), key, Buffer.from(signatureBase64Url, 'base64url'))
  } catch {
    return false
  }
}
