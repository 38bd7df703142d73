import assert from 'node:assert/strict'
import { execFileSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { parseGmtToUnits } from '@gpumesh/core'
import { clusterNamespaceName, meshInterfaceName } from '@gpumesh/mesh'
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

// Clusters end to end on this machine: a coordinator and four worker agents, each on its own test host.
// A renter creates a 3-node cluster; real wireguard-go interfaces join the nodes in per-cluster namespaces;
// a real Ray cluster forms over the overlay addresses; a job submitted with the CLI runs tasks on every
// node and its output reaches the CLI. One worker's machine dies mid-job: the fourth replaces it and Ray
// reports three nodes again, while the job carries on. A second cluster cannot reach the first, and
// terminating both leaves no process, interface or namespace behind. The renter pays from GMT deposited
// beforehand, and after the end the renter's, supplier's and fee balances are as computed here by hand.

const repoRoot = resolve(import.meta.dirname, '../..')
const cli = join(repoRoot, 'packages/cli/src/main.ts')
const python = join(repoRoot, '.venv/bin/python')
const usable = process.getuid?.() === 0 && existsSync(python)
const workerCount = 4

const trainScript = `
import json, os, socket, sys, time
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from helpers import describe

ray.init(logging_level='ERROR')

@ray.remote(num_cpus=1)
def where(step):
    return describe(step, ray.util.get_node_ip_address())

def alive():
    return sorted(n['NodeManagerAddress'] for n in ray.nodes() if n['Alive'])

first = alive()
pinned = [where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n['NodeID'], soft=False)).remote(0)
          for n in ray.nodes() if n['Alive']]
print('TASKS-ON ' + json.dumps(sorted(ray.get(pinned, timeout=120))), flush=True)
print('READY-FOR-FAILURE ' + json.dumps(first), flush=True)

# Keep working until Ray shows a node replaced (a new address in a set of three), or give up.
deadline = time.time() + float(os.environ.get('E2E_RECOVERY_TIMEOUT_S', '240'))
step = 1
while time.time() < deadline:
    done = ray.get([where.options(max_retries=5).remote(step) for _ in range(3)], timeout=120)
    step += 1
    now = alive()
    if len(now) == 3 and set(now) != set(first):
        print('RECOVERED ' + json.dumps(now), flush=True)
        sys.exit(0)
    time.sleep(0.5)
print('NO-RECOVERY ' + json.dumps(alive()), flush=True)
sys.exit(4)
`

const helpersModule = `
def describe(step, address):
    return address
`

describe(
  'clusters across test hosts',
  { skip: usable ? false : 'needs root and .venv with Ray (scripts/setup-python.sh)' },
  () => {
    let network: TestNetwork
    let coordinatorHost: TestHost
    let workerHosts: TestHost[]
    let baseUrl: string
    let supplierKey: string
    let renterKey: string
    let operatorKey: string
    const depositGmt = '2000'
    const workDir = mkdtempSync(join(tmpdir(), 'gpumesh-clusters-'))
    const workers = new Map<number, ChildProcess>()
    const deviceOfHost = new Map<number, string>()
    const clusterIds: string[] = []
    let clusterA: any
    let jobProcess: ChildProcess | undefined
    let jobOutput = ''
    let killedHost: number | undefined
    let clientInterface: string | undefined

    let api: HostApi
    const cluster = (id: string) => api(`/v1/clusters/${id}`, { key: renterKey }).body

    const startWorker = (index: number, token?: string) => {
      const child = network.spawnIn(
        workerHosts[index]!,
        process.execPath,
        workerStartArgs({
          cli,
          coordinatorUrl: baseUrl,
          stateDir: join(workDir, `worker-${index}`),
          region: 'e2e',
          country: 'DE',
          // Multiples of 0.36 USD an hour: at 100 GMT per USD, a whole number of units per millisecond
          pricePerGpuHour: (0.36 * (index + 1)).toFixed(2),
          token,
          extraArgs: [
            '--speedtest-interval-ms',
            '0',
            '--cluster-node-cpus',
            '2',
            '--ray-object-store-memory-bytes',
            String(100 * 1024 * 1024),
            '--netns-mount-namespace',
            `/proc/${process.pid}/ns/mnt`,
          ],
        }),
        { logPrefix: `worker-${index}` },
      )
      workers.set(index, child)
      return child
    }

    /** What the death of a worker's machine looks like: the agent and everything it ran, killed at once. */
    const killMachine = async (index: number) => {
      workers.get(index)?.kill('SIGKILL')
      await removeClusterNodesOf(deviceOfHost.get(index)!, clusterIds)
    }

    before(async () => {
      network = createTestNetwork([
        'coord',
        ...Array.from({ length: workerCount }, (_, index) => `w${index}`),
      ])
      coordinatorHost = network.hosts[0]!
      workerHosts = network.hosts.slice(1)
      baseUrl = await startCoordinatorOnHost(network, coordinatorHost, {
        cli,
        workDir,
        settings: {
          heartbeatIntervalMs: 500,
          missedHeartbeatsBeforeOffline: 3,
          heartbeatFlushIntervalMs: 200,
          verificationEnabled: false,
          clusterProvisionTimeoutMs: 240_000,
          clusterNodeJoinTimeoutMs: 180_000,
          clusterBillingEnabled: true,
          billingIntervalMs: 2_000,
          gmtPerUsd: '100',
          platformFeeBasisPoints: 1_000,
          faucetMaxClaimGmt: '2000',
        },
      })
      api = hostApi(network, coordinatorHost, baseUrl)
      supplierKey = api('/v1/accounts', { method: 'POST', body: { name: 'supplier', roles: ['supplier'] } })
        .body.apiKey.key
      renterKey = api('/v1/accounts', { method: 'POST', body: { name: 'renter', roles: ['renter'] } }).body
        .apiKey.key
      // The renter deposits: GMT from the development faucet, which the operator funds.
      operatorKey = readFileSync(join(workDir, 'coordinator', 'operator.key'), 'utf8').trim()
      const funded = api('/v1/operator/faucet', {
        method: 'POST',
        key: operatorKey,
        body: { amountGmt: '5000' },
      })
      assert.equal(funded.status, 200)
      const deposit = api('/v1/wallet/faucet', {
        method: 'POST',
        key: renterKey,
        body: { amountGmt: depositGmt },
      })
      assert.equal(deposit.status, 200)
      for (let index = 0; index < workerCount; index += 1) {
        const token = api('/v1/enrollment-tokens', { method: 'POST', body: {}, key: supplierKey }).body.token
        startWorker(index, token)
      }
      await eventually(
        () => api('/v1/offers?region=e2e&limit=10').body.total === workerCount,
        'four machines on offer',
        60_000,
      )
      for (let index = 0; index < workerCount; index += 1) {
        const enrollment = JSON.parse(
          readFileSync(join(workDir, `worker-${index}`, 'enrollment.json'), 'utf8'),
        )
        deviceOfHost.set(index, enrollment.deviceId)
      }
    })

    after(async () => {
      jobProcess?.kill('SIGKILL')
      if (clientInterface) {
        // wg-quick's wireguard-go, if the test stopped before taking the interface down, by its own name
        for (const line of execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' }).split('\n')) {
          const [pid, ...args] = line.trim().split(/\s+/)
          if (args[0]?.endsWith('wireguard-go') && args.includes(clientInterface))
            process.kill(Number(pid), 'SIGKILL')
        }
      }
      for (const child of workers.values()) child.kill('SIGKILL')
      // Safety net, by this run's own names only: every cluster node any of our devices may have run.
      for (const deviceId of deviceOfHost.values()) await removeClusterNodesOf(deviceId, clusterIds)
      await network?.destroy()
      rmSync(workDir, { recursive: true, force: true })
    })

    it('brings up a 3-node cluster: WireGuard mesh, then Ray reporting every node alive', async () => {
      const created = api('/v1/clusters', {
        method: 'POST',
        key: renterKey,
        body: { name: 'e2e-a', nodes: 3, gpuModel: 'cpu', verifiedOnly: false, durationHours: 1 },
      })
      assert.equal(created.status, 201, JSON.stringify(created.body))
      clusterIds.push(created.body.id)
      clusterA = await eventually(
        () => {
          const view = cluster(created.body.id)
          assert.notEqual(view.state, 'failed', view.stateReason)
          return view.state === 'ready' && view
        },
        'the cluster to be ready',
        240_000,
      )
      const nodes = clusterA.nodes.filter((node: any) => node.phase === 'ray_joined')
      assert.equal(nodes.length, 3)
      assert.equal(new Set(nodes.map((node: any) => node.deviceId)).size, 3)
      assert.equal(nodes.filter((node: any) => node.role === 'head').length, 1)
      for (const node of nodes) {
        const namespace = clusterNamespaceName(clusterA.id, node.deviceId)
        const link = execFileSync('ip', ['-n', namespace, '-o', 'addr', 'show'], { encoding: 'utf8' })
        assert.match(
          link,
          new RegExp(
            `${meshInterfaceName(clusterA.id, node.deviceId)}\\s+inet ${node.overlayAddress.replaceAll('.', '\\.')}/24`,
          ),
        )
      }
      const events = api(`/v1/clusters/${clusterA.id}/events`, { key: renterKey }).body.events as any[]
      // Issue 25 item 4: one event per fact, in order (each Ray started, then joined, then the cluster ready).
      for (const kind of ['node_reserved', 'node_mesh_up', 'node_ray_started', 'node_ray_joined'])
        assert.equal(events.filter((event) => event.kind === kind).length, 3, kind)
      const ready = events.findIndex(
        (event) => event.kind === 'state_changed' && /^ready/.test(event.message),
      )
      for (const node of nodes) {
        const started = events.findIndex((e) => e.kind === 'node_ray_started' && e.deviceId === node.deviceId)
        const joined = events.findIndex((e) => e.kind === 'node_ray_joined' && e.deviceId === node.deviceId)
        assert.ok(
          0 <= started && started < joined && joined < ready,
          JSON.stringify(events.map((e) => e.kind)),
        )
      }
    })

    it('runs Ray as an unprivileged user inside the cluster namespace', () => {
      const head = clusterA.nodes.find((node: any) => node.role === 'head')
      const tempDir = `/tmp/${clusterNamespaceName(clusterA.id, head.deviceId)}`
      const uids = new Set<string>()
      for (const entry of readdirSync('/proc')) {
        if (!/^\d+$/.test(entry)) continue
        try {
          if (!readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(tempDir)) continue
          const uid = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${entry}/status`, 'utf8'))?.[1]
          if (uid) uids.add(uid)
        } catch {
          // exited while we looked
        }
      }
      assert.ok(uids.size > 0, 'Ray processes of the head were found')
      assert.deepEqual([...uids], ['65534'])
    })

    it('a job submitted with the CLI runs tasks on every node and its output reaches the CLI', async () => {
      const jobDir = join(workDir, 'job')
      mkdirSync(jobDir, { recursive: true })
      writeFileSync(join(jobDir, 'train.py'), trainScript)
      writeFileSync(join(jobDir, 'helpers.py'), helpersModule)
      jobProcess = network.spawnIn(
        coordinatorHost,
        process.execPath,
        [cli, 'job', 'submit', '--cluster', clusterA.id, '--working-dir', jobDir, '--', 'python', 'train.py'],
        {
          env: { ...process.env, GPUMESH_COORDINATOR: baseUrl, GPUMESH_API_KEY: renterKey },
          logPrefix: 'job',
        },
      )
      jobProcess.stdout!.on('data', (chunk: Buffer) => (jobOutput += chunk.toString()))
      jobProcess.stderr!.on('data', (chunk: Buffer) => (jobOutput += chunk.toString()))
      const tasksLine = await eventually(
        () => /TASKS-ON (.*)/.exec(jobOutput)?.[1],
        'the job to report where its tasks ran',
        180_000,
      )
      const addresses = clusterA.nodes.map((node: any) => node.overlayAddress).sort()
      assert.deepEqual(JSON.parse(tasksLine), addresses)
      await eventually(() => jobOutput.includes('READY-FOR-FAILURE'), 'the job to reach its second phase')
    })

    it("a worker's machine dies mid-job: the fourth replaces it, Ray has three nodes again, the job survives", async () => {
      const head = clusterA.nodes.find((node: any) => node.role === 'head')
      const victim = clusterA.nodes.find((node: any) => node.role !== 'head')
      const victimHost = [...deviceOfHost].find(([, deviceId]) => deviceId === victim.deviceId)![0]
      const spareHost = [...deviceOfHost].find(
        ([, deviceId]) => !clusterA.nodes.some((node: any) => node.deviceId === deviceId),
      )!
      killedHost = victimHost
      await killMachine(victimHost)
      const recovered = await eventually(
        () => {
          const view = cluster(clusterA.id)
          const active = view.nodes.filter((node: any) => node.phase === 'ray_joined')
          const victimGone = !active.some((node: any) => node.deviceId === victim.deviceId)
          return view.state === 'ready' && active.length === 3 && victimGone && view
        },
        'the cluster to be ready again with a replacement',
        240_000,
      )
      const active = recovered.nodes.filter((node: any) => node.phase === 'ray_joined')
      assert.ok(
        active.some((node: any) => node.deviceId === spareHost[1]),
        'the spare machine joined',
      )
      assert.ok(!active.some((node: any) => node.deviceId === victim.deviceId))
      assert.equal(active.find((node: any) => node.role === 'head').deviceId, head.deviceId)
      const lost = recovered.nodes.find((node: any) => node.deviceId === victim.deviceId)
      assert.equal(lost.phase, 'lost')
      const events = api(`/v1/clusters/${clusterA.id}/events`, { key: renterKey }).body.events as any[]
      assert.ok(events.some((event) => event.kind === 'node_lost' && event.deviceId === victim.deviceId))
      assert.ok(events.some((event) => event.kind === 'node_reserved' && event.deviceId === spareHost[1]))

      const exitCode = await new Promise<number | null>((resolveExit) => {
        if (jobProcess!.exitCode !== null) return resolveExit(jobProcess!.exitCode)
        jobProcess!.once('exit', (code) => resolveExit(code))
      })
      assert.match(jobOutput, /RECOVERED/)
      assert.equal(exitCode, 0, jobOutput.slice(-2000))
      const jobs = api(`/v1/clusters/${clusterA.id}/jobs`, { key: renterKey }).body.jobs as any[]
      assert.equal(jobs[0].status, 'succeeded')
      assert.equal(jobs[0].exitCode, 0)
    })

    it('a second cluster on the restarted machine cannot reach the first, nor the supplier hosts', async () => {
      startWorker(killedHost!)
      await eventually(
        () => api('/v1/offers?region=e2e&limit=10').body.total === 1,
        'the restarted machine on offer again',
        60_000,
      )
      const created = api('/v1/clusters', {
        method: 'POST',
        key: renterKey,
        body: { name: 'e2e-b', nodes: 1, gpuModel: 'cpu', verifiedOnly: false },
      })
      assert.equal(created.status, 201, JSON.stringify(created.body))
      clusterIds.push(created.body.id)
      const clusterB = await eventually(
        () => {
          const view = cluster(created.body.id)
          assert.notEqual(view.state, 'failed', view.stateReason)
          return view.state === 'ready' && view
        },
        'the second cluster to be ready',
        180_000,
      )
      const nodeB = clusterB.nodes[0]
      const namespaceB = clusterNamespaceName(clusterB.id, nodeB.deviceId)
      const headA = cluster(clusterA.id).nodes.find(
        (node: any) => node.role === 'head' && node.phase !== 'lost',
      )
      const namespaceA = clusterNamespaceName(clusterA.id, headA.deviceId)
      const connect = (namespace: string, host: string, port: number) => {
        const script = `import socket,sys\ntry:\n  socket.create_connection((${JSON.stringify(host)}, ${port}), timeout=3).close(); print('open')\nexcept OSError as e:\n  print('blocked', e)`
        return execFileSync('ip', ['netns', 'exec', namespace, python, '-c', script], {
          encoding: 'utf8',
        }).trim()
      }
      // The control: inside its own cluster, a node reaches the head's Ray port.
      const workerA = cluster(clusterA.id).nodes.find(
        (node: any) => node.role === 'worker' && node.phase === 'ray_joined',
      )
      assert.equal(
        connect(clusterNamespaceName(clusterA.id, workerA.deviceId), headA.overlayAddress, 6379),
        'open',
      )
      assert.match(connect(namespaceB, headA.overlayAddress, 6379), /^blocked/)
      assert.match(connect(namespaceA, nodeB.overlayAddress, 6379), /^blocked/)
      assert.match(connect(namespaceA, coordinatorHost.address, 8080), /^blocked/)
      assert.match(connect(namespaceB, workerHosts[0]!.address, 22), /^blocked/)
    })

    it("the renter's own machine joins the mesh with the generated WireGuard config and reaches Ray's head", async () => {
      const configFile = join(workDir, `gm-${clusterA.id.slice(4, 12)}.conf`)
      clientInterface = `gm-${clusterA.id.slice(4, 12)}`
      const connected = JSON.parse(
        network.execIn(coordinatorHost, process.execPath, [
          cli,
          'cluster',
          'connect',
          clusterA.id,
          '--name',
          'laptop',
          '--out',
          configFile,
          '--json',
          '--coordinator',
          baseUrl,
          '--api-key',
          renterKey,
        ]),
      )
      assert.equal(connected.peers.length, 3)
      const config = readFileSync(configFile, 'utf8')
      assert.match(config, /^PrivateKey = [A-Za-z0-9+/]{43}=$/m)
      assert.ok(
        !JSON.stringify(connected).includes(/^PrivateKey = (.*)$/m.exec(config)![1]!),
        'the private key stayed here',
      )
      const wgQuick = (action: 'up' | 'down') =>
        execFileSync('ip', ['netns', 'exec', coordinatorHost.namespace, 'wg-quick', action, configFile], {
          env: { ...process.env, WG_QUICK_USERSPACE_IMPLEMENTATION: 'wireguard-go' },
          stdio: 'ignore',
        })
      wgQuick('up')
      try {
        const head = connected.rayAddress.split(':')[0]
        const probe = (host: string, port: number) => {
          const script = `import socket\ntry:\n  socket.create_connection((${JSON.stringify(host)}, ${port}), timeout=5).close(); print('open')\nexcept OSError as e:\n  print('blocked', e)`
          return network.execIn(coordinatorHost, python, ['-c', script]).trim()
        }
        await eventually(() => probe(head, 6379) === 'open', "the head's Ray port over the mesh", 30_000)
        const otherCluster = cluster(clusterIds[1]!).nodes[0]
        assert.match(probe(otherCluster.overlayAddress, 6379), /^blocked/, 'not another cluster')
      } finally {
        wgQuick('down')
        clientInterface = undefined
      }
    })

    it('terminating leaves no process, interface or namespace behind', async () => {
      for (const clusterId of clusterIds) {
        const reply = api(`/v1/clusters/${clusterId}/terminate`, { method: 'POST', key: renterKey })
        assert.equal(reply.status, 200)
      }
      for (const clusterId of clusterIds)
        await eventually(() => cluster(clusterId).state === 'terminated', `${clusterId} terminated`, 60_000)
      const namespaces = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
      const processes = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' })
      for (const clusterId of clusterIds) {
        for (const deviceId of deviceOfHost.values()) {
          const namespace = clusterNamespaceName(clusterId, deviceId)
          assert.ok(!namespaces.includes(namespace), `namespace ${namespace} is gone`)
          assert.ok(!processes.includes(`/tmp/${namespace}`), `no Ray process of ${namespace}`)
          assert.ok(!processes.includes(meshInterfaceName(clusterId, deviceId)), 'no wireguard-go left')
          assert.ok(!existsSync(`/var/run/wireguard/${meshInterfaceName(clusterId, deviceId)}.sock`))
        }
      }
      await eventually(
        () => api('/v1/offers?region=e2e&limit=10').body.total === workerCount,
        'every machine back on offer',
      )
    })

    it('charged the renter for what each node served, paid the suppliers and the fee, released the rest', () => {
      // By hand: at 100 GMT per USD a node priced 0.36·i USD an hour costs 10·i units a millisecond, so every
      // interval's charge is a multiple of 10 units and its 10% fee is exact: over the rental, a node costs
      // 10·i × the milliseconds it served, its supplier gets 90% of that and the platform 10%.
      const unitsOf = (gmt: string) => parseGmtToUnits(gmt)!
      let charged = 0n
      for (const clusterId of clusterIds) {
        const view = cluster(clusterId)
        let expected = 0n
        for (const node of view.nodes) {
          const unitsPerMs = BigInt(Math.round(Number(node.pricePerHourUsd) / 0.36)) * 10n
          expected += unitsPerMs * BigInt(node.servedMs)
        }
        assert.ok(expected > 0n, `${clusterId} served`)
        assert.equal(unitsOf(view.billing.chargedGmt), expected, `${clusterId} charged for what it served`)
        assert.equal(view.billing.heldGmt, '0.000000')
        charged += expected
      }
      const wallet = api('/v1/wallet', { key: renterKey }).body
      assert.equal(unitsOf(wallet.balanceGmt), unitsOf(depositGmt) - charged)
      assert.equal(wallet.heldGmt, '0.000000')
      const earnings = api('/v1/earnings', { key: supplierKey }).body
      assert.equal(unitsOf(earnings.uncollectedGmt), (charged * 9n) / 10n)
      const fee = api('/v1/ledger/accounts/platform:fee', { key: operatorKey }).body
      assert.equal(unitsOf(fee.balanceGmt), charged / 10n)
      assert.equal(api('/v1/ledger/verify', { key: operatorKey }).body.ok, true)
    })
  },
)
