// Time to a ready cluster through the whole system, next to a bare `ray start` of the same nodes on the
// same hosts in the same run.
//
// One coordinator and four worker agents (the real CLI processes), each on its own test host (network
// namespaces joined by a bridge). For each size (2, 3, 4 nodes) a renter creates a CPU cluster and the run
// follows its events until Ray reports every node alive:
//   placement  request sent → nodes reserved (HTTP, placement over the offer index, the reservation commit)
//   mesh       reserved → the last node's WireGuard interface up (key exchange through the coordinator)
//   ray        last mesh up → ready (head, then workers once Ray reports the head, until every node is alive)
// The cluster is then terminated, and the same hosts run Ray alone ("bare"): a namespace and mesh per node
// made beforehand and not timed, then head, then workers in parallel, until Ray reports every node alive,
// observed the same way (a connected driver polling Ray's node table).
//
// Run as root: node bench/cluster-ready.ts [--sizes 2,3,4] [--runs 1]
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { planMesh, type MeshPlan } from '@gpumesh/mesh'
import {
  createTestNetwork,
  hostApi,
  startCoordinatorOnHost,
  startLineDriver,
  type HostApi,
  type LineDriver,
  type TestNetwork,
} from '@gpumesh/testing'
import { removeClusterNodesOf } from '@gpumesh/worker'

const { values } = parseArgs({
  options: { sizes: { type: 'string', default: '2,3,4' }, runs: { type: 'string', default: '1' } },
})
const sizes = values.sizes.split(',').map(Number)
const runs = Number(values.runs)
const maxSize = Math.max(...sizes)
const repoRoot = new URL('..', import.meta.url).pathname
const cli = join(repoRoot, 'packages/cli/src/main.ts')
const client = join(repoRoot, 'bench/cluster-ready-client.ts')
const driverScript = join(repoRoot, 'test/e2e/mesh-driver.ts')
const python = join(repoRoot, '.venv/bin/python')
if (process.getuid?.() !== 0 || !existsSync(python)) {
  console.error('needs root and .venv with Ray (scripts/setup-python.sh)')
  process.exit(2)
}
const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

type Row = {
  size: number
  placementMs: number
  meshMs: number
  rayMs: number
  totalMs: number
  bareRayMs: number
}
const rows: Row[] = []
const workDir = mkdtempSync(join(tmpdir(), 'gpumesh-ready-'))
const network: TestNetwork = createTestNetwork([
  'coord',
  ...Array.from({ length: maxSize }, (_, i) => `w${i}`),
])
const [coordinator, ...workerHosts] = network.hosts as [(typeof network.hosts)[0], ...typeof network.hosts]
const baseUrl = `http://${coordinator.address}:8080`
const clusterIds: string[] = []
const deviceIds: string[] = []

const inCoordinatorHost = (args: string[]) => network.execIn(coordinator, process.execPath, args)
let hostCall: HostApi
const api = (path: string, method = 'GET', key?: string, body?: unknown): any =>
  hostCall(path, { method, ...(key ? { key } : {}), ...(body === undefined ? {} : { body }) }).body
const waitFor = async (check: () => boolean, what: string, timeoutMs = 120_000) => {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(250)
  }
}

/** Head first, then the workers at once; resolves when a driver connected to the head sees every node. */
async function bareRay(drivers: LineDriver[], plans: Map<string, MeshPlan>, run: string): Promise<number> {
  const head = plans.get(drivers[0]!.host.name)!
  const config = (driver: LineDriver) => {
    const plan = plans.get(driver.host.name)!
    return {
      pythonPath: python,
      namespace: plan.namespace,
      nodeAddress: plan.overlayAddress,
      gcsPort: 6379,
      ...(plan === head ? {} : { headAddress: head.overlayAddress }),
      numCpus: 2,
      numGpus: 0,
      tempDir: `/tmp/gmb-${network.runId}-${driver.host.name}-${run}`,
      objectStoreMemoryBytes: 100 * 1024 * 1024,
    }
  }
  const watcher = `import ray, sys, time
ray.init(address='${head.overlayAddress}:6379', logging_level='ERROR')
while sum(1 for n in ray.nodes() if n['Alive']) < ${drivers.length}: time.sleep(0.05)
print('all alive')`
  const started = performance.now()
  await drivers[0]!.ask({ cmd: 'ray-start', clusterId: run, ray: config(drivers[0]!) })
  const watching = new Promise<void>((resolve, reject) => {
    const child = network.spawnIn(drivers[0]!.host, 'ip', [
      'netns',
      'exec',
      head.namespace,
      python,
      '-c',
      watcher,
    ])
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`watcher exited ${code}`))))
  })
  await Promise.all(
    drivers.slice(1).map((driver) => driver.ask({ cmd: 'ray-start', clusterId: run, ray: config(driver) })),
  )
  await watching
  return performance.now() - started
}

