// Time to a ready cluster, from the building blocks that exist today (placement, wireguard-go mesh, Ray),
// next to a bare `ray start` of the same nodes in the same namespaces, in the same run.
//
// For each size (2, 3, 4 nodes) it creates that many test hosts (network namespaces joined by a bridge), then:
//   placement  placeCluster over a 100,000-device snapshot (pure, in process)
//   mesh       each host's driver makes its WireGuard key and brings up its interface in the cluster namespace
//   ray        head, then workers (in parallel), until Ray reports every node alive
// and then, after tearing Ray down, the same Ray start again with no gpumesh work before it ("bare").
// The coordinator <-> worker messaging that will drive these steps is not built yet, so its cost is not here.
//
// Run as root: node bench/cluster-ready.ts [--sizes 2,3,4]
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { planMesh, type MeshPlan } from '@gpumesh/mesh'
import { placeCluster, type NodeCandidate } from '@gpumesh/scheduler'
import { createTestNetwork, startLineDriver, type LineDriver, type TestNetwork } from '@gpumesh/testing'
import { aliveRayNodes } from '@gpumesh/worker'

const { values } = parseArgs({ options: { sizes: { type: 'string', default: '2,3,4' } } })
const sizes = values.sizes.split(',').map(Number)
const driverScript = new URL('../test/e2e/mesh-driver.ts', import.meta.url).pathname
const python = new URL('../.venv/bin/python', import.meta.url).pathname
if (process.getuid?.() !== 0 || !existsSync(python)) {
  console.error('needs root and .venv with Ray (scripts/setup-python.sh)')
  process.exit(2)
}
const gcsPort = 6390
const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`

const supply: NodeCandidate[] = Array.from({ length: 100_000 }, (_, index) => ({
  deviceId: `dev_${index}`,
  supplierAccountId: 'acc',
  online: true,
  verified: true,
  reserved: false,
  gpuModel: 'cpu',
  gpuCount: 0,
  vramMibPerGpu: 0,
  fp16TflopsPerGpu: 0,
  cpuCores: 8,
  memoryMib: 32_768,
  region: ['eu-west', 'us-east', 'ap-south'][index % 3]!,
  country: ['DE', 'US', 'IN'][index % 3]!,
  bandwidthRank: 3,
  pricePerGpuHourMicroUsd: BigInt(100_000 + (index % 997) * 1000),
  reliability: 0.9 + (index % 10) / 100,
}))
const snapshot = { nodes: supply, roundTripMs: () => undefined }
placeCluster(snapshot, { nodeCount: 2, gpusPerNode: 0 }) // sorts the snapshot once, as a long-lived coordinator would have

type Row = { size: number; placementMs: number; meshMs: number; rayMs: number; bareRayMs: number }
const rows: Row[] = []

for (const size of sizes) {
  let network: TestNetwork | undefined
  const drivers: LineDriver[] = []
  const keyDir = mkdtempSync(join(tmpdir(), 'gpumesh-ready-'))
  let plans: Map<string, MeshPlan> | undefined
  const clusterId = `cls_ready_${size}_${Date.now().toString(36)}`
  const rayConfig = (host: string, plan: MeshPlan, head: MeshPlan, run: string) => ({
    pythonPath: python,
    namespace: plan.namespace,
    nodeAddress: plan.overlayAddress,
    gcsPort,
    ...(plan === head ? {} : { headAddress: head.overlayAddress }),
    numCpus: 1,
    numGpus: 0,
    tempDir: `/tmp/gmr-${network!.runId}-${host}-${run}`,
    objectStoreMemoryBytes: 80 * 1024 * 1024,
  })
  const startRay = async (run: string) => {
    const names = network!.hosts.map((host) => host.name)
    const head = plans!.get(names[0]!)!
    await drivers[0]!.ask({ cmd: 'ray-start', clusterId, ray: rayConfig(names[0]!, head, head, run) })
    await Promise.all(
      drivers.slice(1).map((driver, index) =>
        driver.ask({
          cmd: 'ray-start',
          clusterId,
          ray: rayConfig(names[index + 1]!, plans!.get(names[index + 1]!)!, head, run),
        }),
      ),
    )
    while ((await aliveRayNodes(python, head.namespace, head.overlayAddress, gcsPort)) < size) {
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }
  const stopRay = () =>
    Promise.all([...drivers].reverse().map((driver) => driver.ask({ cmd: 'ray-stop', clusterId })))
  try {
    network = createTestNetwork(Array.from({ length: size }, (_, index) => `n${index}`))
    for (const host of network.hosts) drivers.push(startLineDriver(network, host, driverScript))

    let started = performance.now()
    const placed = placeCluster(snapshot, { nodeCount: size, gpusPerNode: 0, region: 'eu-west' })
    if (!placed.ok) throw new Error('placement failed')
    const placementMs = performance.now() - started

    started = performance.now()
    const members = await Promise.all(
      drivers.map(async (driver) => {
        const { publicKey } = await driver.ask({ cmd: 'key', clusterId })
        return { deviceId: driver.host.name, publicKey, endpoint: `${driver.host.address}:51840` }
      }),
    )
    plans = planMesh(clusterId, 40 + size, members, 51_840)
    await Promise.all(
      drivers.map((driver) =>
        driver.ask({
          cmd: 'start',
          clusterId,
          plan: plans!.get(driver.host.name),
          keyDir,
          netnsMountNamespace: `/proc/${process.pid}/ns/mnt`,
        }),
      ),
    )
    const meshMs = performance.now() - started

    started = performance.now()
    await startRay('a')
    const rayMs = performance.now() - started
    await stopRay()

    started = performance.now()
    await startRay('b')
    const bareRayMs = performance.now() - started
    await stopRay()
    rows.push({ size, placementMs, meshMs, rayMs, bareRayMs })
  } finally {
    for (const driver of drivers) driver.child.stdin?.end()
    await new Promise((resolve) => setTimeout(resolve, 1_500))
    await network?.destroy()
    rmSync(keyDir, { recursive: true, force: true })
  }
}

console.log('time to a ready cluster (Ray reports every node alive), 2 cores, one run per size')
console.log('nodes  placement   mesh      ray       total     bare ray start   gpumesh added')
for (const row of rows) {
  const total = row.placementMs + row.meshMs + row.rayMs
  console.log(
    `${String(row.size).padStart(5)}  ${`${row.placementMs.toFixed(1)} ms`.padStart(9)} ${seconds(row.meshMs).padStart(8)} ${seconds(row.rayMs).padStart(8)} ${seconds(total).padStart(9)} ${seconds(row.bareRayMs).padStart(16)} ${seconds(total - row.bareRayMs).padStart(15)}`,
  )
}
