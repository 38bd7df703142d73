import assert from 'node:assert/strict'
import { execFileSync, type ChildProcess } from 'node:child_process'
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { parseGmtToUnits } from '@gpumesh/core'
import {
  createTestNetwork,
  eventually,
  hostApi,
  modelServerUnavailable,
  startCoordinatorOnHost,
  tinyModelDir as tinyModel,
  type HostApi,
  type TestHost,
  type TestNetwork,
  workerStartArgs,
} from '@gpumesh/testing'
import { cleanUpModelReplicaLeftovers, modelReplicaNames, removeClusterNodesOf } from '@gpumesh/worker'

// Inference end to end: a coordinator and two worker agents on their own test hosts, both opted in to serve
// models. The coordinator places a replica of the shipped tiny model on each; the workers fetch its artifacts
// (hash-checked), start Ray Serve in a sandbox (own network namespace, unprivileged user) and put their relay
// in front. The official `openai` npm client, run from a third host, gets a completion and a streamed chat
// completion; the caller is charged exactly for the tokens (computed here by hand from the published prices),
// the serving supplier and the fee account credited. A replica killed before its first token is retried on the
// other; renting one device for a cluster evicts its replica, and requests keep succeeding on the other.

const repoRoot = resolve(import.meta.dirname, '../..')
const cli = join(repoRoot, 'packages/cli/src/main.ts')
const client = join(repoRoot, 'test/e2e/openai-client.ts')
const unavailable = process.getuid?.() === 0 ? modelServerUnavailable() : 'needs root'
const feeBasisPoints = 1_000

/** ceil((prompt × input + completion × output) / 1,000,000): the pricing rule, written out again here. */
function handCharge(
  usage: { prompt_tokens: number; completion_tokens: number },
  prices: { input: bigint; output: bigint },
) {
  const numerator =
    BigInt(usage.prompt_tokens) * prices.input + BigInt(usage.completion_tokens) * prices.output
  return (numerator + 999_999n) / 1_000_000n
}

