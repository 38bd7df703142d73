import assert from 'node:assert/strict'
import { request as httpRequest } from 'node:http'
import { Writable } from 'node:stream'
import { after, before, describe, it } from 'node:test'
import type { Coordinator } from '@gpumesh/coordinator'
import type { Store } from '@gpumesh/store'
import {
  enrollTestDevice,
  insertOperatorKey,
  ManualClock,
  startTestCoordinator,
  storeBackends,
} from '@gpumesh/testing'

// Issue 22, findings 1, 3 and 7, each as its repro turned into a test, on both stores.

const tenMiB = 10 * 1024 * 1024
const firstChunkBytes = 64 * 1024

/**
 * Announces a `totalBytes` JSON body, sends only its first 64 KiB, and waits for the answer. A server that
 * reads the body first cannot answer: it never gets the rest. Returns the status, what had been sent when
 * the answer came, and how long it took.
 */
function postHugeBody(baseUrl: string, path: string, headers: Record<string, string>, totalBytes: number) {
  return new Promise<{ status: number; sentBytes: number; elapsedMs: number; connection?: string }>(
    (resolve, reject) => {
      const startedAt = performance.now()
      const url = new URL(path, baseUrl)
      const outgoing = httpRequest(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': String(totalBytes), ...headers },
      })
      const timer = setTimeout(() => {
        outgoing.destroy()
        reject(new Error(`no answer within 10 s to ${path} while its body was incomplete`))
      }, 10_000)
      outgoing.on('response', (response) => {
        clearTimeout(timer)
        response.resume()
        resolve({
          status: response.statusCode ?? 0,
          sentBytes: firstChunkBytes,
          elapsedMs: performance.now() - startedAt,
          ...(typeof response.headers.connection === 'string'
            ? { connection: response.headers.connection }
            : {}),
        })
        outgoing.destroy()
      })
      outgoing.on('error', (error) => {
        // The server may close the connection after answering; only an error before any answer counts.
        if (!outgoing.destroyed || outgoing.writableFinished) reject(error)
      })
      outgoing.write(`{"entrypoint":"${'x'.repeat(firstChunkBytes - 15)}`)
    },
  )
}

