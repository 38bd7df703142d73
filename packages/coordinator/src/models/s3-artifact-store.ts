import { randomBytes } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import {
  GetObjectCommand,
  HeadObjectCommand,
  NoSuchKey,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3'
import { sha256HexPattern } from '@gpumesh/protocol'
import { writeChecked, type ArtifactStore } from './artifact-store.ts'

// Model artifacts in an S3-compatible bucket, behind the same interface as the directory store: a blob lives
// under `${prefix}sha256/ab/abcdef…` and is written there only once its bytes are known to hash to that name.

export type S3ArtifactStoreInit = {
  /** The service's URL, for S3-compatible services (MinIO, R2, …); unset for AWS S3 itself. */
  endpoint?: string
  region: string
  bucket: string
  /** Put before every key, as is: usually ends in `/`. Default: none. */
  prefix?: string
  /** Both or neither; neither uses the SDK's default credential chain (environment, profile, instance role). */
  accessKeyId?: string
  secretAccessKey?: string
  /** `bucket` in the path rather than the host name, as most S3-compatible services need. Default: false. */
  forcePathStyle?: boolean
}

/** The most one PutObject request may carry; a larger `maxBytes` would need a multipart upload. */
export const maxPutObjectBytes = 5 * 1024 * 1024 * 1024

const sha256Pattern = new RegExp(sha256HexPattern)

export function s3ArtifactStore(options: S3ArtifactStoreInit): ArtifactStore {
  if ((options.accessKeyId === undefined) !== (options.secretAccessKey === undefined)) {
    throw new Error('s3ArtifactStore: give both accessKeyId and secretAccessKey, or neither')
  }
  const client = new S3Client({
    region: options.region,
    endpoint: options.endpoint,
    forcePathStyle: options.forcePathStyle ?? false,
    credentials:
      options.accessKeyId !== undefined && options.secretAccessKey !== undefined
        ? { accessKeyId: options.accessKeyId, secretAccessKey: options.secretAccessKey }
        : undefined,
  })
  const bucket = options.bucket
  const prefix = options.prefix ?? ''
  const keyOf = (sha256: string) => `${prefix}sha256/${sha256.slice(0, 2)}/${sha256}`

  return {
    async has(sha256) {
      if (!sha256Pattern.test(sha256)) return false
      try {
        await client.send(new HeadObjectCommand({ Bucket: bucket, Key: keyOf(sha256) }))
        return true
      } catch (error) {
        // HEAD has no body, so a missing key is only a 404 (NotFound); anything else (403, 5xx) is a real error.
        if (error instanceof S3ServiceException && error.$metadata.httpStatusCode === 404) return false
        throw error
      }
    },

    async put(expectedSha256, body, maxBytes) {
      if (!sha256Pattern.test(expectedSha256)) throw new Error(`not a SHA-256: ${expectedSha256}`)
      if (maxBytes > maxPutObjectBytes) {
        throw new Error(`maxBytes ${maxBytes} is over the ${maxPutObjectBytes} one PutObject can carry`)
      }
      // Spooled to local disk, not to a temporary key: the bucket only ever sees bytes already checked, and one
      // PutObject with a known length and S3's own SHA-256 check stores them whole or not at all.
      const spool = join(
        tmpdir(),
        `gpumesh-artifact-${expectedSha256}.${randomBytes(6).toString('hex')}.part`,
      )
      try {
        const written = await writeChecked(body, spool, expectedSha256, maxBytes)
        if (!written.ok) return written
        // The same bytes stored twice (two uploads at once) end as one object either way.
        await client.send(
          new PutObjectCommand({
            Bucket: bucket,
            Key: keyOf(expectedSha256),
            Body: createReadStream(spool),
            ContentLength: written.sizeBytes,
            ContentType: 'application/octet-stream',
            ChecksumSHA256: written.digest.toString('base64'),
          }),
        )
        return { ok: true, sizeBytes: written.sizeBytes }
      } finally {
        await rm(spool, { force: true })
      }
    },

    async open(sha256) {
      if (!sha256Pattern.test(sha256)) return undefined
      try {
        const response = await client.send(new GetObjectCommand({ Bucket: bucket, Key: keyOf(sha256) }))
        const stream = response.Body
        if (!(stream instanceof Readable) || response.ContentLength === undefined) {
          throw new Error(`GetObject of ${keyOf(sha256)} gave no Node stream or no Content-Length`)
        }
        return { stream, sizeBytes: response.ContentLength }
      } catch (error) {
        if (error instanceof NoSuchKey) return undefined
        throw error
      }
    },
  }
}
