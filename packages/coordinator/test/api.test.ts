import assert from 'node:assert/strict'
import { generateKeyPairSync, sign } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import type { Coordinator } from '@gpumesh/coordinator'
import { enrollmentSigningPayload } from '@gpumesh/protocol'
import { startTestCoordinator, storeBackends } from '@gpumesh/testing'

// The HTTP API through fastify's inject(): no port is opened. Runs on both store backends.

function newKeyPair() {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  return {
    publicKey: publicKey.export({ format: 'jwk' }).x as string,
    sign: (payload: string) => sign(null, Buffer.from(payload), privateKey).toString('base64url'),
  }
}

for (const backend of storeBackends) {
  describe(`HTTP API on ${backend.name}`, () => {
    let coordinator: Coordinator
    let cleanup: () => Promise<void>
    before(async () => {
      const opened = await backend.open()
      coordinator = await startTestCoordinator(opened.store, { runBackgroundLoops: false })
      cleanup = async () => {
        await coordinator.stop()
        await opened.cleanup()
      }
    })
    after(() => cleanup())

    const call = (
      method: 'GET' | 'POST' | 'DELETE',
      url: string,
      options: { key?: string; body?: unknown } = {},
    ) =>
      coordinator.app.inject({
        method,
        url,
        headers: options.key ? { authorization: `Bearer ${options.key}` } : {},
        ...(options.body === undefined ? {} : { payload: options.body as object }),
      })
    const signup = async (name: string, roles: string[]) => {
      const response = await call('POST', '/v1/accounts', { body: { name, roles } })
      assert.equal(response.statusCode, 201, response.body)
      return response.json() as { account: { id: string }; apiKey: { id: string; key: string } }
    }

    it('creates an account whose key authenticates, and shows the secret once', async () => {
      const { account, apiKey } = await signup('alice', ['renter'])
      assert.match(apiKey.key, /^gmk_[a-z0-9]{20}_[A-Za-z0-9]{40}$/)
      const me = await call('GET', '/v1/me', { key: apiKey.key })
      assert.equal(me.statusCode, 200)
      assert.equal(me.json().account.id, account.id)
      const keys = await call('GET', '/v1/api-keys', { key: apiKey.key })
      assert.equal(keys.json().apiKeys.length, 1)
      assert.doesNotMatch(keys.body, /gmk_/)
    })

    it('refuses bad bodies with the field named, creating nothing', async () => {
      const missing = await call('POST', '/v1/accounts', { body: { roles: ['renter'] } })
      assert.equal(missing.statusCode, 400)
      assert.equal(missing.json().code, 'GPUMESH_ERR_VALIDATION')
      assert.match(missing.json().message, /name/)
      const unknownField = await call('POST', '/v1/accounts', {
        body: { name: 'x', roles: ['renter'], admin: true },
      })
      assert.equal(unknownField.statusCode, 400)
      assert.match(unknownField.body, /admin/)
      const badRole = await call('POST', '/v1/accounts', { body: { name: 'x', roles: ['king'] } })
      assert.equal(badRole.statusCode, 400)
      assert.match(badRole.json().details.issues[0].field, /roles/)
      const badQuery = await call('GET', '/v1/offers?maxPricePerGpuHourUsd=cheap')
      assert.equal(badQuery.statusCode, 400)
      assert.match(badQuery.body, /maxPricePerGpuHourUsd/)
    })

    it('needs an operator to create an operator', async () => {
      const response = await call('POST', '/v1/accounts', { body: { name: 'mallory', roles: ['operator'] } })
      assert.equal(response.statusCode, 403)
    })

    it('refuses missing, malformed, unknown and revoked keys', async () => {
      assert.equal((await call('GET', '/v1/me')).statusCode, 401)
      assert.equal((await call('GET', '/v1/me', { key: 'nonsense' })).statusCode, 401)
      assert.equal(
        (await call('GET', '/v1/me', { key: `gmk_${'a'.repeat(20)}_${'b'.repeat(40)}` })).statusCode,
        401,
      )
      const { apiKey } = await signup('bob', ['renter', 'supplier'])
      const second = await call('POST', '/v1/api-keys', {
        key: apiKey.key,
        body: { name: 'ci', roles: ['renter'] },
      })
      assert.equal(second.statusCode, 201)
      const ciKey = second.json() as { id: string; key: string }
      // a narrow key cannot mint a broader one
      const escalate = await call('POST', '/v1/api-keys', {
        key: ciKey.key,
        body: { name: 'x', roles: ['supplier'] },
      })
      assert.equal(escalate.statusCode, 403)
      // it also cannot act as a supplier
      assert.equal(
        (await call('POST', '/v1/enrollment-tokens', { key: ciKey.key, body: {} })).statusCode,
        403,
      )
      assert.equal((await call('DELETE', `/v1/api-keys/${ciKey.id}`, { key: apiKey.key })).statusCode, 200)
      const revoked = await call('GET', '/v1/me', { key: ciKey.key })
      assert.equal(revoked.statusCode, 401)
      assert.match(revoked.json().message, /revoked/)
    })

    it("answers 404 for another account's key and device", async () => {
      const owner = await signup('owner', ['supplier'])
      const stranger = await signup('stranger', ['supplier'])
      assert.equal(
        (await call('DELETE', `/v1/api-keys/${owner.apiKey.id}`, { key: stranger.apiKey.key })).statusCode,
        404,
      )
      assert.equal((await call('GET', '/v1/me', { key: owner.apiKey.key })).statusCode, 200)

      const token = (
        await call('POST', '/v1/enrollment-tokens', { key: owner.apiKey.key, body: { label: 'rig-1' } })
      ).json()
      const keys = newKeyPair()
      const enrolled = await call('POST', '/v1/worker/enroll', {
        body: {
          token: token.token,
          publicKey: keys.publicKey,
          signature: keys.sign(enrollmentSigningPayload(token.token)),
        },
      })
      assert.equal(enrolled.statusCode, 200, enrolled.body)
      const { deviceId } = enrolled.json()
      assert.equal((await call('GET', `/v1/devices/${deviceId}`, { key: owner.apiKey.key })).statusCode, 200)
      const foreign = await call('GET', `/v1/devices/${deviceId}`, { key: stranger.apiKey.key })
      assert.equal(foreign.statusCode, 404)
      assert.equal(
        (await call('GET', `/v1/devices/${deviceId}/events`, { key: stranger.apiKey.key })).statusCode,
        404,
      )
      assert.equal((await call('GET', '/v1/devices', { key: stranger.apiKey.key })).json().devices.length, 0)
    })

    it('enrolls only with a valid signature and a fresh token', async () => {
      const { apiKey } = await signup('carol', ['supplier'])
      const token = (await call('POST', '/v1/enrollment-tokens', { key: apiKey.key, body: {} })).json()
      assert.match(token.command, /gpumesh worker start --coordinator .* --token gme_/)
      const keys = newKeyPair()
      const forged = await call('POST', '/v1/worker/enroll', {
        body: {
          token: token.token,
          publicKey: keys.publicKey,
          signature: newKeyPair().sign(enrollmentSigningPayload(token.token)),
        },
      })
      assert.equal(forged.statusCode, 401)
      const good = {
        token: token.token,
        publicKey: keys.publicKey,
        signature: keys.sign(enrollmentSigningPayload(token.token)),
      }
      const first = await call('POST', '/v1/worker/enroll', { body: good })
      assert.equal(first.statusCode, 200)
      assert.equal(first.json().reenrolled, false)
      const other = newKeyPair()
      const reuse = await call('POST', '/v1/worker/enroll', {
        body: {
          token: token.token,
          publicKey: other.publicKey,
          signature: other.sign(enrollmentSigningPayload(token.token)),
        },
      })
      assert.equal(reuse.statusCode, 401)
      assert.equal(reuse.json().details.reason, 'already_used')
      const devices = (await call('GET', '/v1/devices', { key: apiKey.key })).json().devices
      assert.equal(devices.length, 1)
      assert.equal(devices[0].state, 'offline')
      assert.match(devices[0].stateReason, /waiting for the worker/)
    })

    it('serves an OpenAPI document built from the route schemas', async () => {
      const response = await call('GET', '/v1/openapi.json')
      assert.equal(response.statusCode, 200)
      const document = response.json()
      assert.ok(document.paths['/v1/offers'].get)
      assert.ok(document.paths['/v1/accounts'].post.requestBody)
      const parameters = document.paths['/v1/offers'].get.parameters.map(
        (parameter: { name: string }) => parameter.name,
      )
      assert.ok(parameters.includes('maxPricePerGpuHourUsd'))
    })

    it('answers unknown routes with a JSON 404', async () => {
      const response = await call('GET', '/v1/nothing-here')
      assert.equal(response.statusCode, 404)
      assert.equal(response.json().code, 'GPUMESH_ERR_NOT_FOUND')
    })
  })
}