for (const backend of storeBackends) {
  describe(`auth hardening on ${backend.name}`, () => {
    let coordinator: Coordinator
    let baseUrl: string
    let cleanup: () => Promise<void>
    let store: Store
    let renterKey: string
    let supplierKey: string
    before(async () => {
      const opened = await backend.open()
      store = opened.store
      coordinator = await startTestCoordinator(opened.store, { runBackgroundLoops: false })
      baseUrl = await coordinator.listen()
      cleanup = async () => {
        await coordinator.stop()
        await opened.cleanup()
      }
      const signup = async (roles: string[]) => {
        const response = await coordinator.app.inject({
          method: 'POST',
          url: '/v1/accounts',
          payload: { name: roles.join('-'), roles },
        })
        return response.json().apiKey.key as string
      }
      renterKey = await signup(['renter'])
      supplierKey = await signup(['supplier'])
    })
    after(() => cleanup())

    it('finding 1: a 10 MiB body without a key is answered 401 without being parsed', async (t) => {
      const unauthenticated = await postHugeBody(baseUrl, '/v1/clusters/cl_unknown/jobs', {}, tenMiB)
      assert.equal(unauthenticated.status, 401)
      // Nor is the rest read and thrown away: the connection closes after the answer.
      assert.equal(unauthenticated.connection, 'close')
      t.diagnostic(
        `401 after ${unauthenticated.elapsedMs.toFixed(1)} ms, ${unauthenticated.sentBytes} of ${tenMiB} bytes sent`,
      )
      const wrongKey = await postHugeBody(
        baseUrl,
        '/v1/clusters',
        { authorization: `Bearer gmk_${'a'.repeat(20)}_${'b'.repeat(40)}` },
        tenMiB,
      )
      assert.equal(wrongKey.status, 401)
      // A valid key without the route's role is refused before the body too.
      const wrongRole = await postHugeBody(
        baseUrl,
        '/v1/clusters/cl_unknown/jobs',
        { authorization: `Bearer ${supplierKey}` },
        tenMiB,
      )
      assert.equal(wrongRole.status, 403)
    })

    it('finding 1: bodies are limited per route to what the route needs', async () => {
      // A cluster request is a few hundred bytes: 20 KiB is refused from its length alone.
      const tooLarge = await coordinator.app.inject({
        method: 'POST',
        url: '/v1/clusters',
        headers: { authorization: `Bearer ${renterKey}` },
        payload: { name: 'x'.repeat(20 * 1024) },
      })
      assert.equal(tooLarge.statusCode, 413, tooLarge.body)
      // A job carries its working directory (up to 8 MiB, base64): 1 MiB is read and answered on its merits.
      const job = await coordinator.app.inject({
        method: 'POST',
        url: '/v1/clusters/cl_unknown/jobs',
        headers: { authorization: `Bearer ${renterKey}` },
        payload: { entrypoint: 'python main.py', workingDirTarGz: 'A'.repeat(1024 * 1024) },
      })
      assert.equal(job.statusCode, 404, job.body)
    })

    it("finding 3: a key narrowed to renter cannot use its account's supplier routes or revoke its broader key", async () => {
      const created = await coordinator.app.inject({
        method: 'POST',
        url: '/v1/accounts',
        payload: { name: 'both', roles: ['renter', 'supplier'] },
      })
      const account = created.json()
      const broadKey = account.apiKey.key as string
      const narrowed = await coordinator.app.inject({
        method: 'POST',
        url: '/v1/api-keys',
        headers: { authorization: `Bearer ${broadKey}` },
        payload: { name: 'renting only', roles: ['renter'] },
      })
      const renterOnly = narrowed.json().key as string
      const deviceId = 'dev_hardening00000000001'
      await enrollTestDevice(store, deviceId, account.account.id, Date.now())
      const as = (key: string, method: 'GET' | 'PUT' | 'DELETE', url: string, payload?: object) =>
        coordinator.app.inject({
          method,
          url,
          headers: { authorization: `Bearer ${key}` },
          ...(payload ? { payload } : {}),
        })
      const refusals = [
        await as(renterOnly, 'GET', '/v1/devices'),
        await as(renterOnly, 'PUT', `/v1/devices/${deviceId}/pricing`, {
          mode: 'fixed',
          pricePerGpuHourUsd: '9.99',
        }),
        await as(renterOnly, 'PUT', `/v1/devices/${deviceId}/serving`, { enabled: false }),
        await as(renterOnly, 'GET', '/v1/earnings'),
      ]
      for (const refusal of refusals) {
        assert.equal(refusal.statusCode, 403, refusal.body)
        assert.match(refusal.json().message, /supplier/)
      }
      const device = await as(broadKey, 'GET', `/v1/devices/${deviceId}`)
      assert.equal(device.statusCode, 200)
      assert.notEqual(device.json().askingPricePerGpuHourUsd, '9.99', 'the price was not changed')

      const revokeBroad = await as(renterOnly, 'DELETE', `/v1/api-keys/${account.apiKey.id}`)
      assert.equal(revokeBroad.statusCode, 403, revokeBroad.body)
      assert.match(revokeBroad.json().message, /supplier/)
      assert.equal((await as(broadKey, 'GET', '/v1/me')).statusCode, 200, 'the broader key still works')
      // Within its roles it may: the broad key revokes the narrow one.
      const revokeNarrow = await as(broadKey, 'DELETE', `/v1/api-keys/${narrowed.json().id}`)
      assert.equal(revokeNarrow.statusCode, 200, revokeNarrow.body)
      assert.equal((await as(renterOnly, 'GET', '/v1/me')).statusCode, 401)
    })
  })
}

/** A well-formed presented key for `keyId` with a secret that is not its own. */
const wrongSecretFor = (keyId: string) => `gmk_${keyId.slice(keyId.indexOf('_') + 1)}_${'W'.repeat(40)}`

