import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { buffer } from 'node:stream/consumers'
import { after, before, describe, it } from 'node:test'
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3'
import type { ArtifactStore } from '../src/models/artifact-store.ts'
import { s3ArtifactStore } from '../src/models/s3-artifact-store.ts'

// The S3 artifact store against a real S3 server (s3rver, on 127.0.0.1): bytes that hash to their name are
// stored under `${prefix}sha256/ab/…` and come back byte for byte; bytes that do not, or that are too many,
// leave nothing in the bucket or in the local spool; absent blobs are absent; storing the same bytes twice is
// harmless.

// s3rver ships no types; this is the part of its API the test uses.
type S3rverServer = { run(): Promise<{ port: number }>; close(): Promise<void> }
type S3rverOptions = {
  address: string
  port: number
  directory: string
  silent: boolean
  configureBuckets: { name: string }[]
}
const S3rver = createRequire(import.meta.url)('s3rver') as new (options: S3rverOptions) => S3rverServer

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex')
const bucket = 'gpumesh-models'
// s3rver's built-in account.
const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' }

/** The bytes in a few chunks, so the store hashes a stream rather than one buffer. */
function streamOf(bytes: Buffer): Readable {
  const third = Math.ceil(bytes.length / 3)
  return Readable.from([
    bytes.subarray(0, third),
    bytes.subarray(third, 2 * third),
    bytes.subarray(2 * third),
  ])
}

/** Files a put of `sha` may have left in the local spool. */
function spoolLeftovers(sha: string): string[] {
  return readdirSync(tmpdir()).filter((name) => name.startsWith(`gpumesh-artifact-${sha}`))
}

describe('S3 artifact store on s3rver', () => {
  let directory: string | undefined
  let server: S3rverServer | undefined
  let endpoint: string
  let client: S3Client

  /** A store under its own prefix, so each test sees only what it wrote. */
  const storeUnder = (prefix: string): ArtifactStore =>
    s3ArtifactStore({ endpoint, region: 'us-east-1', bucket, prefix, forcePathStyle: true, ...credentials })

  async function keysUnder(prefix: string): Promise<string[]> {
    const listed = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }))
    return (listed.Contents ?? []).map((object) => object.Key ?? '')
  }

  before(async () => {
    directory = mkdtempSync(join(tmpdir(), 'gpumesh-s3rver-'))
    const starting = new S3rver({
      address: '127.0.0.1',
      port: 0,
      directory,
      silent: true,
      configureBuckets: [{ name: bucket }],
    })
    const { port } = await starting.run()
    server = starting
    endpoint = `http://127.0.0.1:${port}`
    client = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials })
  })
  after(async () => {
    try {
      client?.destroy()
      await server?.close()
    } finally {
      if (directory) rmSync(directory, { recursive: true, force: true })
    }
  })

  it('stores bytes that hash to their name and serves them back byte for byte', async () => {
    const store = storeUnder('stored/')
    const bytes = randomBytes(300_000)
    const sha = sha256(bytes)
    assert.equal(await store.has(sha), false)
    assert.deepEqual(await store.put(sha, streamOf(bytes), 1_000_000), { ok: true, sizeBytes: bytes.length })
    assert.equal(await store.has(sha), true)
    assert.deepEqual(await keysUnder('stored/'), [`stored/sha256/${sha.slice(0, 2)}/${sha}`])
    const opened = await store.open(sha)
    assert.ok(opened)
    assert.equal(opened.sizeBytes, bytes.length)
    assert.deepEqual(await buffer(opened.stream), bytes)
    assert.deepEqual(spoolLeftovers(sha), [])
  })

  it('stores an artifact of exactly maxBytes, and an empty one', async () => {
    const store = storeUnder('limits/')
    const bytes = randomBytes(4096)
    assert.deepEqual(await store.put(sha256(bytes), streamOf(bytes), bytes.length), {
      ok: true,
      sizeBytes: bytes.length,
    })
    const empty = Buffer.alloc(0)
    assert.deepEqual(await store.put(sha256(empty), Readable.from([]), 10), { ok: true, sizeBytes: 0 })
    const opened = await store.open(sha256(empty))
    assert.ok(opened)
    assert.equal(opened.sizeBytes, 0)
    assert.equal((await buffer(opened.stream)).length, 0)
  })

  it('refuses bytes that do not hash to their name, and keeps nothing', async () => {
    const store = storeUnder('mismatch/')
    const bytes = randomBytes(50_000)
    const claimed = sha256(randomBytes(32))
    const result = await store.put(claimed, streamOf(bytes), 1_000_000)
    assert.equal(result.ok, false)
    assert.equal(!result.ok && result.reason, 'hash_mismatch')
    assert.match(!result.ok ? result.detail : '', new RegExp(`hash to ${sha256(bytes)}`))
    assert.equal(await store.has(claimed), false)
    assert.equal(await store.open(claimed), undefined)
    assert.deepEqual(await keysUnder('mismatch/'), [])
    assert.deepEqual(spoolLeftovers(claimed), [])
  })

  it('refuses more than maxBytes, and keeps nothing', async () => {
    const store = storeUnder('large/')
    const bytes = randomBytes(100_000)
    const sha = sha256(bytes)
    const result = await store.put(sha, streamOf(bytes), 99_999)
    assert.deepEqual(result, { ok: false, reason: 'too_large', detail: 'more than 99999 bytes' })
    assert.equal(await store.has(sha), false)
    assert.deepEqual(await keysUnder('large/'), [])
    assert.deepEqual(spoolLeftovers(sha), [])
  })

  it('keeps nothing when the body fails part way', async () => {
    const store = storeUnder('broken/')
    const bytes = randomBytes(10_000)
    const sha = sha256(bytes)
    const body = new Readable({ read() {} })
    body.push(bytes.subarray(0, 5000))
    setImmediate(() => body.destroy(new Error('connection reset')))
    await assert.rejects(store.put(sha, body, 1_000_000), /connection reset/)
    assert.equal(await store.has(sha), false)
    assert.deepEqual(await keysUnder('broken/'), [])
    assert.deepEqual(spoolLeftovers(sha), [])
  })

  it('reports an absent or malformed hash as absent', async () => {
    const store = storeUnder('absent/')
    const absent = sha256(randomBytes(32))
    assert.equal(await store.has(absent), false)
    assert.equal(await store.open(absent), undefined)
    assert.equal(await store.has('not-a-hash'), false)
    assert.equal(await store.open('../etc/passwd'), undefined)
    await assert.rejects(store.put('NOT-A-HASH', streamOf(randomBytes(10)), 100), /not a SHA-256/)
  })

  it('stores the same bytes twice as one object', async () => {
    const store = storeUnder('twice/')
    const bytes = randomBytes(20_000)
    const sha = sha256(bytes)
    assert.deepEqual(await store.put(sha, streamOf(bytes), 1_000_000), { ok: true, sizeBytes: bytes.length })
    assert.deepEqual(await store.put(sha, streamOf(bytes), 1_000_000), { ok: true, sizeBytes: bytes.length })
    assert.deepEqual(await keysUnder('twice/'), [`twice/sha256/${sha.slice(0, 2)}/${sha}`])
    const opened = await store.open(sha)
    assert.ok(opened)
    assert.deepEqual(await buffer(opened.stream), bytes)
  })
})
