import assert from 'node:assert/strict'
import type { ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { after, before, describe, it } from 'node:test'
import {
  createTestNetwork,
  eventually,
  hostApi,
  startCoordinatorOnHost,
  type HostApi,
  type TestHost,
  type TestNetwork,
  workerStartArgs,
} from '@gpumesh/testing'

// The supply side end to end, on real processes and real network namespaces: a coordinator and three
// worker agents, each on its own test host with its own address. Workers enroll and appear in search
// with their hardware; one is killed, goes offline and stops accruing uptime; it restarts as the same device.

const repoRoot = resolve(import.meta.dirname, '../..')
const cli = join(repoRoot, 'packages/cli/src/main.ts')
const sharedCaptures = resolve(repoRoot, '../shared/fixtures/nvidia-smi')
const ownCaptures = join(repoRoot, 'packages/worker/test/fixtures/nvidia-smi')

function captures(): string[] {
  const pick = (dir: string) =>
    readdirSync(dir)
      .filter((name) => name.endsWith('.xml') && !/truncated|missing|many-na/.test(name))
      .sort()
      .map((name) => join(dir, name))
  return existsSync(sharedCaptures) ? pick(sharedCaptures) : pick(ownCaptures)
}

describe(
  'supply side across test hosts',
  { skip: process.getuid?.() !== 0 ? 'needs root for network namespaces' : false },
  () => {
    let network: TestNetwork
    let coordinatorHost: TestHost
    let workerHosts: TestHost[]
    let baseUrl: string
    let supplierKey: string
    const workDir = mkdtempSync(join(tmpdir(), 'gpumesh-e2e-'))
    const workers = new Map<number, ChildProcess>()
    const deviceIds: string[] = []
    const gpuCounts: number[] = []

    let api: HostApi

    const startWorker = (index: number, token?: string) => {
      const host = workerHosts[index]!
      const capture = captures()[index % captures().length]!
      const child = network.spawnIn(
        host,
        process.execPath,
        workerStartArgs({
          cli,
          coordinatorUrl: baseUrl,
          stateDir: join(workDir, `worker-${index}`),
          region: 'e2e',
          country: 'DE',
          pricePerGpuHour: `1.${index}0`,
          token,
          extraArgs: [
            '--nvidia-smi-xml',
            capture,
            // worker 0 runs the speedtest across its test host's link soon after start; the others never
            '--speedtest-interval-ms',
            index === 0 ? '3000' : '0',
          ],
        }),
        { logPrefix: `worker-${index}` },
      )
      workers.set(index, child)
      return child
    }

    before(async () => {
      network = createTestNetwork(['coord', 'w0', 'w1', 'w2'])
      coordinatorHost = network.hosts[0]!
      workerHosts = network.hosts.slice(1)
      baseUrl = await startCoordinatorOnHost(network, coordinatorHost, {
        cli,
        workDir,
        settings: {
          heartbeatIntervalMs: 500,
          missedHeartbeatsBeforeOffline: 3,
          heartbeatFlushIntervalMs: 200,
          // These workers replay saved captures of GPUs this machine does not have, so they could never pass
          // proof-of-compute and would be unlisted; verification has its own tests. This one is about liveness.
          verificationEnabled: false,
        },
      })
      api = hostApi(network, coordinatorHost, baseUrl)
      const signup = api('/v1/accounts', {
        method: 'POST',
        body: { name: 'e2e-supplier', roles: ['supplier'] },
      })
      assert.equal(signup.status, 201)
      supplierKey = signup.body.apiKey.key
    })

    after(async () => {
      await network?.destroy()
      rmSync(workDir, { recursive: true, force: true })
    })

    it('three workers on their own hosts enroll and appear in search with their hardware', async () => {
      for (let index = 0; index < 3; index += 1) {
        const token = api('/v1/enrollment-tokens', {
          method: 'POST',
          body: { label: `w${index}` },
          key: supplierKey,
        })
        assert.equal(token.status, 201)
        startWorker(index, token.body.token)
      }
      const offers = await eventually(
        () => {
          const page = api('/v1/offers?region=e2e&limit=10&sort=price')
          return page.body.total === 3 && page.body.offers
        },
        'three offers',
        60_000,
      )
      const devices = api('/v1/devices', { key: supplierKey }).body.devices as any[]
      assert.equal(devices.length, 3)
      for (let index = 0; index < 3; index += 1) {
        const offer = offers[index]
        assert.equal(offer.pricePerGpuHourUsd, `1.${index}0`)
        const device = devices.find((candidate) => candidate.id === offer.deviceId)
        assert.equal(device.state, 'online')
        assert.equal(device.inventory.probeSource, 'nvidia-smi-xml-file')
        assert.ok(device.inventory.gpus.length > 0)
        assert.equal(offer.gpuCount, device.inventory.gpus.length)
        deviceIds.push(offer.deviceId)
        gpuCounts.push(offer.gpuCount)
      }
      assert.equal(new Set(deviceIds).size, 3)
    })

    it('a worker measures its link to the coordinator and gets a bandwidth tier', async () => {
      const tested = deviceIds.find(
        (id) => api(`/v1/devices/${id}/speedtests`, { key: supplierKey }).body.speedtests?.length > 0,
      )
      const deviceId =
        tested ??
        (await eventually(
          () =>
            deviceIds.find(
              (id) => api(`/v1/devices/${id}/speedtests`, { key: supplierKey }).body.speedtests?.length > 0,
            ),
          'a speedtest result',
          60_000,
        ))
      const [result] = api(`/v1/devices/${deviceId}/speedtests`, { key: supplierKey }).body.speedtests
      assert.ok(result.latencyMs > 0 && result.downloadMbps > 0 && result.uploadMbps > 0)
      assert.equal(
        api(`/v1/devices/${deviceId}`, { key: supplierKey }).body.bandwidthTier,
        result.bandwidthTier,
      )
    })

    it('a killed worker goes offline and its uptime stops growing', async () => {
      const victim = deviceIds[1]!
      const victimIndex = 1
      await eventually(
        () => api(`/v1/devices/${victim}`, { key: supplierKey }).body.uptimeMsTotal > 0,
        'uptime to be recorded',
      )
      workers.get(victimIndex)!.kill('SIGKILL')
      const offline = await eventually(
        () => {
          const device = api(`/v1/devices/${victim}`, { key: supplierKey }).body
          return device.state === 'offline' && device
        },
        'the killed worker to go offline',
        30_000,
      )
      assert.ok(
        ['connection_closed', 'missed_heartbeats'].includes(offline.stateReasonCode),
        offline.stateReasonCode,
      )
      // The uptime it earned up to its last heartbeat is written by the next flush (every 200 ms here);
      // after that it must not grow.
      await new Promise((resolve) => setTimeout(resolve, 600))
      const uptimeAtOffline = api(`/v1/devices/${victim}`, { key: supplierKey }).body.uptimeMsTotal
      // several flush intervals later, the offline device has accrued nothing while the others have
      const other = deviceIds[0]!
      const otherBefore = api(`/v1/devices/${other}`, { key: supplierKey }).body.uptimeMsTotal
      await eventually(
        () => api(`/v1/devices/${other}`, { key: supplierKey }).body.uptimeMsTotal > otherBefore + 1000,
        'a live worker to accrue',
      )
      assert.equal(api(`/v1/devices/${victim}`, { key: supplierKey }).body.uptimeMsTotal, uptimeAtOffline)
      const search = api('/v1/offers?region=e2e')
      assert.equal(search.body.total, 2)
      assert.ok(!search.body.offers.some((offer: any) => offer.deviceId === victim))
    })

    it('the restarted worker comes back online as the same device', async () => {
      const victim = deviceIds[1]!
      startWorker(1) // no token: the machine's saved identity and enrollment are used
      await eventually(
        () => api(`/v1/devices/${victim}`, { key: supplierKey }).body.state === 'online',
        'the worker back online',
        30_000,
      )
      await eventually(() => api('/v1/offers?region=e2e').body.total === 3, 'three offers again', 30_000)
      const devices = api('/v1/devices', { key: supplierKey }).body.devices as any[]
      assert.equal(devices.length, 3)
      assert.deepEqual(devices.map((device) => device.id).sort(), [...deviceIds].sort())
      const events = api(`/v1/devices/${victim}/events`, { key: supplierKey }).body.events as any[]
      assert.deepEqual(
        events.slice(0, 3).map((event) => event.state),
        ['online', 'offline', 'online'],
      )
    })
  },
)
