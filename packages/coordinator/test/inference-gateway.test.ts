import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { parseGmtToUnits } from '@gpumesh/core'
import type { Coordinator } from '@gpumesh/coordinator'
import type { Store } from '@gpumesh/store'
import {
  apiCaller,
  eventually,
  freeTcpPort,
  runCli,
  insertOperatorKey,
  modelServerUnavailable,
  simulatedWorker,
  startModelServer,
  tinyModelDir as tinyModel,
  type RunningModelServer,
  startTestCoordinator,
  storeBackends,
  type SimulatedWorker,
} from '@gpumesh/testing'

// The inference gateway and per-token payment, with the shipped tiny model served by the real Ray Serve
// launcher on loopback (the sandbox and relay around it are tested in the worker's own tests and end to end).
// Three simulated devices serve it; one of them points at a dead port, so requests routed there are retried
// on another. Every charge is computed here by hand from the published prices and the token counts, and the
// caller's wallet, the suppliers' earnings, the fee account and the receipts must agree to the unit.

const unavailable = modelServerUnavailable()
const feeBasisPoints = 1_000
const requestsPerMinute = 40

/** ceil((prompt × input + completion × output) / 1,000,000): the pricing rule, written out again here. */
function handCharge(
  promptTokens: number,
  completionTokens: number,
  inputPerMillion: bigint,
  outputPerMillion: bigint,
) {
  const numerator = BigInt(promptTokens) * inputPerMillion + BigInt(completionTokens) * outputPerMillion
  return (numerator + 999_999n) / 1_000_000n
}

