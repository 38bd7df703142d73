// Gang placement latency: a 16-node cluster over 100,000 registered devices, in process (placement is pure).
//
// The supply mixes GPU models, counts, regions, prices, reliabilities and states (some offline, reserved or
// unverified) drawn from a fixed seed; each request varies model, region and price cap. Reports p50/p99/max
// per request shape and placements per second on one core.
//
// Run: node bench/placement.ts [--devices 100000] [--nodes 16] [--requests 300]
import { parseArgs } from 'node:util'
import { seededRandom } from '@gpumesh/core'
import { placeCluster, type ClusterRequest, type NodeCandidate } from '@gpumesh/scheduler'

const { values } = parseArgs({
  options: {
    devices: { type: 'string', default: '100000' },
    nodes: { type: 'string', default: '16' },
    requests: { type: 'string', default: '300' },
  },
})
const deviceCount = Number(values.devices)
const nodeCount = Number(values.nodes)
const requestCount = Number(values.requests)
const random = seededRandom(42)
const pick = <T>(list: readonly T[]): T => list[Math.floor(random.next() * list.length)]!

const models = [
  { id: 'h100', fp16: 989, vram: 81_559 },
  { id: 'a100-80gb', fp16: 312, vram: 81_920 },
  { id: 'a100-40gb', fp16: 312, vram: 40_960 },
  { id: 'l40s', fp16: 362, vram: 46_068 },
  { id: 'rtx-4090', fp16: 165, vram: 24_564 },
  { id: 't4', fp16: 65, vram: 15_360 },
]
const places = [
  ['eu-west', 'DE'],
  ['eu-west', 'FR'],
  ['eu-north', 'SE'],
  ['us-east', 'US'],
  ['us-west', 'US'],
  ['ap-south', 'IN'],
  ['ap-east', 'JP'],
] as const

const nodes: NodeCandidate[] = Array.from({ length: deviceCount }, (_, index) => {
  const model = pick(models)
  const [region, country] = pick(places)
  return {
    deviceId: `dev_${String(index).padStart(8, '0')}`,
    supplierAccountId: `acc_${index % 5000}`,
    online: random.next() < 0.9,
    verified: random.next() < 0.85,
    reserved: random.next() < 0.2,
    gpuModel: model.id,
    gpuCount: pick([1, 2, 4, 8]),
    vramMibPerGpu: model.vram,
    fp16TflopsPerGpu: model.fp16,
    cpuCores: pick([16, 32, 64, 128]),
    memoryMib: pick([64, 128, 256, 512]) * 1024,
    region,
    country,
    bandwidthRank: pick([0, 1, 2, 3]),
    pricePerGpuHourMicroUsd: BigInt(200_000 + Math.floor(random.next() * 3_000_000)),
    reliability: 0.8 + random.next() * 0.2,
    runsClusterNodes: true,
  }
})
const measured = new Map<string, number>()
const snapshot = { nodes, roundTripMs: (a: string, b: string) => measured.get(`${a}|${b}`) }

const shapes: Record<string, ClusterRequest> = {
  'any model, 16×1 GPU': { nodeCount, gpusPerNode: 1 },
  'a100, 16×8 GPUs': { nodeCount, gpusPerNode: 8, gpuModel: 'a100' },
  'h100 in eu-west ≤ $2.50': {
    nodeCount,
    gpusPerNode: 4,
    gpuModel: 'h100',
    region: 'eu-west',
    maxPricePerGpuHourMicroUsd: 2_500_000n,
  },
  'rtx-4090, high bandwidth': { nodeCount, gpusPerNode: 1, gpuModel: 'rtx-4090', minBandwidthRank: 3 },
}

// The first placement on a snapshot sorts its nodes by preference once; later ones reuse that order.
const firstStarted = performance.now()
placeCluster(snapshot, { nodeCount, gpusPerNode: 1 })
const firstPlacementMs = performance.now() - firstStarted

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!
console.log(
  `gang placement: ${nodeCount} nodes over ${deviceCount.toLocaleString()} devices, ${requestCount} requests per shape`,
)
console.log(`  first placement on a new snapshot (sorts it once): ${firstPlacementMs.toFixed(1)} ms`)
const all: number[] = []
for (const [name, shape] of Object.entries(shapes)) {
  for (let warm = 0; warm < 20; warm += 1) placeCluster(snapshot, shape)
  const times: number[] = []
  let placed = 0
  for (let i = 0; i < requestCount; i += 1) {
    const started = performance.now()
    const result = placeCluster(snapshot, shape)
    times.push(performance.now() - started)
    if (result.ok) placed += 1
  }
  times.sort((a, b) => a - b)
  all.push(...times)
  console.log(
    `  ${name.padEnd(28)} p50 ${percentile(times, 50).toFixed(2)} ms  p99 ${percentile(times, 99).toFixed(2)} ms  max ${times[times.length - 1]!.toFixed(2)} ms  placed ${placed}/${requestCount}`,
  )
}
all.sort((a, b) => a - b)
const totalMs = all.reduce((sum, time) => sum + time, 0)
console.log(
  `  overall                      p50 ${percentile(all, 50).toFixed(2)} ms  p99 ${percentile(all, 99).toFixed(2)} ms  ${(all.length / (totalMs / 1000)).toFixed(0)} placements/s on one core`,
)