describe('inference across test hosts', { skip: unavailable ?? false }, () => {
  let network: TestNetwork
  let coordinatorHost: TestHost
  let clientHost: TestHost
  let baseUrl: string
  let api: HostApi
  let operatorKey: string
  let supplierKey: string
  let renterKey: string
  const workDir = mkdtempSync(join(tmpdir(), 'gpumesh-inference-'))
  const workers: ChildProcess[] = []
  const deviceIds: string[] = []
  const clusterIds: string[] = []
  const mountNamespace = `/proc/${process.pid}/ns/mnt`
  let prices: { input: bigint; output: bigint }

  const openai = (action: string, count?: number | string, key = renterKey) =>
    JSON.parse(
      network
        .execIn(clientHost, process.execPath, [
          client,
          baseUrl,
          key,
          action,
          ...(count ? [String(count)] : []),
        ])
        .trim()
        .split('\n')
        .pop()!,
    )
  const units = (text: string) => parseGmtToUnits(text)!
  const wallet = () => units(api('/v1/wallet', { key: renterKey }).body.balanceGmt)
  const feeBalance = () =>
    units(api('/v1/ledger/accounts/platform:fee', { key: operatorKey }).body.balanceGmt)
  const earnedByDevice = () => {
    const lines = api('/v1/earnings', { key: supplierKey }).body.lines as {
      deviceId: string
      source: string
      amountGmt: string
    }[]
    const byDevice = new Map<string, bigint>()
    for (const line of lines.filter((entry) => entry.source === 'inference'))
      byDevice.set(line.deviceId, (byDevice.get(line.deviceId) ?? 0n) + units(line.amountGmt))
    return byDevice
  }
  const servingOf = (deviceId: string) => api(`/v1/devices/${deviceId}/serving`, { key: supplierKey }).body
  const receipt = (id: string) => api(`/v1/inference/receipts/${id}`, { key: renterKey }).body
  const settledReceipt = (id: string) =>
    eventually(
      () => {
        const view = receipt(id)
        return view.settlement !== null && view
      },
      `receipt ${id} settled`,
      15_000,
    )

  before(async () => {
    // The workers' replicas run as nobody and read their models under the workers' state directories.
    chmodSync(workDir, 0o711)
    network = createTestNetwork(['coord', 'w0', 'w1', 'client'])
    coordinatorHost = network.hosts[0]!
    clientHost = network.hosts[3]!
    baseUrl = await startCoordinatorOnHost(network, coordinatorHost, {
      cli,
      workDir,
      // PGlite's first start took 30 s with the machine's load at 14; the default wait is 30 s.
      startTimeoutMs: 120_000,
      settings: {
        heartbeatIntervalMs: 500,
        missedHeartbeatsBeforeOffline: 3,
        heartbeatFlushIntervalMs: 200,
        verificationEnabled: true,
        challengeCpuMatrixSize: 128,
        clusterProvisionTimeoutMs: 240_000,
        gmtPerUsd: '1',
        platformFeeBasisPoints: feeBasisPoints,
        faucetMaxClaimGmt: '500',
        inferenceSettleMs: 200,
        modelServingPlanMs: 500,
        replicaDrainMs: 5_000,
      },
    })
    api = hostApi(network, coordinatorHost, baseUrl)
    supplierKey = api('/v1/accounts', { method: 'POST', body: { name: 'supplier', roles: ['supplier'] } })
      .body.apiKey.key
    renterKey = api('/v1/accounts', { method: 'POST', body: { name: 'app developer', roles: ['renter'] } })
      .body.apiKey.key
    operatorKey = readFileSync(join(workDir, 'coordinator', 'operator.key'), 'utf8').trim()
    assert.equal(
      api('/v1/operator/faucet', { method: 'POST', key: operatorKey, body: { amountGmt: '1000' } }).status,
      200,
    )
    assert.equal(
      api('/v1/wallet/faucet', { method: 'POST', key: renterKey, body: { amountGmt: '100' } }).status,
      200,
    )

    // The operator pushes the tiny model, from the coordinator's host, with the CLI.
    const pushed = network.execIn(coordinatorHost, '/usr/bin/env', [
      `GPUMESH_COORDINATOR=${baseUrl}`,
      `GPUMESH_API_KEY=${operatorKey}`,
      `GPUMESH_CONFIG_DIR=${join(workDir, 'cli')}`,
      process.execPath,
      cli,
      'model',
      'push',
      tinyModel,
    ])
    assert.match(pushed, /tiny-chat/)
    const serving = api('/v1/store/models/tiny-chat/1.0.0/serving', {
      method: 'PUT',
      key: operatorKey,
      body: { minReplicas: 2, maxReplicas: 2 },
    })
    assert.equal(serving.status, 200, JSON.stringify(serving.body))

    for (let index = 0; index < 2; index += 1) {
      const token = api('/v1/enrollment-tokens', { method: 'POST', body: {}, key: supplierKey }).body.token
      workers.push(
        network.spawnIn(
          network.hosts[index + 1]!,
          process.execPath,
          workerStartArgs({
            cli,
            coordinatorUrl: baseUrl,
            stateDir: join(workDir, `worker-${index}`),
            region: 'e2e',
            country: 'DE',
            pricePerGpuHour: (0.3 + 0.1 * index).toFixed(2),
            token,
            extraArgs: [
              '--serve-models',
              '--speedtest-interval-ms',
              '0',
              '--cluster-node-cpus',
              '1',
              '--ray-object-store-memory-bytes',
              String(100 * 1024 * 1024),
              '--netns-mount-namespace',
              mountNamespace,
            ],
          }),
          { logPrefix: `worker-${index}` },
        ),
      )
    }
    await eventually(
      () => api('/v1/offers?region=e2e&limit=10').body.total === 2,
      'two machines on offer',
      60_000,
    )
    for (let index = 0; index < 2; index += 1)
      deviceIds.push(
        JSON.parse(readFileSync(join(workDir, `worker-${index}`, 'enrollment.json'), 'utf8')).deviceId,
      )
    await eventually(
      () => {
        const served = openai('models')
        const model = served.ok && served.models.find((entry: { id: string }) => entry.id === 'tiny-chat')
        return model?.replicas === 2 && model
      },
      'two replicas of tiny-chat ready',
      300_000,
    )
  })

  after(async () => {
    for (const worker of workers) if (worker.exitCode === null) worker.kill('SIGTERM')
    await Promise.all(
      workers.map((worker) =>
        worker.exitCode === null
          ? Promise.race([
              new Promise((resolveExit) => worker.once('exit', resolveExit)),
              new Promise((resolveWait) => setTimeout(resolveWait, 30_000)),
            ])
          : undefined,
      ),
    )
    for (const worker of workers) if (worker.exitCode === null) worker.kill('SIGKILL')
    // Safety nets, by this run's own names only.
    for (let index = 0; index < 2; index += 1)
      await cleanUpModelReplicaLeftovers(join(workDir, `worker-${index}`), mountNamespace)
    for (const deviceId of deviceIds) await removeClusterNodesOf(deviceId, clusterIds)
    await network?.destroy()
    rmSync(workDir, { recursive: true, force: true })
  })

  it('the official openai client gets a completion and a streamed chat; each is charged exactly for its tokens', async () => {
    const listed = openai('models').models.find((entry: { id: string }) => entry.id === 'tiny-chat')
    prices = {
      input: units(listed.pricing.input_per_million_gmt),
      output: units(listed.pricing.output_per_million_gmt),
    }
    assert.ok(prices.output > 0n && prices.input > 0n)
    const walletBefore = wallet()
    const feeBefore = feeBalance()
    const earnedBefore = earnedByDevice()

    const completion = openai('completion')
    assert.equal(completion.ok, true, JSON.stringify(completion))
    assert.equal(typeof completion.text, 'string')
    // One token per character of the prompt "The Fox and the ".
    assert.equal(completion.usage.prompt_tokens, 16)
    assert.ok(completion.usage.completion_tokens >= 1 && completion.usage.completion_tokens <= 12)

    const streamed = openai('stream')
    assert.equal(streamed.ok, true, JSON.stringify(streamed))
    assert.ok(streamed.chunks >= 3, `streamed in ${streamed.chunks} chunks`)
    // "User: Tell me a fable.\nAssistant:" in the model's chat template, one token per character.
    assert.equal(streamed.usage.prompt_tokens, [...'User: Tell me a fable.\nAssistant:'].length)
    assert.ok(deviceIds.includes(completion.deviceId) && deviceIds.includes(streamed.deviceId))

    const charges = [
      { ...completion, amount: handCharge(completion.usage, prices) },
      { ...streamed, amount: handCharge(streamed.usage, prices) },
    ]
    // Issue 25 item 2: x-request-id on each answer, as the client read it, and the same id on the receipt.
    assert.match(completion.requestId, /^req_/)
    assert.match(streamed.requestId, /^req_/)
    assert.notEqual(completion.requestId, streamed.requestId)
    for (const charge of charges) {
      const view = await settledReceipt(charge.receiptId)
      assert.equal(units(view.amountGmt), charge.amount)
      assert.equal(view.deviceId, charge.deviceId)
      assert.equal(view.requestId, charge.requestId)
    }
    const total = charges.reduce((sum, charge) => sum + charge.amount, 0n)
    const fees = charges.reduce((sum, charge) => sum + (charge.amount * BigInt(feeBasisPoints)) / 10_000n, 0n)
    assert.equal(wallet(), walletBefore - total)
    assert.equal(feeBalance(), feeBefore + fees)
    const earned = earnedByDevice()
    for (const deviceId of deviceIds) {
      const expected = charges
        .filter((charge) => charge.deviceId === deviceId)
        .reduce((sum, charge) => sum + charge.amount - (charge.amount * BigInt(feeBasisPoints)) / 10_000n, 0n)
      assert.equal((earned.get(deviceId) ?? 0n) - (earnedBefore.get(deviceId) ?? 0n), expected)
    }
  })

  it("refuses max_tokens beyond the model limit with the client's BadRequestError, naming the field", () => {
    const refused = openai('bad-max-tokens')
    assert.equal(refused.ok, false)
    assert.equal(refused.errorClass, 'BadRequestError')
    assert.equal(refused.status, 400)
    assert.equal(refused.error.param, 'max_tokens')
  })

  it("retrieves a served model with the client's models.retrieve, and raises NotFoundError for an unknown one (issue 25 item 2)", () => {
    const listed = openai('models').models.find((entry: { id: string }) => entry.id === 'tiny-chat')
    const retrieved = openai('retrieve', 'tiny-chat')
    assert.equal(retrieved.ok, true, JSON.stringify(retrieved))
    assert.deepEqual(retrieved.model, listed)
    assert.match(retrieved.requestId, /^req_/)
    const missing = openai('retrieve', 'no-such-model')
    assert.equal(missing.ok, false)
    assert.equal(missing.errorClass, 'NotFoundError')
    assert.equal(missing.status, 404)
    assert.equal(missing.code, 'model_not_found')
    assert.match(missing.requestId, /^req_/)
  })

  it("answers an empty wallet as OpenAI answers an account without credit: the client's RateLimitError, insufficient_quota (issue 25 item 2)", () => {
    const brokeKey = api('/v1/accounts', { method: 'POST', body: { name: 'broke', roles: ['renter'] } }).body
      .apiKey.key
    const refused = openai('completion', undefined, brokeKey)
    assert.equal(refused.ok, false)
    assert.equal(refused.errorClass, 'RateLimitError')
    assert.equal(refused.status, 429)
    assert.equal(refused.code, 'insufficient_quota')
    assert.equal(refused.error.type, 'insufficient_quota')
    assert.match(refused.error.message, /GMT available/)
    assert.match(refused.requestId, /^req_/)
  })

  it('retries on the other replica when one is killed before its first token', () => {
    const victim = servingOf(deviceIds[0]!).replica.replicaId as string
    const { namespace } = modelReplicaNames(victim)
    // Ray Serve's HTTP proxy in the victim's sandbox answers the relay: killed, the relay's requests fail
    // before a token, while the worker still reports the replica ready.
    const pids = execFileSync('ip', ['netns', 'pids', namespace], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean)
    let killed = 0
    for (const pid of pids) {
      const commandLine = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ')
      if (/ProxyActor/.test(commandLine)) {
        process.kill(Number(pid), 'SIGKILL')
        killed += 1
      }
    }
    assert.ok(killed >= 1, "found the replica's HTTP proxy")
    const statsBefore = api('/v1/inference/stats').body.byModel['tiny-chat:1.0.0']
    const run = openai('completions', 4)
    assert.equal(run.ok, true, JSON.stringify(run))
    assert.equal(run.results.length, 4)
    const statsAfter = api('/v1/inference/stats').body.byModel['tiny-chat:1.0.0']
    assert.ok(statsAfter.retried > statsBefore.retried, 'a request met the dead proxy and was retried')
    assert.equal(statsAfter.failed, statsBefore.failed)
  })

  it('renting a device for a cluster evicts its replica; requests keep succeeding on the other', async () => {
    // Each device's replica before the rental: the one evicted is the rented device's.
    const replicaBefore = new Map(
      deviceIds.map((deviceId) => [deviceId, servingOf(deviceId).replica?.replicaId]),
    )
    const created = api('/v1/clusters', {
      method: 'POST',
      key: renterKey,
      body: { name: 'takes-one', nodes: 1, gpuModel: 'cpu', verifiedOnly: false, durationHours: 1 },
    })
    assert.equal(created.status, 201, JSON.stringify(created.body))
    clusterIds.push(created.body.id)
    const rented = created.body.nodes[0].deviceId as string
    const other = deviceIds.find((deviceId) => deviceId !== rented)!
    const evicted = replicaBefore.get(rented)
    assert.ok(evicted, 'the rented device was serving')
    await eventually(
      () => servingOf(rented).replica === null,
      'the rented device to stop its replica',
      30_000,
    )
    assert.ok(!existsSync(`/run/netns/${modelReplicaNames(evicted).namespace}`), 'its sandbox is gone')
    const run = openai('completions', 3)
    assert.equal(run.ok, true, JSON.stringify(run))
    for (const result of run.results) assert.equal(result.deviceId, other)
    api(`/v1/clusters/${created.body.id}/terminate`, { method: 'POST', key: renterKey, body: {} })
  })

  it('the explorer shows inferences, tokens and earnings, and the ledger verifies', async () => {
    // 1 completion, 1 streamed chat, 4 and 3 completions: 9 requests charged once their batches settle.
    const figures = await eventually(
      () => {
        const entry = api('/v1/explorer/inference').body.models.find(
          (candidate: { model: string }) => candidate.model === 'tiny-chat:1.0.0',
        )
        return entry?.requests === 9 && entry
      },
      'nine requests in the explorer',
      15_000,
    )
    assert.ok(figures.completionTokens > 0)
    const verified = api('/v1/ledger/verify', { key: operatorKey })
    assert.equal(verified.body.ok, true, JSON.stringify(verified.body))
  })
})
