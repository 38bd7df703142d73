import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { directoryArtifactStore, type Coordinator } from '@gpumesh/coordinator'
import type { Store } from '@gpumesh/store'
import { apiCaller, insertOperatorKey, runCli, startTestCoordinator, storeBackends } from '@gpumesh/testing'

// The model store through its API and `gpumesh model`: a model directory is pushed (described, then only the
// missing artifacts uploaded), becomes ready once every artifact is stored, and its artifacts come back byte
// for byte. Bytes that do not hash to the name they are sent under are refused and nothing is kept; a second
// push of the same version is refused; a model sharing stored artifacts is ready at once; only operators push.

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex')

for (const backend of storeBackends) {
  describe(`model store on ${backend.name}`, () => {
    let store: Store
    let cleanup: () => Promise<void>
    let coordinator: Coordinator
    let baseUrl: string
    let operatorKey: string
    let supplierKey: string
    const scratch = mkdtempSync(join(tmpdir(), 'gpumesh-models-'))
    const modelDir = join(scratch, 'tiny')
    const weights = randomBytes(300_000)
    const call = apiCaller(() => baseUrl)

    before(async () => {
      ;({ store, cleanup } = await backend.open())
      coordinator = await startTestCoordinator(store, {
        artifactStore: directoryArtifactStore(join(scratch, 'artifacts')),
      })
      baseUrl = await coordinator.listen()
      operatorKey = await insertOperatorKey(store)
      supplierKey = (await call('POST', '/v1/accounts', undefined, { name: 's', roles: ['supplier'] })).body
        .apiKey.key
      mkdirSync(modelDir)
      writeFileSync(
        join(modelDir, 'config.json'),
        JSON.stringify({
          format: 'gpumesh-model/1',
          name: 'tiny-test',
          version: '1.0.0',
          tasks: ['chat', 'completion'],
          architecture: 'char-transformer',
          license: 'CC0-1.0',
          context_length: 128,
          max_output_tokens: 64,
        }),
      )
      writeFileSync(join(modelDir, 'model.safetensors'), weights)
    })
    after(async () => {
      await coordinator?.stop()
      await cleanup?.()
      rmSync(scratch, { recursive: true, force: true })
    })

    it('pushes a model directory, uploads its artifacts and serves them back byte for byte', async () => {
      const pushed = await runCli(baseUrl, operatorKey, ['model', 'push', modelDir])
      assert.equal(pushed.code, 0, pushed.stderr)
      assert.match(pushed.stdout, /tiny-test 1\.0\.0 \(mdl_[a-z0-9]{20}\): ready/)
      assert.match(pushed.stderr, /uploading model\.safetensors \(0\.3 MiB\)/)
      const listed = (await call('GET', '/v1/store/models')).body.models
      assert.equal(listed.length, 1)
      assert.deepEqual(
        listed[0].artifacts.map((artifact: any) => [artifact.path, artifact.stored]),
        [
          ['config.json', true],
          ['model.safetensors', true],
        ],
      )
      assert.equal(listed[0].requiredVramMib, 1, 'twice the weights, rounded up to a MiB')
      const download = await fetch(`${baseUrl}/v1/store/artifacts/${sha256(weights)}`)
      assert.equal(download.status, 200)
      assert.deepEqual(Buffer.from(await download.arrayBuffer()), weights)
      const shown = await runCli(baseUrl, '', ['model', 'show', 'tiny-test:1.0.0'])
      assert.equal(shown.code, 0, shown.stderr)
      assert.match(shown.stdout, new RegExp(sha256(weights)))
    })

    it('refuses bytes that do not hash to their name, and keeps nothing', async () => {
      const claimed = sha256(randomBytes(32))
      const response = await fetch(`${baseUrl}/v1/store/artifacts/${claimed}`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${operatorKey}`, 'content-type': 'application/octet-stream' },
        body: randomBytes(1000),
      })
      assert.equal(response.status, 400)
      const body = (await response.json()) as any
      assert.equal(body.details.issues[0].field, 'body')
      assert.match(body.message, /hash to [0-9a-f]{64}, not/)
      assert.equal((await fetch(`${baseUrl}/v1/store/artifacts/${claimed}`)).status, 404)
    })

    it('refuses the same version twice, pushes from suppliers, and malformed descriptions, naming the field', async () => {
      const again = await runCli(baseUrl, operatorKey, ['model', 'push', modelDir])
      assert.notEqual(again.code, 0)
      assert.match(again.stderr, /tiny-test 1\.0\.0 is already in the store/)
      const description = {
        name: 'tiny-test',
        version: '1.0.1',
        tasks: ['completion'],
        format: 'gpumesh-model/1',
        runtime: 'char-transformer',
        license: 'CC0-1.0',
        requiredVramMib: 1,
        contextTokens: 128,
        maxOutputTokens: 64,
        artifacts: [{ path: 'model.safetensors', sha256: sha256(weights), sizeBytes: weights.length }],
      }
      assert.equal((await call('POST', '/v1/store/models', supplierKey, description)).status, 403)
      const bad = await call('POST', '/v1/store/models', operatorKey, { ...description, name: 'Tiny Test' })
      assert.equal(bad.status, 400)
      assert.equal(bad.body.details.issues[0].field, 'name')
      // Its only artifact is stored already: the new version is ready without an upload.
      const shared = await call('POST', '/v1/store/models', operatorKey, description)
      assert.equal(shared.status, 201, JSON.stringify(shared.body))
      assert.equal(shared.body.state, 'ready')
    })

    it('takes the tiny model the repository ships, with the hashes it was published with', async (t) => {
      const shipped = join(import.meta.dirname, '../../../python/models/tiny-chat')
      if (!existsSync(join(shipped, 'model.safetensors')))
        return t.skip('python/models/tiny-chat is not here')
      const pushed = await runCli(baseUrl, operatorKey, ['model', 'push', shipped, '--json'])
      assert.equal(pushed.code, 0, pushed.stderr)
      const model = JSON.parse(pushed.stdout)
      assert.equal(model.state, 'ready')
      assert.deepEqual(model.tasks, ['chat', 'completion', 'embeddings'])
      const published = readFileSync(`${shipped}.sha256`, 'utf8')
        .trim()
        .split('\n')
        .map((line) => line.split(/\s+/).reverse())
      assert.deepEqual(
        model.artifacts.map((artifact: any) => [artifact.path, artifact.sha256]),
        published.sort(([a], [b]) => (a! < b! ? -1 : 1)),
      )
    })

    it('removes a version; the artifacts another version names stay', async () => {
      const removed = await runCli(baseUrl, operatorKey, ['model', 'rm', 'tiny-test:1.0.0'])
      assert.equal(removed.code, 0, removed.stderr)
      const listed = (await call('GET', '/v1/store/models')).body.models
      assert.deepEqual(
        listed.filter((model: any) => model.name === 'tiny-test').map((model: any) => model.version),
        ['1.0.1'],
      )
      assert.equal((await fetch(`${baseUrl}/v1/store/artifacts/${sha256(weights)}`)).status, 200)
      assert.equal((await call('GET', '/v1/store/models/tiny-test/1.0.0')).status, 404)
    })
  })
}
