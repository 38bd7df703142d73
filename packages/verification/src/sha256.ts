import { sha256 as nobleSha256 } from '@noble/hashes/sha2.js'

/** SHA-256 from a pure implementation: verification code stays free of I/O modules (node:crypto). */
export function sha256(bytes: Uint8Array): Uint8Array {
  return nobleSha256(bytes)
}
