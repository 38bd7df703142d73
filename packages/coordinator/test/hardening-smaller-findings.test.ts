import assert from 'node:assert/strict'
import { generateKeyPairSync, sign } from 'node:crypto'
import { connect } from 'node:net'
import { after, before, describe, it } from 'node:test'
import type { Coordinator } from '@gpumesh/coordinator'
import {
  enrollmentSigningPayload,
  incapable,
  sessionSigningPayload,
  type CoordinatorMessage,
  type WorkerCapabilities,
} from '@gpumesh/protocol'
import type { Store } from '@gpumesh/store'
import {
  apiCaller,
  cpuInventory,
  eventually,
  insertOperatorKey,
  simulatedCapabilities,
  startTestCoordinator,
  storeBackends,
} from '@gpumesh/testing'
import WebSocket from 'ws'

// Issue 22, finding 10 (smaller findings): the same public key enrolling with two tokens at once gave a 500
// on PostgreSQL and used both tokens on PGlite; `requestTimeout` was 0, so slow-body connections stayed open
// for as long as their clients liked; a supplier-only key could claim from the faucet; and clusters were placed
// on workers restarted with --no-clusters (the device kept its last session's capabilities until the new
// session reported).

const nowMs = Date.UTC(2026, 0, 1)

for (const backend of storeBackends) {
  describe(`finding 10 (enrollment race) on ${backend.name}`, () => {
    let store: Store
    let cleanup: () => Promise<void>

    before(async () => {
      ;({ store, cleanup } = await backend.open())
      await store.createAccount({
        id: 'acc_supplier',
        name: 'supplier',
        roles: ['supplier'],
        createdAtMs: nowMs,
      })
    })
    after(() => cleanup?.())

    it('enrolls one key presenting two tokens at once as one device, using one token', async () => {
      for (const id of ['enr_a', 'enr_b'])
        await store.insertEnrollmentToken({
          id,
          accountId: 'acc_supplier',
          label: null,
          secretSha256: `hash-${id}`,
          createdAtMs: nowMs,
          expiresAtMs: nowMs + 3_600_000,
          usedAtMs: null,
          usedByPublicKey: null,
          deviceId: null,
        })
      const outcomes = await Promise.all(
        ['enr_a', 'enr_b'].map((id) =>
          store.enroll({
            tokenId: id,
            tokenSecretSha256: `hash-${id}`,
            publicKey: 'pk-raced',
            newDeviceId: `dev_${id}`,
            nowMs,
          }),
        ),
      )
      const deviceIds = new Set(outcomes.map((outcome) => (outcome.ok ? outcome.deviceId : outcome.reason)))
      assert.equal(deviceIds.size, 1, `one answer: ${JSON.stringify(outcomes)}`)
      assert.ok(outcomes.every((outcome) => outcome.ok))
      assert.equal((await store.listDevices('acc_supplier')).length, 1)
      const used = (await store.listEnrollmentTokens('acc_supplier')).filter(
        (token) => token.usedAtMs !== null,
      )
      assert.equal(used.length, 1, 'one token used')
    })
  })
}