describe('the inference gateway', { skip: unavailable ?? false }, () => {
  let launcher: RunningModelServer | undefined
  let replicaPort = 0
  let deadPort = 0
  const scratch = mkdtempSync(join(tmpdir(), 'gpumesh-gateway-'))

  before(async () => {
    deadPort = await freeTcpPort()
    launcher = await startModelServer()
    replicaPort = launcher.ready.port
  })

  after(async () => {
    await launcher?.stop()
    rmSync(scratch, { recursive: true, force: true })
  })

  for (const backend of storeBackends) {
    describe(`on ${backend.name}`, () => {
      let store: Store
      let cleanup: () => Promise<void>
      let coordinator: Coordinator
      let baseUrl: string
      let operatorKey: string
      let renterKey: string
      let renterAccountId: string
      let supplierKey: string
      const workers: SimulatedWorker[] = []
      const call = apiCaller(() => baseUrl)
      const charged: { receiptId: string; amount: bigint; deviceId: string }[] = []

      const gateway = async (path: string, body: unknown, key = renterKey) => {
        const response = await fetch(`${baseUrl}${path}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body: typeof body === 'string' ? body : JSON.stringify(body),
        })
        return { response, text: await response.text() }
      }
      const prices = async () => {
        const served = (await call('GET', '/v1/models')).body.data.find(
          (model: { id: string }) => model.id === 'tiny-chat',
        )
        return {
          input: parseGmtToUnits(served.pricing.input_per_million_gmt)!,
          output: parseGmtToUnits(served.pricing.output_per_million_gmt)!,
        }
      }
      const stopSent = (worker: SimulatedWorker, replicaId: string) =>
        worker.received.some(
          (message) => message.type === 'model_replica_stop' && message.replicaId === replicaId,
        )
      const walletUnits = async (key = renterKey) =>
        parseGmtToUnits((await call('GET', '/v1/wallet', key)).body.balanceGmt)!
      const feeUnits = async () =>
        parseGmtToUnits((await call('GET', '/v1/ledger/accounts/platform:fee', operatorKey)).body.balanceGmt)!
      const settled = async () => {
        await coordinator.settleInference()
      }

      before(async () => {
        ;({ store, cleanup } = await backend.open())
        coordinator = await startTestCoordinator(store, {
          dataDir: join(scratch, backend.name),
          platformFeeBasisPoints: feeBasisPoints,
          inferenceRequestsPerMinute: requestsPerMinute,
          inferenceSettleMs: 60_000,
          modelServingPlanMs: 100,
        })
        baseUrl = await coordinator.listen()
        operatorKey = await insertOperatorKey(store)
        const supplier = (await call('POST', '/v1/accounts', undefined, { name: 's', roles: ['supplier'] }))
          .body
        supplierKey = supplier.apiKey.key
        const renter = (await call('POST', '/v1/accounts', undefined, { name: 'r', roles: ['renter'] })).body
        renterKey = renter.apiKey.key
        renterAccountId = renter.account.id
        const pushed = await runCli(baseUrl, operatorKey, ['model', 'push', tinyModel])
        assert.equal(pushed.code, 0, pushed.stderr)
        const serving = await call('PUT', '/v1/store/models/tiny-chat/1.0.0/serving', operatorKey, {
          minReplicas: 3,
          maxReplicas: 3,
        })
        assert.equal(serving.status, 200, JSON.stringify(serving.body))
        // Device 1 is the dead one: its relay address answers nothing.
        for (const [index, port] of [replicaPort, deadPort, replicaPort].entries())
          workers.push(
            await simulatedWorker(baseUrl, supplierKey, {
              pricePerGpuHourUsd: `0.${index + 2}0`,
              serving: { relayPort: () => port, outputTokensPerSecond: 50 },
            }),
          )
        await eventually(
          async () =>
            (await call('GET', '/v1/models')).body.data.find((m: { id: string }) => m.id === 'tiny-chat')
              ?.replicas === 3,
          'three replicas ready',
          30_000,
        )
        const credited = await call('POST', '/v1/operator/credits', operatorKey, {
          accountId: renterAccountId,
          amountGmt: '50',
          reason: 'gateway test',
        })
        assert.equal(credited.status, 200, JSON.stringify(credited.body))
      })

      after(async () => {
        for (const worker of workers) worker.close()
        await coordinator?.stop()
        await cleanup?.()
      })

      it('prices the model from its replicas: the dearest floor at its measured speed, input a quarter of output', async () => {
        const { input, output } = await prices()
        // Floors 0.20, 0.30, 0.40 USD per GPU-hour (one "GPU" each), 50 tokens/s, priced as busy half the
        // time: 0.40 USD / (3600 s × 50 × 0.5) per token = 4.444… USD per million, rounded up to the micro-dollar
        // (4,444,445) and at 1 GMT per USD the same in units; demand is at its floor with nothing in flight.
        assert.equal(output, 4_444_445n)
        assert.equal(input, 1_111_112n)
      })

      it('answers a completion and charges exactly its tokens, the serving supplier and the fee credited', async () => {
        const before = await walletUnits()
        const feeBefore = await feeUnits()
        const { input, output } = await prices()
        const prompt = 'The Fox and the '
        const { response, text } = await gateway('/v1/completions', {
          model: 'tiny-chat',
          prompt,
          max_tokens: 12,
          temperature: 0,
        })
        assert.equal(response.status, 200, text)
        const completion = JSON.parse(text)
        // One token per character of the prompt.
        assert.equal(completion.usage.prompt_tokens, [...prompt].length)
        const receiptId = response.headers.get('x-gpumesh-receipt-id')!
        const deviceId = response.headers.get('x-gpumesh-device-id')!
        assert.notEqual(deviceId, workers[1]!.deviceId, 'the dead replica never answers')
        const amount = handCharge(
          completion.usage.prompt_tokens,
          completion.usage.completion_tokens,
          input,
          output,
        )
        assert.ok(amount > 0n)
        charged.push({ receiptId, amount, deviceId })
        await settled()
        assert.equal(await walletUnits(), before - amount)
        const receipt = (await call('GET', `/v1/inference/receipts/${receiptId}`, renterKey)).body
        assert.equal(receipt.amountGmt, (Number(amount) / 1e6).toFixed(6))
        assert.equal(receipt.deviceId, deviceId)
        assert.equal(receipt.promptTokens, completion.usage.prompt_tokens)
        assert.equal(receipt.completionTokens, completion.usage.completion_tokens)
        const fee = (amount * BigInt(feeBasisPoints)) / 10_000n
        assert.equal(receipt.feeGmt, (Number(fee) / 1e6).toFixed(6))
        // The receipt's transfers exist in the ledger and moved this batch's money.
        const earnings = (await call('GET', `/v1/earnings?deviceId=${deviceId}`, supplierKey)).body
        const line = earnings.lines.find((entry: { source: string }) => entry.source === 'inference')
        assert.equal(parseGmtToUnits(line.amountGmt), amount - fee)
        assert.equal(await feeUnits(), feeBefore + fee)
      })

      it('streams a chat completion as server-sent events, with usage only when asked, and charges it', async () => {
        const before = await walletUnits()
        const { input, output } = await prices()
        const { response, text } = await gateway('/v1/chat/completions', {
          model: 'tiny-chat',
          messages: [{ role: 'user', content: 'Hello' }],
          max_tokens: 20,
          stream: true,
          stream_options: { include_usage: true },
        })
        assert.equal(response.status, 200, text)
        assert.match(response.headers.get('content-type')!, /text\/event-stream/)
        const events = text.split('\n\n').filter(Boolean)
        assert.equal(events.at(-1), 'data: [DONE]')
        const chunks = events.slice(0, -1).map((event) => JSON.parse(event.slice('data: '.length)))
        assert.ok(chunks.length >= 2)
        const usage = chunks.at(-1).usage
        // "User: Hello\nAssistant:" in the model's chat template: 22 characters, one token each.
        assert.equal(usage.prompt_tokens, [...'User: Hello\nAssistant:'].length)
        const content = chunks.map((chunk) => chunk.choices[0]?.delta?.content ?? '').join('')
        assert.equal(typeof content, 'string')
        const amount = handCharge(usage.prompt_tokens, usage.completion_tokens, input, output)
        charged.push({
          receiptId: response.headers.get('x-gpumesh-receipt-id')!,
          amount,
          deviceId: response.headers.get('x-gpumesh-device-id')!,
        })

        const plain = await gateway('/v1/chat/completions', {
          model: 'tiny-chat',
          messages: [{ role: 'user', content: 'Hi' }],
          max_tokens: 5,
          stream: true,
        })
        assert.equal(plain.response.status, 200)
        assert.ok(!plain.text.includes('"usage"'), 'no usage chunk when the caller did not ask for one')
        const plainReceipt = plain.response.headers.get('x-gpumesh-receipt-id')!
        await settled()
        const receipt = (await call('GET', `/v1/inference/receipts/${plainReceipt}`, renterKey)).body
        const plainAmount = handCharge(receipt.promptTokens, receipt.completionTokens, input, output)
        assert.equal(receipt.promptTokens, [...'User: Hi\nAssistant:'].length)
        charged.push({ receiptId: plainReceipt, amount: plainAmount, deviceId: receipt.deviceId })
        assert.equal(await walletUnits(), before - amount - plainAmount)
      })

      it('answers embeddings, charged for their input tokens only', async () => {
        const before = await walletUnits()
        const { input, output } = await prices()
        const { response, text } = await gateway('/v1/embeddings', {
          model: 'tiny-chat',
          input: ['Fox', 'Crow'],
        })
        assert.equal(response.status, 200, text)
        const reply = JSON.parse(text)
        assert.equal(reply.data.length, 2)
        assert.ok(reply.data[0].embedding.length > 0)
        assert.equal(reply.usage.prompt_tokens, 7)
        const amount = handCharge(7, 0, input, output)
        charged.push({ receiptId: response.headers.get('x-gpumesh-receipt-id')!, amount, deviceId: '' })
        await settled()
        assert.equal(await walletUnits(), before - amount)
      })

      it('retries a request on another replica when the first one fails before answering', async () => {
        const statsBefore = (await call('GET', '/v1/inference/stats')).body.byModel['tiny-chat:1.0.0']
        const devices = new Set<string>()
        for (let index = 0; index < 4; index += 1) {
          const { response, text } = await gateway('/v1/completions', {
            model: 'tiny-chat',
            prompt: 'A',
            max_tokens: 3,
          })
          assert.equal(response.status, 200, text)
          devices.add(response.headers.get('x-gpumesh-device-id')!)
          charged.push({
            receiptId: response.headers.get('x-gpumesh-receipt-id')!,
            amount: -1n,
            deviceId: response.headers.get('x-gpumesh-device-id')!,
          })
        }
        const statsAfter = (await call('GET', '/v1/inference/stats')).body.byModel['tiny-chat:1.0.0']
        assert.ok(
          statsAfter.retried > statsBefore.retried,
          'the dead replica was tried and the request retried',
        )
        assert.ok(!devices.has(workers[1]!.deviceId))
        assert.equal(devices.size, 2, 'both live replicas served (round-robin among equally loaded ones)')
      })

      it('refuses bad requests in the OpenAI error shape, naming the field, and charges nothing', async () => {
        await settled()
        const before = await walletUnits()
        const unknown = await gateway('/v1/completions', { model: 'no-such-model', prompt: 'x' })
        assert.equal(unknown.response.status, 404)
        assert.equal(JSON.parse(unknown.text).error.param, 'model')
        assert.equal(JSON.parse(unknown.text).error.code, 'model_not_found')
        const malformed = await gateway('/v1/chat/completions', { model: 'tiny-chat' })
        assert.equal(malformed.response.status, 400)
        assert.equal(JSON.parse(malformed.text).error.param, 'messages')
        const notJson = await gateway('/v1/completions', '{"model":')
        assert.equal(notJson.response.status, 400)
        assert.equal(typeof JSON.parse(notJson.text).error.message, 'string')
        const tooMany = await gateway('/v1/completions', {
          model: 'tiny-chat',
          prompt: 'x',
          max_tokens: 100_000,
        })
        assert.equal(tooMany.response.status, 400)
        assert.equal(JSON.parse(tooMany.text).error.param, 'max_tokens')
        const oversized = await gateway('/v1/completions', {
          model: 'tiny-chat',
          prompt: 'x'.repeat(300),
          max_tokens: 5,
        })
        assert.equal(oversized.response.status, 400, oversized.text)
        assert.equal(JSON.parse(oversized.text).error.param, 'prompt')
        const unauthenticated = await gateway(
          '/v1/completions',
          { model: 'tiny-chat', prompt: 'x' },
          'gmk_nope',
        )
        assert.equal(unauthenticated.response.status, 401)
        assert.equal(typeof JSON.parse(unauthenticated.text).error.type, 'string')
        await settled()
        assert.equal(await walletUnits(), before)
      })

      it("refuses a caller without funds before the model runs, and keeps each account's receipts to itself", async () => {
        const broke = (await call('POST', '/v1/accounts', undefined, { name: 'broke', roles: ['renter'] }))
          .body
        const refused = await gateway(
          '/v1/completions',
          { model: 'tiny-chat', prompt: 'x', max_tokens: 5 },
          broke.apiKey.key,
        )
        assert.equal(refused.response.status, 429, refused.text)
        assert.equal(JSON.parse(refused.text).error.code, 'insufficient_quota')
        const stranger = await call(
          'GET',
          `/v1/inference/receipts/${charged[0]!.receiptId}`,
          broke.apiKey.key,
        )
        assert.equal(stranger.status, 404)
      })

      it('limits the requests per minute of each key', async () => {
        const other = (await call('POST', '/v1/accounts', undefined, { name: 'busy', roles: ['renter'] }))
          .body
        const statuses: number[] = []
        for (let index = 0; index <= requestsPerMinute; index += 1)
          statuses.push(
            (await gateway('/v1/completions', { model: 'no-such-model', prompt: 'x' }, other.apiKey.key))
              .response.status,
          )
        assert.deepEqual(new Set(statuses.slice(0, requestsPerMinute)), new Set([404]))
        assert.equal(statuses.at(-1), 429)
      })

      it('lets a supplier take a device out of serving, which stops its replica', async () => {
        const device = workers[2]!.deviceId
        const serving = (await call('GET', `/v1/devices/${device}/serving`, supplierKey)).body.replica
          .replicaId
        const off = await runCli(baseUrl, supplierKey, ['inference', 'serve', device, '--off'])
        assert.equal(off.code, 0, off.stderr)
        assert.equal(JSON.parse(off.stdout).enabled, false)
        assert.ok(stopSent(workers[2]!, serving), 'its replica was told to stop')
        const back = await call('PUT', `/v1/devices/${device}/serving`, supplierKey, { enabled: true })
        assert.equal(back.status, 200)
        const stranger = await call('PUT', `/v1/devices/${device}/serving`, renterKey, { enabled: false })
        // A renter's key is refused supplier routes before the device is looked up (issue 22 finding 3).
        assert.equal(stranger.status, 403)
        await eventually(
          async () =>
            (await call('GET', `/v1/devices/${device}/serving`, supplierKey)).body.replica?.phase === 'ready',
          'a replica on the device again',
          10_000,
        )
      })

      it('stops the replica of a device rented for a cluster at once, and routes around it', async () => {
        // Every device's replica now, so the stop checked below is the one for the rented device's current replica.
        const replicaOf = new Map<string, string>()
        for (const candidate of workers) {
          const view = (await call('GET', `/v1/devices/${candidate.deviceId}/serving`, supplierKey)).body
          if (view.replica) replicaOf.set(candidate.deviceId, view.replica.replicaId)
        }
        const created = await call('POST', '/v1/clusters', renterKey, {
          name: 'takes-one',
          nodes: 1,
          gpuModel: 'cpu',
          verifiedOnly: false,
          durationHours: 1,
        })
        assert.equal(created.status, 201, JSON.stringify(created.body))
        const rented = created.body.nodes[0].deviceId as string
        const worker = workers.find((candidate) => candidate.deviceId === rented)!
        assert.ok(replicaOf.has(rented), 'the rented device was serving')
        assert.ok(
          stopSent(worker, replicaOf.get(rented)!),
          'its replica was told to stop when the cluster was created',
        )
        for (let index = 0; index < 3; index += 1) {
          const { response, text } = await gateway('/v1/completions', {
            model: 'tiny-chat',
            prompt: 'B',
            max_tokens: 2,
          })
          assert.equal(response.status, 200, text)
          assert.notEqual(response.headers.get('x-gpumesh-device-id'), rented)
        }
        await call('POST', `/v1/clusters/${created.body.id}/terminate`, renterKey, {})
      })

      it('records an artifact a worker refused, for operators to see', async () => {
        // A device serving now: its worker reports that an artifact's bytes did not match the published hash.
        let serving: { worker: SimulatedWorker; replicaId: string } | undefined
        for (const worker of workers) {
          const view = (await call('GET', `/v1/devices/${worker.deviceId}/serving`, supplierKey)).body
          if (view.replica) serving = { worker, replicaId: view.replica.replicaId }
        }
        assert.ok(serving)
        const start = serving.worker.received.find(
          (message) => message.type === 'model_replica_start' && message.replicaId === serving.replicaId,
        )
        assert.ok(start && start.type === 'model_replica_start')
        const artifact = start.model.artifacts[0]!
        serving.worker.send({
          type: 'model_replica_status',
          replicaId: start.replicaId,
          phase: 'failed',
          detail: 'refused',
          refusedArtifact: {
            path: artifact.path,
            expectedSha256: artifact.sha256,
            receivedSha256: 'f'.repeat(64),
          },
        })
        const refusals = await eventually(async () => {
          const listed = (await call('GET', '/v1/operator/artifact-refusals', operatorKey)).body.refusals
          return listed.length > 0 && listed
        }, 'the refusal recorded')
        assert.equal(refusals[0].deviceId, serving.worker.deviceId)
        assert.equal(refusals[0].expectedSha256, artifact.sha256)
        assert.equal((await call('GET', '/v1/operator/artifact-refusals', renterKey)).status, 403)
        // The failed replica is replaced once its device's cool-down is over; the others serve meanwhile.
      })

      it('keeps every receipt in the ledger: the totals agree, and the ledger verifies', async () => {
        await settled()
        const receipts = (await call('GET', '/v1/inference/receipts?limit=500', renterKey)).body.receipts as {
          id: string
          amountGmt: string
          feeGmt: string
          settlement: { supplierTransferId: string } | null
        }[]
        for (const expected of charged.filter((entry) => entry.amount >= 0n)) {
          const receipt = receipts.find((candidate) => candidate.id === expected.receiptId)!
          assert.equal(parseGmtToUnits(receipt.amountGmt), expected.amount)
        }
        assert.ok(receipts.every((receipt) => receipt.settlement !== null))
        const spent = receipts.reduce((sum, receipt) => sum + parseGmtToUnits(receipt.amountGmt)!, 0n)
        assert.equal(await walletUnits(), 50_000_000n - spent)
        const explorer = (await call('GET', '/v1/explorer/inference')).body.models.find(
          (model: { model: string }) => model.model === 'tiny-chat:1.0.0',
        )
        assert.equal(explorer.requests, receipts.length)
        assert.equal(parseGmtToUnits(explorer.spentGmt), spent)
        const fees = receipts.reduce((sum, receipt) => sum + parseGmtToUnits(receipt.feeGmt)!, 0n)
        assert.equal(parseGmtToUnits(explorer.supplierEarningsGmt), spent - fees)
        const listed = await runCli(baseUrl, renterKey, ['inference', 'receipts', '--limit', '500', '--json'])
        assert.equal(listed.code, 0, listed.stderr)
        assert.equal(JSON.parse(listed.stdout).receipts.length, receipts.length)
        const models = await runCli(baseUrl, renterKey, ['inference', 'models'])
        assert.match(models.stdout, /tiny-chat/)
        const verified = await call('GET', '/v1/ledger/verify', operatorKey)
        assert.equal(verified.status, 200)
        assert.equal(verified.body.ok, true, JSON.stringify(verified.body))
        // The operator's view of the same traffic: requests, tokens and latency per model in GET /metrics.
        const metrics = await (await fetch(`${baseUrl}/metrics`)).text()
        const value = (series: string) =>
          Number(
            metrics
              .split('\n')
              .find((line) => line.startsWith(`${series} `))
              ?.split(' ')[1] ?? NaN,
          )
        const model = 'model="tiny-chat:1.0.0"'
        const stats = (await call('GET', '/v1/inference/stats')).body.byModel['tiny-chat:1.0.0']
        assert.equal(value(`gpumesh_gateway_requests_total{${model},outcome="succeeded"}`), stats.succeeded)
        assert.equal(value(`gpumesh_gateway_requests_total{${model},outcome="failed"}`) || 0, stats.failed)
        assert.ok(value(`gpumesh_gateway_tokens_total{${model},kind="completion"}`) > 0)
        assert.ok(value(`gpumesh_gateway_request_duration_seconds_count{${model}}`) > 0)
        assert.ok(value('gpumesh_model_replicas{phase="ready"}') >= 1)
      })
    })
  }
})
