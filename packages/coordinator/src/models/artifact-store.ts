import { createHash, randomBytes } from 'node:crypto'
import {
  createReadStream,
  createWriteStream,
  existsSync,
  mkdirSync,
  renameSync,
  rmSync,
  statSync,
} from 'node:fs'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { Transform } from 'node:stream'
import { sha256HexPattern } from '@gpumesh/protocol'

// Model artifacts by content: a blob is stored under its SHA-256 and can only be stored by sending bytes that
// hash to it. One interface, so an S3-compatible bucket can stand in for the directory.

export type ArtifactStore = {
  has(sha256: string): Promise<boolean>
  /**
   * Streams `body` in, hashing as it goes. Kept only when it hashes to `expectedSha256` and is at most
   * `maxBytes`; otherwise nothing is kept and the reason is returned.
   */
  put(
    expectedSha256: string,
    body: Readable,
    maxBytes: number,
  ): Promise<
    { ok: true; sizeBytes: number } | { ok: false; reason: 'hash_mismatch' | 'too_large'; detail: string }
  >
  /** The blob's bytes and size, or undefined when it is not stored. */
  open(sha256: string): Promise<{ stream: Readable; sizeBytes: number } | undefined>
}

const sha256Pattern = new RegExp(sha256HexPattern)

export type CheckedWrite =
  | { ok: true; sizeBytes: number; digest: Buffer }
  | { ok: false; reason: 'hash_mismatch' | 'too_large'; detail: string }

/**
 * Streams `body` to a new file at `path`, hashing and counting as it goes; stops at `maxBytes`. Every artifact
 * store writes through here, so none keeps bytes it has not checked. The caller removes the file on a refusal.
 */
export async function writeChecked(
  body: Readable,
  path: string,
  expectedSha256: string,
  maxBytes: number,
): Promise<CheckedWrite> {
  const hash = createHash('sha256')
  let sizeBytes = 0
  let tooLarge = false
  const meter = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      sizeBytes += chunk.length
      if (sizeBytes > maxBytes) {
        tooLarge = true
        done(new Error('artifact too large'))
        return
      }
      hash.update(chunk)
      done(null, chunk)
    },
  })
  try {
    await pipeline(body, meter, createWriteStream(path, { flags: 'wx', mode: 0o600 }))
  } catch (error) {
    if (tooLarge) return { ok: false, reason: 'too_large', detail: `more than ${maxBytes} bytes` }
    throw error
  }
  const digest = hash.digest()
  const actual = digest.toString('hex')
  if (actual !== expectedSha256)
    return { ok: false, reason: 'hash_mismatch', detail: `the bytes sent hash to ${actual}` }
  return { ok: true, sizeBytes, digest }
}

/** A directory: blobs in `sha256/ab/abcdef…`, written to a temporary name and renamed once checked. */
export function directoryArtifactStore(root: string): ArtifactStore {
  const pathOf = (sha256: string) => join(root, 'sha256', sha256.slice(0, 2), sha256)
  return {
    async has(sha256) {
      return sha256Pattern.test(sha256) && existsSync(pathOf(sha256))
    },

    async put(expectedSha256, body, maxBytes) {
      if (!sha256Pattern.test(expectedSha256)) throw new Error(`not a SHA-256: ${expectedSha256}`)
      const target = pathOf(expectedSha256)
      mkdirSync(join(root, 'sha256', expectedSha256.slice(0, 2)), { recursive: true })
      const temporary = `${target}.${randomBytes(6).toString('hex')}.part`
      let written: CheckedWrite
      try {
        written = await writeChecked(body, temporary, expectedSha256, maxBytes)
      } catch (error) {
        rmSync(temporary, { force: true })
        throw error
      }
      if (!written.ok) {
        rmSync(temporary, { force: true })
        return written
      }
      // The same bytes stored twice (two uploads at once) end as one file either way.
      renameSync(temporary, target)
      return { ok: true, sizeBytes: written.sizeBytes }
    },

    async open(sha256) {
      if (!sha256Pattern.test(sha256)) return undefined
      const path = pathOf(sha256)
      if (!existsSync(path)) return undefined
      return { stream: createReadStream(path), sizeBytes: statSync(path).size }
    },
  }
}
