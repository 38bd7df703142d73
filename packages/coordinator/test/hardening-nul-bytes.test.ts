import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import WebSocket from 'ws'
import type { Coordinator } from '@gpumesh/coordinator'
import { WorkerCloseCode } from '@gpumesh/protocol'
import type { Store } from '@gpumesh/store'
import { apiCaller, startTestCoordinator, storeBackends } from '@gpumesh/testing'
import { allRolesKey, openApiOperations, pathWith } from './openapi-operations.ts'

// Issue 22, finding 5: a NUL byte in a path param, query or body reached the database, which refuses it,
// and gave a 500 (47 requests on 25 routes); on the worker socket an auth with "deviceId":"dev_\u0000"
// closed with 1001 "internal error". The edge now refuses such text with a 400 naming the field, and the
// socket closes with the protocol's code for bad input.

for (const backend of storeBackends) {
  describe(`finding 5 (NUL bytes) on ${backend.name}`, () => {
    let store: Store
    let cleanup: () => Promise<void>
    let coordinator: Coordinator
    let baseUrl: string
    let key: string
    const call = apiCaller(() => baseUrl)

    before(async () => {
      ;({ store, cleanup } = await backend.open())
      coordinator = await startTestCoordinator(store, { runBackgroundLoops: false })
      baseUrl = await coordinator.listen()
      key = await allRolesKey(store)
    })
    after(async () => {
      await coordinator?.stop()
      await cleanup?.()
    })

    it('answers the repros of the finding with a 400 naming the field', async () => {
      const cases: [string, string, unknown, string][] = [
        ['GET', '/v1/explorer/devices/%00', undefined, 'params.id'],
        ['GET', '/v1/rewards/devices/a%00b', undefined, 'params.id'],
        ['GET', '/v1/explorer/devices?modelKey=%00', undefined, 'querystring.modelKey'],
        ['POST', '/v1/api-keys', { name: 'a\u0000b' }, 'name'],
        ['POST', '/v1/accounts', { name: 'lone \ud800 surrogate', roles: ['renter'] }, 'name'],
      ]
      for (const [method, path, body, field] of cases) {
        const reply = await call(method, path, key, body)
        assert.equal(reply.status, 400, `${method} ${path}: ${JSON.stringify(reply.body)}`)
        assert.equal(reply.body.details.issues[0].field, field, path)
      }
    })

    it('answers a NUL in any path param of any operation with a 400 naming that param', async () => {
      const operations = openApiOperations(coordinator.app.swagger())
      const withParams = operations.filter((operation) => operation.pathParams.length > 0)
      assert.ok(withParams.length >= 20, `only ${withParams.length} operations with path params`)
      for (const operation of withParams) {
        for (const param of operation.pathParams) {
          const path = pathWith(operation, (name) => (name === param ? 'a%00b' : 'x'))
          const response = await coordinator.app.inject({
            method: operation.method,
            url: path,
            headers: { authorization: `Bearer ${key}` },
            ...(operation.jsonBody ? { payload: {} } : {}),
          })
          assert.equal(response.statusCode, 400, `${operation.method} ${path}: ${response.body}`)
          const body = response.json()
          // The OpenAI-compatible routes answer in OpenAI's error shape, naming the field as its `param`.
          if (body.error) assert.equal(body.error.param, param, `${path}: ${response.body}`)
          else assert.equal(body.details.issues[0].field, `params.${param}`, `${path}: ${response.body}`)
        }
      }
    })

    it('closes a worker socket whose auth carries a NUL with the bad-input close code', async () => {
      const socket = new WebSocket(`${baseUrl.replace('http', 'ws')}/v1/worker/connect`)
      const closed = new Promise<{ code: number; reason: string }>((resolve) =>
        socket.once('close', (code, reason) => resolve({ code, reason: reason.toString() })),
      )
      socket.once('message', () =>
        socket.send(
          JSON.stringify({
            type: 'auth',
            deviceId: 'dev_\u0000',
            signature: 'A'.repeat(86),
            agentVersion: 'test',
          }),
        ),
      )
      const { code, reason } = await closed
      assert.equal(code, WorkerCloseCode.policyViolation, reason)
      assert.match(reason, /deviceId: must not contain a NUL/)
    })
  })
}