for (const backend of storeBackends) {
  describe(`failed authentication on ${backend.name} (finding 7)`, () => {
    const clock = new ManualClock()
    const logLines: { msg: string; [field: string]: unknown }[] = []
    let coordinator: Coordinator
    let cleanup: () => Promise<void>
    let key: { id: string; key: string }
    before(async () => {
      const opened = await backend.open()
      const logSink = new Writable({
        write(chunk: Buffer, _encoding, done) {
          for (const line of chunk.toString().split('\n').filter(Boolean)) logLines.push(JSON.parse(line))
          done()
        },
      })
      coordinator = await startTestCoordinator(
        opened.store,
        {
          runBackgroundLoops: false,
          logger: { level: 'info', stream: logSink },
          failedAuthLimits: {
            perSource: { burst: 3, windowMs: 30_000, maxSubjects: 1_000 },
            perKeyId: { burst: 2, windowMs: 60_000, maxSubjects: 1_000 },
          },
        },
        clock,
      )
      cleanup = async () => {
        await coordinator.stop()
        await opened.cleanup()
      }
      await insertOperatorKey(opened.store)
      const created = await coordinator.app.inject({
        method: 'POST',
        url: '/v1/accounts',
        payload: { name: 'victim', roles: ['renter'] },
      })
      key = created.json().apiKey
    })
    after(() => cleanup())

    const me = (authorization: string | undefined, remoteAddress: string) =>
      coordinator.app.inject({
        method: 'GET',
        url: '/v1/me',
        remoteAddress,
        headers: authorization ? { authorization } : {},
      })

    it('refuses a key id with 429 and Retry-After after its wrong secrets, from any source', async () => {
      const wrongSecret = `Bearer ${wrongSecretFor(key.id)}`
      assert.equal((await me(wrongSecret, '10.0.1.1')).statusCode, 401)
      assert.equal((await me(wrongSecret, '10.0.1.2')).statusCode, 401)
      const throttled = await me(wrongSecret, '10.0.1.3')
      assert.equal(throttled.statusCode, 429, throttled.body)
      assert.equal(throttled.json().code, 'GPUMESH_ERR_RATE_LIMITED')
      // Two tries per 60 s: one comes back every 30 s.
      assert.equal(throttled.headers['retry-after'], '30')
      assert.equal((await me(`Bearer ${key.key}`, '10.0.1.4')).statusCode, 429, 'even with the right secret')
      clock.advanceMs(30_000)
      assert.equal((await me(`Bearer ${key.key}`, '10.0.1.4')).statusCode, 200)
    })

    it('refuses a source address with 429 and Retry-After after its failures; others are unaffected', async () => {
      const source = '10.0.2.1'
      for (let attempt = 0; attempt < 3; attempt += 1) {
        const refused = await me(`Bearer gmk_${String(attempt).repeat(20)}_${'x'.repeat(40)}`, source)
        assert.equal(refused.statusCode, 401)
      }
      const throttled = await me('Bearer not-a-key', source)
      assert.equal(throttled.statusCode, 429)
      assert.equal(throttled.headers['retry-after'], '10')
      assert.equal((await me('Bearer not-a-key', '10.0.2.2')).statusCode, 401, 'another source')
      assert.equal((await me(undefined, source)).statusCode, 401, 'no key at all is not a guess')
      clock.advanceMs(10_000)
      assert.equal((await me('Bearer not-a-key', source)).statusCode, 401)
    })

    it('answers an unknown key id with the same status and body as a known id with a wrong secret', async () => {
      clock.advanceMs(3_600_000)
      const known = await me(`Bearer ${wrongSecretFor(key.id)}`, '10.0.3.1')
      const unknown = await me(`Bearer ${wrongSecretFor('key_zzzzzzzzzzzzzzzzzzzz')}`, '10.0.3.2')
      assert.equal(known.statusCode, 401)
      assert.equal(unknown.statusCode, 401)
      assert.deepEqual(known.json(), unknown.json())
    })

    it('logs failures as one summary line, not lines per failure', async () => {
      clock.advanceMs(3_600_000)
      const before = logLines.length
      for (let attempt = 0; attempt < 20; attempt += 1)
        await me(`Bearer gmk_${'q'.repeat(20)}_${'x'.repeat(40)}`, `10.0.4.${attempt}`)
      const during = logLines.slice(before)
      assert.equal(during.filter((line) => line.msg === 'request completed').length, 0)
      assert.equal(during.filter((line) => /refused/i.test(line.msg)).length, 0)
      // One "incoming request" line each, written before the key is read, and nothing else.
      assert.ok(during.length <= 20, `${during.length} lines for 20 failures`)
      await coordinator.stop()
      const summaries = logLines.filter((line) => line.msg === 'refused API keys')
      assert.equal(summaries.length, 1)
      assert.ok((summaries[0]?.['failures'] as number) >= 20)
    })
  })
}
