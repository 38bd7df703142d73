// Gang placement latency: a 16-node cluster over 100,000 registered devices, in process (placement is pure).
//
// The supply mixes GPU models, counts, regions, prices, reliabilities and states (some offline, reserved or
// unverified) drawn from a fixed seed; each request varies model, region and price cap. Reports p50/p99/max
// per request shape and placements per second on one core.
//
// Run: node bench/placement.ts [--devices 100000] [--nodes 16] [--requests 300] [--baseline DIR]
// --baseline DIR: a checkout of older code (e.g. `git worktree add DIR <commit>`, with a node_modules link);
// its placeCluster runs interleaved with this one's, request by request, on the same snapshot shapes, and
// both are printed side by side. Each side gets its own copy of the snapshot, so neither sees the other's
// per-snapshot caches.
import { resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { seededRandom } from '@gpumesh/core'
import {
  placeCluster,
  type ClusterRequest,
  type NodeCandidate,
  type SupplySnapshot,
} from '@gpumesh/scheduler'

const { values } = parseArgs({
  options: {
    devices: { type: 'string', default: '100000' },
    nodes: { type: 'string', default: '16' },
    requests: { type: 'string', default: '300' },
    baseline: { type: 'string' },
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
// Workers measure a few peers each: here 2 % of devices, 4 measured peers each, as the RTT prober would
// leave them. Looked up as the coordinator does: one map keyed by the pair.
const measured = new Map<string, number>()
const measuredDevices = new Set<string>()
for (let index = 0; index < deviceCount * 0.02; index += 1) {
  const device = pick(nodes).deviceId
  for (let peer = 0; peer < 4; peer += 1) {
    const other = pick(nodes).deviceId
    measured.set(`${device}|${other}`, 1 + Math.floor(random.next() * 200))
    measuredDevices.add(device).add(other)
  }
}
const snapshotFor = (): SupplySnapshot => ({
  nodes: [...nodes],
  roundTripMs: (a: string, b: string) => measured.get(`${a}|${b}`),
  isMeasured: (deviceId: string) => measuredDevices.has(deviceId),
})

type Placer = {
  readonly label: string
  readonly place: typeof placeCluster
  readonly snapshot: SupplySnapshot
}
const placers: Placer[] = [{ label: 'this code', place: placeCluster, snapshot: snapshotFor() }]
if (values.baseline) {
  const baseline = (await import(resolve(values.baseline, 'packages/scheduler/src/index.ts'))) as {
    placeCluster: typeof placeCluster
  }
  placers.unshift({ label: `baseline`, place: baseline.placeCluster, snapshot: snapshotFor() })
}

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

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!
console.log(
  `gang placement: ${nodeCount} nodes over ${deviceCount.toLocaleString()} devices, ${requestCount} requests per shape`,
)
// The first placement on a new snapshot sorts its nodes by preference once; later ones reuse that order.
for (const placer of placers) {
  const firstStarted = performance.now()
  placer.place(placer.snapshot, { nodeCount, gpusPerNode: 1 })
  console.log(
    `  ${placer.label}: first placement on a new snapshot (sorts it once): ${(performance.now() - firstStarted).toFixed(1)} ms`,
  )
}
const all = new Map<string, number[]>(placers.map((placer) => [placer.label, []]))
for (const [name, shape] of Object.entries(shapes)) {
  for (const placer of placers) for (let warm = 0; warm < 20; warm += 1) placer.place(placer.snapshot, shape)
  const times = new Map<string, number[]>(placers.map((placer) => [placer.label, []]))
  const placed = new Map<string, number>(placers.map((placer) => [placer.label, 0]))
  const chosen = new Map<string, string>()
  for (let i = 0; i < requestCount; i += 1) {
    for (const placer of placers) {
      const started = performance.now()
      const result = placer.place(placer.snapshot, shape)
      times.get(placer.label)!.push(performance.now() - started)
      if (result.ok) placed.set(placer.label, placed.get(placer.label)! + 1)
      chosen.set(placer.label, result.ok ? result.nodes.map((node) => node.deviceId).join(',') : 'none')
    }
  }
  const same = new Set(chosen.values()).size === 1
  for (const placer of placers) {
    const sorted = times.get(placer.label)!.sort((a, b) => a - b)
    all.get(placer.label)!.push(...sorted)
    console.log(
      `  ${name.padEnd(26)} ${placer.label.padEnd(9)} p50 ${percentile(sorted, 50).toFixed(2)} ms  p99 ${percentile(sorted, 99).toFixed(2)} ms  max ${sorted[sorted.length - 1]!.toFixed(2)} ms  placed ${placed.get(placer.label)}/${requestCount}`,
    )
  }
  if (placers.length > 1) console.log(`  ${''.padEnd(26)} same gang from both: ${same ? 'yes' : 'NO'}`)
}
for (const placer of placers) {
  const sorted = all.get(placer.label)!.sort((a, b) => a - b)
  const totalMs = sorted.reduce((sum, time) => sum + time, 0)
  console.log(
    `  ${'overall'.padEnd(26)} ${placer.label.padEnd(9)} p50 ${percentile(sorted, 50).toFixed(2)} ms  p99 ${percentile(sorted, 99).toFixed(2)} ms  ${(sorted.length / (totalMs / 1000)).toFixed(0)} placements/s on one core`,
  )
}
