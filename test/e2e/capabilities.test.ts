import assert from 'node:assert/strict'
import { type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, unlinkSync } from 'node:fs'
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
import { removeClusterNodesOf } from '@gpumesh/worker'

// Capabilities with real workers, each on its own test host: a worker whose wireguard-go does not exist is
// never given a cluster node (it is not even on offer, and a refusal says why); a worker that loses
// wireguard-go while a cluster runs on it (its supplier removed the binary) loses the capability at its next
// self-test, its node is replaced by a capable machine, and the cluster is ready again with real Ray.

const repoRoot = resolve(import.meta.dirname, '../..')
const cli = join(repoRoot, 'packages/cli/src/main.ts')
const python = join(repoRoot, '.venv/bin/python')
const usable = process.getuid?.() === 0 && existsSync(python)
const wireguardGo = ['/usr/bin/wireguard-go', '/usr/sbin/wireguard-go'].find((path) => existsSync(path))

describe(
  'capabilities of real workers',
  {
    // Under CI every prerequisite is installed by .ci/run: a missing one fails rather than skips.
    skip:
      usable && wireguardGo
        ? false
        : process.env['CI']
          ? false
          : 'needs root, wireguard-go and .venv with Ray (bash .ci/run installs them)',
  },
  () => {
    let network: TestNetwork
    let coordinatorHost: TestHost
    let workerHosts: TestHost[]
    let baseUrl: string
    let api: HostApi
    let renterKey: string
    let supplierKey: string
    const workDir = mkdtempSync(join(tmpdir(), 'gpumesh-capabilities-'))
    // The wireguard-go worker 1 runs: a link its supplier can remove while the agent runs.
    const removableBin = join(workDir, 'bin')
    const removableWireguardGo = join(removableBin, 'wireguard-go')
    const workers: ChildProcess[] = []
    const deviceOf: string[] = []
    const clusterIds: string[] = []
    const cluster = (id: string) => api(`/v1/clusters/${id}`, { key: renterKey }).body

    before(async () => {
      assert.ok(usable && wireguardGo, 'root, wireguard-go and the managed Python are installed')
      mkdirSync(removableBin, { recursive: true })
      symlinkSync(wireguardGo!, removableWireguardGo)
      network = createTestNetwork(['coord', 'w0', 'w1', 'w2', 'w3'])
      coordinatorHost = network.hosts[0]!
      workerHosts = network.hosts.slice(1)
      baseUrl = await startCoordinatorOnHost(network, coordinatorHost, {
        cli,
        workDir,
        settings: {
          heartbeatIntervalMs: 500,
          heartbeatFlushIntervalMs: 200,
          verificationEnabled: false,
          clusterBillingEnabled: false,
          clusterProvisionTimeoutMs: 300_000,
          clusterNodeJoinTimeoutMs: 180_000,
        },
      })
      api = hostApi(network, coordinatorHost, baseUrl)
      supplierKey = api('/v1/accounts', { method: 'POST', body: { name: 'supplier', roles: ['supplier'] } })
        .body.apiKey.key
      renterKey = api('/v1/accounts', { method: 'POST', body: { name: 'renter', roles: ['renter'] } }).body
        .apiKey.key
      // Worker 0 is the cheapest, so placement would take it first if it could.
      const wireguardOf = ['/nonexistent/wireguard-go', removableWireguardGo, 'wireguard-go', 'wireguard-go']
      for (let index = 0; index < 4; index += 1) {
        const token = api('/v1/enrollment-tokens', { method: 'POST', body: {}, key: supplierKey }).body.token
        const stateDir = join(workDir, `worker-${index}`)
        workers.push(
          network.spawnIn(
            workerHosts[index]!,
            process.execPath,
            workerStartArgs({
              cli,
              coordinatorUrl: baseUrl,
              stateDir,
              region: 'e2e',
              country: 'DE',
              pricePerGpuHour: (0.1 * (index + 1)).toFixed(2),
              token,
              extraArgs: [
                '--speedtest-interval-ms',
                '0',
                '--cluster-node-cpus',
                '1',
                '--ray-object-store-memory-bytes',
                String(100 * 1024 * 1024),
                '--netns-mount-namespace',
                `/proc/${process.pid}/ns/mnt`,
                '--wireguard-go',
                wireguardOf[index]!,
                '--self-test-interval-ms',
                '2000',
              ],
            }),
            { logPrefix: `worker-${index}` },
          ),
        )
      }
      await eventually(
        () => {
          const devices = api('/v1/devices', { key: supplierKey }).body.devices as any[]
          return devices.length === 4 && devices.every((device) => device.capabilities !== null)
        },
        'four workers self-tested',
        120_000,
      )
      for (let index = 0; index < 4; index += 1)
        deviceOf[index] = JSON.parse(
          readFileSync(join(workDir, `worker-${index}`, 'enrollment.json'), 'utf8'),
        ).deviceId
    })

    after(async () => {
      for (const child of workers) child.kill('SIGKILL')
      for (const deviceId of deviceOf) await removeClusterNodesOf(deviceId, clusterIds)
      await network?.destroy()
      rmSync(workDir, { recursive: true, force: true })
    })

    it('never gives a node to the worker without wireguard-go, and says why in device ls', async () => {
      const device = api(`/v1/devices/${deviceOf[0]}`, { key: supplierKey }).body
      assert.equal(device.capabilities.clusterNodes.available, false)
      assert.match(
        device.capabilities.clusterNodes.reason,
        /wireguard-go: \/nonexistent\/wireguard-go not found/,
      )
      assert.match(device.capabilities.clusterNodes.fix, /apt-get install/)
      await eventually(() => api('/v1/offers?region=e2e').body.total === 3, 'three machines on offer', 30_000)
      const offered = (api('/v1/offers?region=e2e').body.offers as any[]).map((offer) => offer.deviceId)
      assert.ok(!offered.includes(deviceOf[0]))
      const refused = api('/v1/clusters/dry-run', {
        method: 'POST',
        key: renterKey,
        body: { nodes: 4, verifiedOnly: false },
      })
      assert.match(refused.body.detail, /1 cannot run cluster nodes: wireguard-go/)
    })

    it('replaces the node of a worker that loses wireguard-go, and the cluster is ready again', async () => {
      const created = api('/v1/clusters', {
        method: 'POST',
        key: renterKey,
        body: { nodes: 2, verifiedOnly: false, durationHours: 1 },
      })
      assert.equal(created.status, 201, JSON.stringify(created.body))
      clusterIds.push(created.body.id)
      const placed = (created.body.nodes as any[]).map((node) => node.deviceId).sort()
      // The two cheapest that can run a node: workers 1 and 2, never worker 0.
      assert.deepEqual(placed, [deviceOf[1], deviceOf[2]].sort())
      await eventually(
        () => {
          const view = cluster(created.body.id)
          assert.notEqual(view.state, 'failed', view.stateReason)
          return view.state === 'ready'
        },
        'the cluster ready',
        240_000,
      )

      // The supplier of worker 1 removes wireguard-go; its next self-test notices.
      unlinkSync(removableWireguardGo)
      const recovered = await eventually(
        () => {
          const view = cluster(created.body.id)
          assert.notEqual(view.state, 'failed', view.stateReason)
          const replacement = view.nodes.find((node: any) => node.deviceId === deviceOf[3])
          return view.state === 'ready' && replacement?.phase === 'ray_joined' && view
        },
        'the replacement in Ray and the cluster ready',
        300_000,
      )
      const lost = recovered.nodes.find((node: any) => node.deviceId === deviceOf[1])
      assert.equal(lost.phase, 'lost')
      assert.match(lost.phaseReason, /can no longer run cluster nodes: wireguard-go: .*not found/)
      assert.equal(recovered.nodes.filter((node: any) => node.phase === 'ray_joined').length, 2)
      const device = api(`/v1/devices/${deviceOf[1]}`, { key: supplierKey }).body
      assert.equal(device.capabilities.clusterNodes.available, false)

      api(`/v1/clusters/${created.body.id}/terminate`, { method: 'POST', key: renterKey })
      await eventually(() => cluster(created.body.id).state === 'terminated', 'terminated', 60_000)
    })
  },
)