try {
  await startCoordinatorOnHost(network, coordinator, {
    cli,
    workDir,
    settings: { heartbeatIntervalMs: 1000, verificationEnabled: false, clusterBillingEnabled: false },
  })
  hostCall = hostApi(network, coordinator, baseUrl)
  const supplierKey = api('/v1/accounts', 'POST', undefined, { name: 'supplier', roles: ['supplier'] }).apiKey
    .key
  const renterKey = api('/v1/accounts', 'POST', undefined, { name: 'renter', roles: ['renter'] }).apiKey.key
  workerHosts.forEach((host, index) => {
    const token = api('/v1/enrollment-tokens', 'POST', supplierKey, {}).token
    network.spawnIn(host, process.execPath, [
      cli,
      'worker',
      'start',
      '--coordinator',
      baseUrl,
      '--token',
      token,
      '--state-dir',
      join(workDir, `worker-${index}`),
      '--region',
      'bench',
      '--country',
      'DE',
      '--price-per-gpu-hour',
      '0.50',
      '--speedtest-interval-ms',
      '0',
      '--cluster-node-cpus',
      '2',
      '--ray-object-store-memory-bytes',
      String(100 * 1024 * 1024),
      '--netns-mount-namespace',
      `/proc/${process.pid}/ns/mnt`,
      '--log-level',
      'warn',
    ])
  })
  await waitFor(() => api('/v1/offers?region=bench').total === maxSize, 'the workers on offer')
  for (let index = 0; index < maxSize; index += 1)
    deviceIds.push(
      JSON.parse(readFileSync(join(workDir, `worker-${index}`, 'enrollment.json'), 'utf8')).deviceId,
    )

  for (let run = 0; run < runs; run += 1) {
    for (const size of sizes) {
      const timeline = JSON.parse(inCoordinatorHost([client, baseUrl, renterKey, String(size)])) as {
        clusterId: string
        requestedAtMs: number
        events: { atMs: number; kind: string; message: string }[]
      }
      clusterIds.push(timeline.clusterId)
      const at = (kind: string) =>
        timeline.events.filter((event) => event.kind === kind).map((event) => event.atMs)
      const ready = timeline.events.findLast((event) => event.kind === 'state_changed')!
      if (!ready.message.startsWith('ready'))
        throw new Error(`cluster did not become ready: ${ready.message}`)
      const reservedAtMs = at('created')[0]!
      const meshUpAtMs = Math.max(...at('node_mesh_up'))
      api(`/v1/clusters/${timeline.clusterId}/terminate`, 'POST', renterKey)
      await waitFor(
        () => api(`/v1/clusters/${timeline.clusterId}`, 'GET', renterKey).state === 'terminated',
        'termination',
      ).catch((error: unknown) => {
        console.error(JSON.stringify(api(`/v1/clusters/${timeline.clusterId}`, 'GET', renterKey)))
        console.error(JSON.stringify(api(`/v1/clusters/${timeline.clusterId}/events`, 'GET', renterKey)))
        throw error
      })
      await waitFor(() => api('/v1/offers?region=bench').total === maxSize, 'the workers back on offer')

      // Bare Ray on the same hosts: namespaces and mesh made first (not timed), then Ray alone.
      const drivers = workerHosts.slice(0, size).map((host) => startLineDriver(network, host, driverScript))
      const bareId = `cls_bare_${run}_${size}_${network.runId}`
      try {
        const members = await Promise.all(
          drivers.map(async (driver) => ({
            deviceId: driver.host.name,
            publicKey: (await driver.ask({ cmd: 'key', clusterId: bareId })).publicKey,
            endpoint: `${driver.host.address}:51850`,
          })),
        )
        const plans = planMesh(bareId, 300 + size, members, 51_850)
        await Promise.all(
          drivers.map((driver) =>
            driver.ask({
              cmd: 'start',
              clusterId: bareId,
              plan: plans.get(driver.host.name),
              keyDir: workDir,
              netnsMountNamespace: `/proc/${process.pid}/ns/mnt`,
            }),
          ),
        )
        const bareRayMs = await bareRay(drivers, plans, bareId)
        await Promise.all(
          [...drivers].reverse().map((driver) => driver.ask({ cmd: 'ray-stop', clusterId: bareId })),
        )
        await Promise.all(drivers.map((driver) => driver.ask({ cmd: 'stop', clusterId: bareId })))
        rows.push({
          size,
          placementMs: reservedAtMs - timeline.requestedAtMs,
          meshMs: meshUpAtMs - reservedAtMs,
          rayMs: ready.atMs - meshUpAtMs,
          totalMs: ready.atMs - timeline.requestedAtMs,
          bareRayMs,
        })
      } finally {
        for (const driver of drivers) driver.child.stdin?.end()
        await sleep(1_000)
      }
    }
  }
} finally {
  await network.destroy()
  for (const deviceId of deviceIds) await removeClusterNodesOf(deviceId, clusterIds)
  rmSync(workDir, { recursive: true, force: true })
}

console.log(
  `time to a ready cluster (request → Ray reports every node alive), 2 cores, ${runs} run(s) per size`,
)
console.log('nodes  placement      mesh       ray     total   bare ray start   gpumesh added')
for (const row of rows) {
  console.log(
    `${String(row.size).padStart(5)} ${`${row.placementMs} ms`.padStart(10)} ${seconds(row.meshMs).padStart(9)} ${seconds(row.rayMs).padStart(9)} ${seconds(row.totalMs).padStart(9)} ${seconds(row.bareRayMs).padStart(16)} ${seconds(row.totalMs - row.bareRayMs).padStart(15)}`,
  )
}
