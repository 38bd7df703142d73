import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { ArtifactMismatchError, createArtifactCache } from '../src/models/artifact-cache.ts'

// A worker's artifact cache against an HTTP server on loopback that serves artifacts by hash, and can be made
// to serve the wrong bytes: each artifact is fetched once, every hash is checked, a mismatch keeps nothing.

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex')

describe('worker artifact cache', () => {
  const config = Buffer.from('{"name":"tiny"}')
  const weights = randomBytes(200_000)
  const blobs = new Map([
    [sha256(config), config],
    [sha256(weights), weights],
  ])
  let tampered = false
  const requests: string[] = []
  const server = createServer((request, response) => {
    const hash = (request.url ?? '').split('/').pop() ?? ''
    requests.push(hash)
    const blob = blobs.get(hash)
    if (!blob) {
      response.writeHead(404).end()
      return
    }
    const body = Buffer.from(blob)
    // Tampered: one byte changed, the length kept.
    if (tampered) body[body.length >> 1] = (body[body.length >> 1]! + 1) % 256
    response.writeHead(200, { 'content-type': 'application/octet-stream' }).end(body)
  })
  const cacheDir = mkdtempSync(join(tmpdir(), 'gpumesh-artifacts-'))
  let baseUrl = ''
  const artifacts = [
    { path: 'config.json', sha256: sha256(config), sizeBytes: config.length },
    { path: 'model.safetensors', sha256: sha256(weights), sizeBytes: weights.length },
  ]

  before(async () => {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })
  after(() => {
    server.close()
    rmSync(cacheDir, { recursive: true, force: true })
  })

  it('downloads each artifact once, checks it, and assembles the model directory', async () => {
    const cache = createArtifactCache({ cacheDir, urlOf: (hash) => `${baseUrl}/v1/store/artifacts/${hash}` })
    const first = await cache.materialize('tiny-1.0.0', artifacts)
    assert.equal(first.downloaded, 2)
    assert.deepEqual(readFileSync(join(first.directory, 'model.safetensors')), weights)
    assert.deepEqual(readFileSync(join(first.directory, 'config.json')), config)
    const again = await cache.materialize('tiny-1.0.1', artifacts)
    assert.equal(again.downloaded, 0, 'cached: nothing fetched again')
    assert.equal(requests.length, 2)
  })

  it('refuses bytes that do not match the published hash and keeps nothing of them', async () => {
    const otherDir = mkdtempSync(join(tmpdir(), 'gpumesh-artifacts-'))
    try {
      tampered = true
      const cache = createArtifactCache({
        cacheDir: otherDir,
        urlOf: (hash) => `${baseUrl}/v1/store/artifacts/${hash}`,
      })
      await assert.rejects(cache.materialize('tiny-1.0.0', artifacts), (error: unknown) => {
        assert.ok(error instanceof ArtifactMismatchError)
        assert.equal(error.artifact.path, 'config.json')
        assert.match(error.message, /refused/)
        return true
      })
      assert.deepEqual(readdirSync(join(otherDir, 'sha256')), [], 'no blob and no partial file left')
      assert.equal(existsSync(join(otherDir, 'models')), false)
    } finally {
      tampered = false
      rmSync(otherDir, { recursive: true, force: true })
    }
  })
})
