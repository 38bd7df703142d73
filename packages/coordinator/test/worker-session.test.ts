import assert from 'node:assert/strict'
import { generateKeyPairSync, sign } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { Coordinator } from '@gpumesh/coordinator'
import { sessionSigningPayload } from '@gpumesh/protocol'
import type { Store } from '@gpumesh/store'
import { eventually, simulatedCapabilities, startTestCoordinator, storeBackends } from '@gpumesh/testing'
import { createWorkerAgent, probeHardware, type WorkerAgent } from '@gpumesh/worker'
import WebSocket from 'ws'

// A real worker agent against a real coordinator on loopback: enrollment, heartbeats, liveness, restarts,
// and a hostile client that the coordinator must refuse without disturbing anyone else.

const fixture = new URL('../../worker/test/fixtures/nvidia-smi/h100-sxm-x2.xml', import.meta.url).pathname
const quietLogger = { info() {}, warn() {}, error() {} }

for (const backend of storeBackends) {
  describe(`worker sessions on ${backend.name}`, () => {
    let store: Store
    let coordinator: Coordinator
    let baseUrl: string
    let cleanup: () => Promise<void>
    let supplierKey: string
    const stateDir = mkdtempSync(join(tmpdir(), 'gpumesh-worker-'))

    before(async () => {
      const opened = await backend.open()
      store = opened.store
      coordinator = await startTestCoordinator(store)
      baseUrl = await coordinator.listen()
      cleanup = async () => {
        await coordinator.stop()
        await opened.cleanup()
        rmSync(stateDir, { recursive: true, force: true })
      }
      const signup = await fetch(`${baseUrl}/v1/accounts`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'supplier', roles: ['supplier'] }),
      })
      supplierKey = ((await signup.json()) as { apiKey: { key: string } }).apiKey.key
    })
    after(() => cleanup())

    const api = async (path: string) => {
      const response = await fetch(`${baseUrl}${path}`, {
        headers: { authorization: `Bearer ${supplierKey}` },
      })
      return (await response.json()) as any
    }
    const startAgent = (token?: string): WorkerAgent => {
      const agent = createWorkerAgent(
        {
          logger: quietLogger,
          // Listed on the marketplace as a machine whose self-test passed (no cluster is placed here).
          selfTest: async () => simulatedCapabilities(),
          probe: () => probeHardware({ nvidiaSmiXmlPath: fixture, diskPath: stateDir }),
        },
        {
          coordinatorUrl: baseUrl,
          ...(token ? { token } : {}),
          stateDir,
          region: 'eu-west',
          country: 'DE',
          askingPricePerGpuHourUsd: '2.10',
          clustersEnabled: false,
          clusterUser: '65534:65534',
          rttProbePort: 0,
          wireguardGoCommand: 'wireguard-go',
          selfTestIntervalMs: 0,
          servePort: 0,
          reconnectInitialDelayMs: 50,
          speedtestIntervalMs: 0,
          reconnectMaxDelayMs: 200,
          logLevel: 'silent',
        },
      )
      void agent.start()
      return agent
    }

    let deviceId: string
    let agent: WorkerAgent

    it('enrolls, connects and appears in the marketplace with its hardware', async () => {
      const token = await fetch(`${baseUrl}/v1/enrollment-tokens`, {
        method: 'POST',
        headers: { authorization: `Bearer ${supplierKey}`, 'content-type': 'application/json' },
        body: '{}',
      }).then((response) => response.json() as Promise<{ token: string }>)
      agent = startAgent(token.token)
      const offer = await eventually(async () => {
        const page = (await (await fetch(`${baseUrl}/v1/offers?gpuModel=h100&country=DE`)).json()) as any
        return page.offers[0]
      }, 'the offer')
      deviceId = offer.deviceId
      assert.equal(offer.gpuCount, 2)
      assert.equal(offer.gpuModel, 'h100')
      assert.equal(offer.pricePerGpuHourUsd, '2.10')
      assert.equal(offer.pricePerHourUsd, '4.20')
      assert.equal(offer.probeSource, 'nvidia-smi-xml-file')
      const device = await api(`/v1/devices/${deviceId}`)
      assert.equal(device.state, 'online')
      assert.equal(device.inventory.gpus.length, 2)
    })

    it('records uptime from heartbeats', async () => {
      await eventually(async () => (await store.getDevice(deviceId))!.uptimeMsTotal > 400, 'uptime to grow')
    })

    it('refuses a replayed signature, a foreign key and garbage, and keeps serving the worker', async () => {
      // a signature captured from another connection: valid once, useless on a new nonce
      const replayed = await rawSession(baseUrl, async (ws, nonce) => {
        const key = generateKeyPairSync('ed25519').privateKey
        void nonce
        ws.send(
          JSON.stringify({
            type: 'auth',
            deviceId,
            signature: sign(null, Buffer.from(sessionSigningPayload('old-nonce', deviceId)), key).toString(
              'base64url',
            ),
            agentVersion: 'x',
          }),
        )
      })
      assert.equal(replayed.code, 4001)
      const foreign = await rawSession(baseUrl, async (ws, nonce) => {
        const key = generateKeyPairSync('ed25519').privateKey
        ws.send(
          JSON.stringify({
            type: 'auth',
            deviceId,
            signature: sign(null, Buffer.from(sessionSigningPayload(nonce, deviceId)), key).toString(
              'base64url',
            ),
            agentVersion: 'x',
          }),
        )
      })
      assert.equal(foreign.code, 4001)
      const malformed = await rawSession(baseUrl, async (ws) => ws.send('{not json'))
      assert.equal(malformed.code, 1008)
      assert.equal(malformed.reason, 'malformed JSON')
      const wrongShape = await rawSession(baseUrl, async (ws) =>
        ws.send(JSON.stringify({ type: 'heartbeat', seq: -1 })),
      )
      assert.equal(wrongShape.code, 1008)
      assert.match(wrongShape.reason, /seq/)
      const oversized = await rawSession(baseUrl, async (ws) => ws.send('x'.repeat(2 * 1024 * 1024)))
      assert.equal(oversized.code, 1009)
      assert.equal(agent.status, 'online')
      assert.equal((await store.getDevice(deviceId))!.state, 'online')
    })

    it('goes offline with the reason when the worker shuts down, and comes back as the same device', async () => {
      await agent.stop('maintenance')
      const offline = await eventually(async () => {
        const device = await api(`/v1/devices/${deviceId}`)
        return device.state === 'offline' && device
      }, 'offline')
      assert.equal(offline.stateReasonCode, 'worker_shutdown')
      assert.match(offline.stateReason, /maintenance/)
      // the marketplace follows the store's change feed, a moment later
      await eventually(
        async () => ((await (await fetch(`${baseUrl}/v1/offers?gpuModel=h100`)).json()) as any).total === 0,
        'delisting',
      )

      agent = startAgent() // no token: the saved enrollment is used
      await eventually(async () => (await api(`/v1/devices/${deviceId}`)).state === 'online', 'back online')
      assert.equal(agent.deviceId, deviceId)
      assert.equal((await api('/v1/devices')).devices.length, 1)
      const events = (await api(`/v1/devices/${deviceId}/events`)).events
      assert.match(events[0].reason, /restart grace/)
    })

    it('marks a silent worker offline after the missed-heartbeat window', async () => {
      await agent.stop()
      const silent = await rawSession(
        baseUrl,
        async (ws, nonce) => {
          ws.send(
            JSON.stringify({
              type: 'auth',
              deviceId,
              signature: signWithAgentKey(stateDir, sessionSigningPayload(nonce, deviceId)),
              agentVersion: 'silent',
            }),
          )
        },
        { waitForClose: true },
      )
      assert.equal(silent.code, 1001)
      const device = await api(`/v1/devices/${deviceId}`)
      assert.equal(device.state, 'offline')
      assert.equal(device.stateReasonCode, 'missed_heartbeats')
    })
  })
}

