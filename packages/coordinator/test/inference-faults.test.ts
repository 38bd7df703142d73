import assert from 'node:assert/strict'
import { createServer, type Server, type ServerResponse } from 'node:http'
import { after, before, describe, it } from 'node:test'
import { parseGmtToUnits } from '@gpumesh/core'
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

// How the gateway behaves when a replica breaks in ways a healthy model server never shows: it answers the
// first token of a stream and then its connection drops, or it drops every connection before answering. The
// only replica here is a stand-in that does exactly that (the real model server cannot be told to fail on cue).
// A stream cut mid-answer ends with an OpenAI-shaped error event and no [DONE]; a request no replica answers
// gets a 503; neither is charged.

const pglite = storeBackends.find((backend) => backend.name === 'pglite')!

describe('the inference gateway when a replica breaks', () => {
  let store: Store
  let cleanup: () => Promise<void>
  let coordinator: Coordinator
  let baseUrl: string
  let renterKey: string
  let worker: SimulatedWorker
  let mode: 'cut-after-first-token' | 'drop-before-answering' = 'cut-after-first-token'
  let replica: Server
  const call = apiCaller(() => baseUrl)

  const firstChunk = (response: ServerResponse) => {
    response.writeHead(200, { 'content-type': 'text/event-stream' })
    response.write(
      `data: ${JSON.stringify({
        id: 'chatcmpl-1',
        object: 'chat.completion.chunk',
        created: 0,
        model: 'tiny-chat',
        choices: [{ index: 0, delta: { role: 'assistant', content: 'Once' }, finish_reason: null }],
        usage: null,
      })}\n\n`,
    )
  }

  before(async () => {
    replica = createServer((request, response) => {
      request.resume()
      request.on('end', () => {
        if (mode === 'drop-before-answering') return request.socket.destroy()
        firstChunk(response)
        setTimeout(() => request.socket.destroy(), 50)
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
      reason: 'faults test',
    })
  })

  after(async () => {
    worker?.close()
    await coordinator?.stop()
    await cleanup?.()
    await new Promise((resolve) => replica?.close(resolve))
  })

  const wallet = async () => parseGmtToUnits((await call('GET', '/v1/wallet', renterKey)).body.balanceGmt)!
  const chat = (stream: boolean) =>
    fetch(`${baseUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${renterKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny-chat', messages: [{ role: 'user', content: 'Hi' }], stream }),
    })

  it('ends a stream cut after its first token with an error event, and charges nothing', async () => {
    mode = 'cut-after-first-token'
    const before = await wallet()
    const response = await chat(true)
    assert.equal(response.status, 200)
    const events = (await response.text()).split('\n\n').filter(Boolean)
    assert.equal(JSON.parse(events[0]!.slice('data: '.length)).choices[0].delta.content, 'Once')
    const last = JSON.parse(events.at(-1)!.slice('data: '.length))
    assert.equal(last.error.code, 'replica_failed')
    assert.equal(last.error.type, 'server_error')
    assert.ok(!events.includes('data: [DONE]'))
    await coordinator.settleInference()
    assert.equal(await wallet(), before)
    const stats = (await call('GET', '/v1/inference/stats')).body.byModel['tiny-chat:1.0.0']
    assert.equal(stats.failed, 1)
  })

  it('answers 503 in the OpenAI shape when no replica answers at all, and charges nothing', async () => {
    mode = 'drop-before-answering'
    const before = await wallet()
    const response = await chat(false)
    assert.equal(response.status, 503)
    const body = (await response.json()) as { error: { code: string; message: string } }
    assert.equal(body.error.code, 'replica_unavailable')
    await coordinator.settleInference()
    assert.equal(await wallet(), before)
  })
})
