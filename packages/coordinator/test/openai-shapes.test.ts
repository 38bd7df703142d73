import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import { after, before, describe, it } from 'node:test'
import type { Coordinator } from '@gpumesh/coordinator'
import type { Store } from '@gpumesh/store'
import {
  apiCaller,
  eventually,
  insertOperatorKey,
  runCli,
  simulatedWorker,
  startTestCoordinator,
  storeBackends,
  tinyModelDir,
  type SimulatedWorker,
} from '@gpumesh/testing'

// Issue 25, item 2: the details of OpenAI's API that real clients branch on. The replica is a stand-in that
// answers every request as a healthy model server would (the real one is tested in inference-gateway.test.ts);
// what is checked here is the gateway's own part: GET /v1/models/:id, n and response_format refused with
// OpenAI's code, an empty wallet answered 429 insufficient_quota, and x-request-id on every answer, matching
// the receipt.

const pglite = storeBackends.find((backend) => backend.name === 'pglite')!

describe('OpenAI API details (issue 25 item 2)', () => {
  let store: Store
  let cleanup: () => Promise<void>
  let coordinator: Coordinator
  let baseUrl: string
  let renterKey: string
  let emptyKey: string
  let worker: SimulatedWorker
  let replica: Server
  const forwarded: Record<string, unknown>[] = []
  const call = apiCaller(() => baseUrl)

  before(async () => {
    replica = createServer((request, response) => {
      const chunks: Buffer[] = []
      request.on('data', (chunk: Buffer) => chunks.push(chunk))
      request.on('end', () => {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>
        forwarded.push(body)
        const usage = { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 }
        const choice = { index: 0, message: { role: 'assistant', content: 'Hi' }, finish_reason: 'stop' }
        if (body['stream'] !== true) {
          response.writeHead(200, { 'content-type': 'application/json' })
          return response.end(
            JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion', choices: [choice], usage }),
          )
        }
        response.writeHead(200, { 'content-type': 'text/event-stream' })
        const delta = { index: 0, delta: { content: 'Hi' }, finish_reason: 'stop' }
        response.write(`data: ${JSON.stringify({ id: 'c', choices: [delta], usage: null })}\n\n`)
        response.write(`data: ${JSON.stringify({ id: 'c', choices: [], usage })}\n\n`)
        response.end('data: [DONE]\n\n')
      })
    })
    await new Promise<void>((resolve) => replica.listen(0, '127.0.0.1', resolve))
    const replicaPort = (replica.address() as { port: number }).port
    ;({ store, cleanup } = await pglite.open())
    coordinator = await startTestCoordinator(store, { modelServingPlanMs: 100 })
    baseUrl = await coordinator.listen()
    const operatorKey = await insertOperatorKey(store)
    const supplier = (await call('POST', '/v1/accounts', undefined, { name: 's', roles: ['supplier'] })).body
    const renter = (await call('POST', '/v1/accounts', undefined, { name: 'r', roles: ['renter'] })).body
    renterKey = renter.apiKey.key
    emptyKey = (await call('POST', '/v1/accounts', undefined, { name: 'e', roles: ['renter'] })).body.apiKey
      .key
    const pushed = await runCli(baseUrl, operatorKey, ['model', 'push', tinyModelDir])
    assert.equal(pushed.code, 0, pushed.stderr)
    worker = await simulatedWorker(baseUrl, supplier.apiKey.key, {
      serving: { relayPort: () => replicaPort },
    })
    await eventually(
      async () => (await call('GET', '/v1/models')).body.data[0]?.replicas === 1,
      'the replica ready',
    )
    await call('POST', '/v1/operator/credits', operatorKey, {
      accountId: renter.account.id,
      amountGmt: '10',
      reason: 'openai shapes test',
    })
  })

  after(async () => {
    worker?.close()
    await coordinator?.stop()
    await cleanup?.()
    await new Promise((resolve) => replica?.close(resolve))
  })

  const chat = (body: Record<string, unknown>, key = renterKey) =>
    fetch(`${baseUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny-chat', messages: [{ role: 'user', content: 'Hi' }], ...body }),
    })
  const errorOf = async (response: Response) =>
    ((await response.json()) as { error: Record<string, unknown> }).error

  it('retrieves a served model by name in OpenAI shape, and 404s an unknown one in OpenAI shape', async () => {
    const listed = (await call('GET', '/v1/models')).body.data[0]
    const byName = await fetch(`${baseUrl}/v1/models/tiny-chat`)
    assert.equal(byName.status, 200)
    assert.deepEqual(await byName.json(), listed)
    const byVersion = await fetch(`${baseUrl}/v1/models/tiny-chat:1.0.0`)
    assert.equal(byVersion.status, 200)
    assert.equal(((await byVersion.json()) as { id: string }).id, 'tiny-chat')

    const unknown = await fetch(`${baseUrl}/v1/models/no-such-model`)
    assert.equal(unknown.status, 404)
    assert.deepEqual(await errorOf(unknown), {
      message: 'the model no-such-model does not exist or is not served here',
      type: 'invalid_request_error',
      param: 'model',
      code: 'model_not_found',
    })
  })

  it('refuses n above 1 with param n and code unsupported_parameter, forwarding nothing', async () => {
    const before = forwarded.length
    const refused = await chat({ n: 2 })
    assert.equal(refused.status, 400)
    const error = await errorOf(refused)
    assert.equal(error['param'], 'n')
    assert.equal(error['code'], 'unsupported_parameter')
    assert.equal(error['type'], 'invalid_request_error')
    assert.equal(forwarded.length, before)
    assert.equal((await chat({ n: 1 })).status, 200)
  })

  it('refuses a response_format other than text with code unsupported_parameter', async () => {
    const refused = await chat({ response_format: { type: 'json_object' } })
    assert.equal(refused.status, 400)
    const error = await errorOf(refused)
    assert.equal(error['param'], 'response_format')
    assert.equal(error['code'], 'unsupported_parameter')
    assert.equal((await chat({ response_format: { type: 'text' } })).status, 200)
  })

  it("answers an empty wallet 429 insufficient_quota as OpenAI does, with gpumesh's detail", async () => {
    const refused = await chat({}, emptyKey)
    assert.equal(refused.status, 429)
    const error = await errorOf(refused)
    assert.equal(error['type'], 'insufficient_quota')
    assert.equal(error['code'], 'insufficient_quota')
    assert.match(String(error['message']), /GMT available/)
    assert.equal(refused.headers.get('retry-after'), null, 'not a rate limit: retrying soon will not help')
  })

  it('sends x-request-id on every answer, and keeps it on the receipt', async () => {
    const answers = [
      await chat({}),
      await chat({ stream: true }),
      await chat({ n: 3 }),
      await chat({}, emptyKey),
      await fetch(`${baseUrl}/v1/models`),
      await fetch(`${baseUrl}/v1/models/no-such-model`),
      await fetch(`${baseUrl}/v1/no-such-route`),
      await fetch(`${baseUrl}/v1/health`),
    ]
    const ids = answers.map((answer) => answer.headers.get('x-request-id'))
    for (const id of ids) assert.match(id ?? '', /^req_[A-Za-z0-9]+$/)
    assert.equal(new Set(ids).size, ids.length, 'one id per request')
    for (const answer of answers.slice(0, 2)) {
      await answer.text()
      const receiptId = answer.headers.get('x-gpumesh-receipt-id')!
      await coordinator.settleInference()
      const receipt = await call('GET', `/v1/inference/receipts/${receiptId}`, renterKey)
      assert.equal(receipt.status, 200)
      assert.equal(receipt.body.requestId, answer.headers.get('x-request-id'))
      assert.equal((await store.inference.getReceipt(receiptId))?.requestId, receipt.body.requestId)
    }
  })
})
