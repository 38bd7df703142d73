import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { workerMessageValidator, type WorkerMessage } from '@gpumesh/protocol'
import { createModelReplicas } from '../src/models/model-replicas.ts'

// A worker told to serve a model whose artifact arrives with bytes that do not hash to the published SHA-256:
// it refuses them, keeps nothing, starts nothing, and tells the coordinator which artifact and which hashes.

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex')
const quiet = { info() {}, warn() {}, error() {} }

describe('model replicas on a worker', () => {
  let server: Server
  let baseUrl: string
  const stateDir = mkdtempSync(join(tmpdir(), 'gpumesh-replicas-'))
  const published = Buffer.from('the weights the store published')
  // As long as the published bytes, so the worker reads them all and can say what they hash to.
  const tampered = Buffer.from('bytes someone swapped in on way')
  let served = tampered

  before(async () => {
    // Stands in for the coordinator's artifact endpoint, answering with the wrong bytes.
    server = createServer((_request, response) => response.end(served))
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    baseUrl = `http://127.0.0.1:${(server.address() as { port: number }).port}`
  })
  after(async () => {
    await new Promise((resolve) => server.close(resolve))
    rmSync(stateDir, { recursive: true, force: true })
  })

  /** Asks a fresh worker to serve a model and returns what it reported once it gave up. */
  const attempt = async (replicaId: string) => {
    const sent: WorkerMessage[] = []
    const replicas = createModelReplicas(
      {
        pythonPath: '/nonexistent/python',
        stateDir,
        coordinatorUrl: baseUrl,
        visibleGpuIndices: () => [],
        relayPort: 0,
        logger: quiet,
      },
      (message) => sent.push(message),
    )
    replicas.handle({
      type: 'model_replica_start',
      replicaId,
      model: {
        name: 'tiny-chat',
        version: '1.0.0',
        artifacts: [{ path: 'model.safetensors', sha256: sha256(published), sizeBytes: published.length }],
      },
      accessToken: 'a'.repeat(43),
      minReplicas: 1,
      maxReplicas: 1,
    })
    const deadline = Date.now() + 10_000
    while (
      !sent.some((m) => m.type === 'model_replica_status' && m.phase === 'failed') &&
      Date.now() < deadline
    )
      await new Promise((resolve) => setTimeout(resolve, 20))
    assert.deepEqual(replicas.heldReplicaIds(), [])
    // Every report is a valid protocol message (the coordinator closes the link on an invalid one).
    for (const message of sent) workerMessageValidator.parse(message)
    return sent
  }

  it('refuses an artifact whose bytes do not match its hash, and reports both hashes', async () => {
    served = tampered
    const sent = await attempt('mr_tampered1')
    const phases = sent.map((m) => (m.type === 'model_replica_status' ? m.phase : m.type))
    assert.deepEqual(phases, ['downloading', 'failed'])
    const failed = sent[1]!
    assert.ok(failed.type === 'model_replica_status' && failed.refusedArtifact)
    assert.deepEqual(failed.refusedArtifact, {
      path: 'model.safetensors',
      expectedSha256: sha256(published),
      receivedSha256: sha256(tampered),
    })
    // Nothing of the tampered bytes is kept in the cache.
    const blobs = join(stateDir, 'artifacts', 'sha256')
    assert.deepEqual(existsSync(blobs) ? readdirSync(blobs) : [], [])
  })

  it('stops reading an artifact longer than published, and reports that it was not hashed', async () => {
    served = Buffer.concat([published, Buffer.from(' and then some more')])
    const sent = await attempt('mr_toolong1')
    const failed = sent.at(-1)!
    assert.ok(failed.type === 'model_replica_status' && failed.phase === 'failed')
    assert.deepEqual(failed.refusedArtifact, {
      path: 'model.safetensors',
      expectedSha256: sha256(published),
      receivedSha256: null,
    })
  })
})
