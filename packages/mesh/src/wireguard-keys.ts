import { x25519 } from '@noble/curves/ed25519.js'
import { invariant } from '@gpumesh/core'

// WireGuard's keys: Curve25519, in WireGuard's base64 form. The secret comes in as bytes (the caller draws
// them from the machine's CSPRNG) so this stays pure and the same secret always gives the same pair.

export type WireguardKeyPair = { readonly privateKey: string; readonly publicKey: string }

export const wireguardSecretBytes = 32

/** The key pair for 32 secret bytes, clamped as `wg genkey` clamps them. */
export function wireguardKeyPairFromSecret(secret: Uint8Array): WireguardKeyPair {
  invariant(secret.length === wireguardSecretBytes, `a WireGuard secret is ${wireguardSecretBytes} bytes`)
  const privateKey = Uint8Array.from(secret)
  privateKey[0]! &= 248
  privateKey[31]! &= 127
  privateKey[31]! |= 64
  return { privateKey: toBase64(privateKey), publicKey: toBase64(x25519.getPublicKey(privateKey)) }
}

/** The public key of a base64 WireGuard private key (what `wg pubkey` prints). */
export function wireguardPublicKey(privateKeyBase64: string): string {
  const privateKey = fromBase64(privateKeyBase64)
  invariant(privateKey.length === wireguardSecretBytes, 'a WireGuard private key is 32 bytes of base64')
  return toBase64(x25519.getPublicKey(privateKey))
}

const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'

// Pure packages have no Buffer; btoa/atob would need strings of bytes. 32 bytes: a loop is enough.
function toBase64(bytes: Uint8Array): string {
  let text = ''
  for (let index = 0; index < bytes.length; index += 3) {
    const chunk = (bytes[index]! << 16) | ((bytes[index + 1] ?? 0) << 8) | (bytes[index + 2] ?? 0)
    const left = bytes.length - index
    text += alphabet[(chunk >> 18) & 63]! + alphabet[(chunk >> 12) & 63]!
    text += left > 1 ? alphabet[(chunk >> 6) & 63]! : '='
    text += left > 2 ? alphabet[chunk & 63]! : '='
  }
  return text
}

function fromBase64(text: string): Uint8Array {
  const clean = text.replace(/=+$/, '')
  const bytes: number[] = []
  let buffer = 0
  let bits = 0
  for (const char of clean) {
    const value = alphabet.indexOf(char)
    invariant(value >= 0, 'a WireGuard key is standard base64')
    buffer = (buffer << 6) | value
    bits += 6
    if (bits >= 8) {
      bits -= 8
      bytes.push((buffer >> bits) & 255)
    }
  }
  return Uint8Array.from(bytes)
}
