import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { Coordinator } from '@gpumesh/coordinator'
import { openStore, type Store } from '@gpumesh/store'
import { eventually, simulatedCapabilities, startTestCoordinator } from '@gpumesh/testing'
import {
  createWorkerAgent,
  measureRoundTrips,
  probeHardware,
  startRttResponder,
  type WorkerAgent,
} from '@gpumesh/worker'

// Round trips between workers, measured by the workers themselves over UDP and used by placement.

const fixture = new URL('../../worker/test/fixtures/nvidia-smi/h100-sxm-x2.xml', import.meta.url).pathname
const quietLogger = { info() {}, warn() {}, error() {} }

describe('round-trip echo and measurement', () => {
  it('measures a responder and reports null for a silent port', async () => {
    const responder = await startRttResponder()
    const silent = await startRttResponder()
    const silentPort = silent.port
    await silent.close()
    try {
      const results = await measureRoundTrips([
        { deviceId: 'up', host: '127.0.0.1', port: responder.port },
        { deviceId: 'down', host: '127.0.0.1', port: silentPort },
      ])
      assert.equal(results[0]!.deviceId, 'up')
      assert.ok(
        results[0]!.rttMs !== null && results[0]!.rttMs > 0 && results[0]!.rttMs < 500,
        `${results[0]!.rttMs}`,
      )
      assert.deepEqual(results[1], { deviceId: 'down', rttMs: null })
    } finally {
      await responder.close()
    }
  })
})

describe('round trips through the coordinator', () => {
  let store: Store
  let coordinator: Coordinator
  let baseUrl: string
  const agents: WorkerAgent[] = []
  const stateDirs: string[] = []

  before(async () => {
    store = await openStore({ kind: 'pglite' })
    coordinator = await startTestCoordinator(store, { rttProbeIntervalMs: 300 })
    baseUrl = await coordinator.listen()
    const signup = await fetch(`${baseUrl}/v1/accounts`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'supplier', roles: ['supplier'] }),
    })
    const supplierKey = ((await signup.json()) as { apiKey: { key: string } }).apiKey.key
    for (let index = 0; index < 3; index += 1) {
      const token = (await (
        await fetch(`${baseUrl}/v1/enrollment-tokens`, {
          method: 'POST',
          headers: { authorization: `Bearer ${supplierKey}`, 'content-type': 'application/json' },
          body: '{}',
        })
      ).json()) as { token: string }
      const stateDir = mkdtempSync(join(tmpdir(), 'gpumesh-rtt-'))
      stateDirs.push(stateDir)
      const agent = createWorkerAgent(
        {
          logger: quietLogger,
          // Listed on the marketplace as a machine whose self-test passed (no cluster is placed here).
          selfTest: async () => simulatedCapabilities(),
          probe: () => probeHardware({ nvidiaSmiXmlPath: fixture, diskPath: stateDir }),
        },
        {
          coordinatorUrl: baseUrl,
          token: token.token,
          stateDir,
          region: 'eu-west',
          country: 'DE',
          askingPricePerGpuHourUsd: '2.00',
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
      await agent.start()
      agents.push(agent)
    }
  })

  after(async () => {
    for (const agent of agents) await agent.stop()
    await coordinator.stop()
    await store.close()
    for (const dir of stateDirs) rmSync(dir, { recursive: true, force: true })
  })

  it('every pair of workers gets a measured round trip that placement snapshots read', async () => {
    await eventually(() => coordinator.rtt.measuredPairs === 3, 'three measured pairs', 15_000)
    const ids = agents.map((agent) => agent.deviceId!)
    const snapshot = coordinator.index.placementSnapshot()
    for (const [a, b] of [
      [ids[0]!, ids[1]!],
      [ids[1]!, ids[2]!],
      [ids[2]!, ids[0]!],
    ] as const) {
      const rtt = snapshot.roundTripMs(a, b)
      assert.ok(rtt !== undefined && rtt > 0 && rtt < 500, `${a}-${b}: ${rtt}`)
      assert.equal(snapshot.roundTripMs(b, a), rtt, 'either direction')
    }
  })

  it('ignores reports that answer no probe of this process', async () => {
    const [first, second] = agents.map((agent) => agent.deviceId!)
    const before = coordinator.rtt.roundTripMs(first!, second!)
    coordinator.rtt.onRttReport(first!, {
      type: 'rtt_report',
      probeId: 'never-sent',
      results: [{ deviceId: second!, rttMs: 12_345 }],
    })
    assert.equal(coordinator.rtt.roundTripMs(first!, second!), before)
  })
})