import { createPrivateKey } from 'node:crypto'
import { readFileSync } from 'node:fs'
function signWithAgentKey(stateDir: string, payload: string): string {
  const key = createPrivateKey(readFileSync(join(stateDir, 'identity.key')))
  return sign(null, Buffer.from(payload), key).toString('base64url')
}

/** Opens a raw socket, lets `act` speak after the challenge, and reports how the coordinator closed it. */
function rawSession(
  baseUrl: string,
  act: (ws: WebSocket, nonce: string) => Promise<void>,
  _options: { waitForClose?: boolean } = {},
): Promise<{ code: number; reason: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${baseUrl.replace('http', 'ws')}/v1/worker/connect`)
    ws.on('message', (data) => {
      const message = JSON.parse(data.toString())
      if (message.type === 'auth_challenge') act(ws, message.nonce).catch(reject)
    })
    ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() }))
    ws.on('error', () => {})
  })
}

describe('worker connection limit', () => {
  it('answers 503 past maxWorkerConnections, before the upgrade', async () => {
    const opened = await storeBackends[0]!.open()
    const coordinator = await startTestCoordinator(opened.store, { maxWorkerConnections: 1 })
    const baseUrl = await coordinator.listen()
    const url = `${baseUrl.replace('http', 'ws')}/v1/worker/connect`
    const first = new WebSocket(url)
    first.on('error', () => {})
    try {
      await new Promise((resolve) => first.once('message', resolve))
      const refused = await new Promise<{ status: number; retryAfter: string | undefined }>((resolve) => {
        const second = new WebSocket(url)
        second.once('unexpected-response', (_request, response) =>
          resolve({
            status: response.statusCode ?? 0,
            retryAfter: response.headers['retry-after'] as string | undefined,
          }),
        )
        second.once('open', () => {
          second.close()
          resolve({ status: 101, retryAfter: undefined })
        })
        second.on('error', () => {})
      })
      assert.deepEqual(refused, { status: 503, retryAfter: '30' })
      // a socket that leaves frees its place
      first.terminate()
      await eventually(async () => {
        const third = new WebSocket(url)
        third.on('error', () => {})
        const admitted = await new Promise<boolean>((resolve) => {
          third.once('message', () => resolve(true))
          third.once('unexpected-response', () => resolve(false))
        })
        third.terminate()
        return admitted
      }, 'a place to free up')
    } finally {
      first.terminate()
      await coordinator.stop()
      await opened.cleanup()
    }
  })
})