describe('finding 10 (slow request bodies, faucet roles)', () => {
  let store: Store
  let cleanup: () => Promise<void>
  let coordinator: Coordinator
  let port: number
  let baseUrl: string
  const call = apiCaller(() => baseUrl)
  const requestTimeoutMs = 1_000

  before(async () => {
    ;({ store, cleanup } = await storeBackends[0]!.open())
    coordinator = await startTestCoordinator(store, {
      runBackgroundLoops: false,
      httpRequestTimeoutMs: requestTimeoutMs,
    })
    baseUrl = await coordinator.listen()
    port = Number(new URL(baseUrl).port)
  })
  after(async () => {
    await coordinator?.stop()
    await cleanup?.()
  })

  /** Sends `head`, then nothing more; resolves with what came back once the server closes the connection. */
  const stall = (head: string) =>
    new Promise<{ reply: string; openMs: number }>((resolve, reject) => {
      const startedAt = Date.now()
      const socket = connect(port, '127.0.0.1', () => socket.write(head))
      let reply = ''
      socket.setEncoding('utf8')
      socket.on('data', (chunk: string) => (reply += chunk))
      socket.once('error', reject)
      socket.once('close', () => resolve({ reply, openMs: Date.now() - startedAt }))
      // The test's own bound: far beyond the timeout, so only a server that never closes fails here.
      setTimeout(() => {
        socket.destroy()
        reject(new Error('the server kept a stalled request open'))
      }, 20_000).unref()
    })

  it('closes a connection whose body stops arriving, with a 408', async () => {
    const { reply, openMs } = await stall(
      'POST /v1/accounts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"na',
    )
    assert.match(reply, /^HTTP\/1\.1 408/)
    assert.ok(openMs >= requestTimeoutMs, `closed after ${openMs} ms`)
  })

  it('closes a connection whose headers stop arriving', async () => {
    // Resolving at all is the point: the server closed it (stall() rejects after 20 s otherwise).
    const { reply } = await stall('GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: ')
    assert.doesNotMatch(reply, /200 OK/)
  })

  it('lets a renter key claim from the faucet and refuses a supplier-only key (docs/billing.md)', async () => {
    const operatorKey = await insertOperatorKey(store)
    assert.equal((await call('POST', '/v1/operator/faucet', operatorKey, { amountGmt: '100' })).status, 200)
    const keyOf = async (roles: string[]) =>
      (await call('POST', '/v1/accounts', undefined, { name: roles.join('-'), roles })).body.apiKey
        .key as string
    const supplierOnly = await call('POST', '/v1/wallet/faucet', await keyOf(['supplier']), {
      amountGmt: '10',
    })
    assert.equal(supplierOnly.status, 403, JSON.stringify(supplierOnly.body))
    const renter = await call('POST', '/v1/wallet/faucet', await keyOf(['renter']), { amountGmt: '10' })
    assert.equal(renter.status, 200, JSON.stringify(renter.body))
  })

  it('never gives a cluster node to a worker whose new session has not said it runs them', async () => {
    const supplier = await call('POST', '/v1/accounts', undefined, {
      name: 'no-clusters',
      roles: ['supplier'],
    })
    const renter = await call('POST', '/v1/accounts', undefined, {
      name: 'cluster-renter',
      roles: ['renter'],
    })
    const { privateKey, publicKey } = generateKeyPairSync('ed25519')
    const signText = (payload: string) => sign(null, Buffer.from(payload), privateKey).toString('base64url')
    const token = (await call('POST', '/v1/enrollment-tokens', supplier.body.apiKey.key, {})).body.token
    const enrolled = await call('POST', '/v1/worker/enroll', undefined, {
      token,
      publicKey: publicKey.export({ format: 'jwk' }).x,
      signature: signText(enrollmentSigningPayload(token)),
    })
    const deviceId = enrolled.body.deviceId as string
    /** One worker session: authenticates, then reports with `capabilities` unless null. */
    const session = (capabilities: WorkerCapabilities | null) =>
      new Promise<WebSocket>((resolve, reject) => {
        const socket = new WebSocket(`${baseUrl.replace('http', 'ws')}/v1/worker/connect`)
        socket.once('error', reject)
        socket.on('message', (data) => {
          const message = JSON.parse(data.toString()) as CoordinatorMessage
          if (message.type === 'auth_challenge')
            socket.send(
              JSON.stringify({
                type: 'auth',
                deviceId,
                signature: signText(sessionSigningPayload(message.nonce, deviceId)),
                agentVersion: 'test',
              }),
            )
          if (message.type !== 'welcome') return
          if (capabilities)
            socket.send(
              JSON.stringify({
                type: 'report',
                inventory: cpuInventory,
                location: { region: 'sim', country: 'DE' },
                askingPricePerGpuHourUsd: '0.50',
                capabilities,
              }),
            )
          resolve(socket)
        })
      })
    const closed = (socket: WebSocket) =>
      new Promise<void>((resolve) => {
        socket.once('close', () => resolve())
        socket.close()
      })
    const deploy = () =>
      call('POST', '/v1/clusters', renter.body.apiKey.key, { nodes: 1, gpuModel: 'cpu', verifiedOnly: false })

    // The first run could run cluster nodes; the device was recorded so.
    const first = await session(simulatedCapabilities())
    await eventually(async () => (await store.getDevice(deviceId))?.capabilities !== null, 'first report')
    await closed(first)
    // Restarted with --no-clusters: connected, its report not yet in. Nothing may be placed on it.
    const restarted = await session(null)
    const early = await deploy()
    assert.equal(early.status, 409, JSON.stringify(early.body))
    assert.equal(early.body.details.blockingConstraint, 'capability')
    // Its report arrives, saying it does not run cluster nodes: still refused, with the worker's reason.
    restarted.send(
      JSON.stringify({
        type: 'report',
        inventory: cpuInventory,
        location: { region: 'sim', country: 'DE' },
        askingPricePerGpuHourUsd: '0.50',
        capabilities: simulatedCapabilities({
          clusterNodes: incapable('the worker was started with --no-clusters'),
        }),
      }),
    )
    await eventually(
      async () => (await store.getDevice(deviceId))?.capabilities?.clusterNodes.available === false,
      'second report',
    )
    const later = await deploy()
    assert.equal(later.status, 409, JSON.stringify(later.body))
    assert.match(JSON.stringify(later.body), /--no-clusters/)
    await closed(restarted)
  })
})
