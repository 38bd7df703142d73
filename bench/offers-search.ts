// p50/p99 latency of GET /v1/offers with 100,000 devices registered (target: p99 under 50 ms).
//
// Method
//   1. Opens a store: embedded PGlite in memory (default) or a fresh PostgreSQL test database
//      (--store postgres, createTestDatabase; dropped at the end).
//   2. Seeds `--devices` devices. Enrollment rows (accounts, devices) are bulk-inserted with plain SQL through
//      the store's driver (what store.enroll would write, minus the tokens); everything the marketplace reads
//      goes through the real store methods: applyDeviceStateChanges (online), saveDeviceReport (inventory,
//      region, country, price), flushHeartbeats + refreshReliability (reliability from uptime buckets),
//      setDeviceVerification and setDeviceBandwidthTier. The mix is seeded (--seed) and realistic: GPU models
//      from packages/core/src/gpu-catalog.ts weighted toward consumer cards, 1/2/4/8 GPUs (8 mostly on
//      data-center cards), 10 regions / 17 countries, prices around each model's going rate, reliability mostly
//      above 0.9, ~45% verified, ~3% failed verification (unlisted).
//   3. Builds the real coordinator in this process (buildCoordinator; background loops off, so nothing
//      sweeps the seeded devices offline: they have no live workers) and times its start, which loads the
//      offer index from the store. The index load is also timed apart: store read vs OfferIndex.upsert.
//   4. Times OfferIndex.search in-process per query (no HTTP), warm, and the re-sort that the first query of
//      each sort order pays after any change that can move a listing; and a full index resync (what the
//      coordinator's offer-index resync loop does every 60 s) with the sorted orders built.
//   5. Forks bench/offers-load.ts (a separate process, so client work never runs on the coordinator's event
//      loop) to send `--warmup` then `--requests` GETs over keep-alive HTTP on 127.0.0.1 with `--concurrency`
//      in flight, round-robin over the query mix below; prints p50/p95/p99/max per query and overall, and
//      requests/s. Then `--serial-requests` one at a time (concurrency 1): the service time without queueing.
//   6. Runs the HTTP load again for `--churn-seconds` while `--churn-per-second` devices change price through
//      the store and the index follows the change feed every 250 ms, as the coordinator's offer-index refresh
//      loop does (store.listDevicesChangedSince -> index.upsert): what a live marketplace sees.
//
// Run (Node 24; ~2-4 minutes on 2 cores, most of it seeding):
//   node bench/offers-search.ts
//   node bench/offers-search.ts --devices 100000 --requests 5000 --warmup 500 --concurrency 8
//   node bench/offers-search.ts --store postgres       # PostgreSQL at GPUMESH_TEST_POSTGRES_URL
//   node bench/offers-search.ts --profile   # CPU profiles of the HTTP phases in bench/results/, then
//   node bench/cpuprofile-summary.ts bench/results/offers-steady-<time>.cpuprofile
//
// Bounded: `--max-minutes` (default 20) aborts the run; every request has a timeout. Cleans up the store,
// the load process and the test database on failure too.

import { fork, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, writeFileSync } from 'node:fs'
import { Session } from 'node:inspector/promises'
import { runInNewContext } from 'node:vm'
import { setFlagsFromString } from 'node:v8'
import { parseArgs } from 'node:util'
import { buildCoordinator, OfferIndex, type Coordinator } from '@gpumesh/coordinator'
import {
  formatId,
  gpuCatalog,
  gpuModelById,
  IdPrefix,
  idBodyAlphabet,
  idBodyLength,
  parseUsdToMicro,
  type BandwidthTier,
} from '@gpumesh/core'
import type { GpuInfo, HardwareInventory, OffersQuery } from '@gpumesh/protocol'
import { simulatedCapabilities } from '@gpumesh/testing'
import {
  createPgliteDriver,
  createPostgresDriver,
  createStore,
  type DeviceReport,
  type SqlDriver,
  type Store,
} from '@gpumesh/store'
import { createTestDatabase, systemClock, type TestDatabase } from '@gpumesh/testing'
import { benchCoordinatorSettings, mapConcurrent, mib, ms, summarize, table, withTimeout } from './common.ts'
import type { LoadDone, LoadRun } from './offers-load.ts'

const { values: flags } = parseArgs({
  options: {
    devices: { type: 'string', default: '100000' },
    requests: { type: 'string', default: '5000' },
    warmup: { type: 'string', default: '500' },
    concurrency: { type: 'string', default: '8' },
    'churn-per-second': { type: 'string', default: '5' },
    'churn-seconds': { type: 'string', default: '30' },
    'serial-requests': { type: 'string', default: '1000' },
    profile: { type: 'boolean', default: false },
    'index-repetitions': { type: 'string', default: '200' },
    store: { type: 'string', default: 'pglite' },
    seed: { type: 'string', default: '42' },
    'max-minutes': { type: 'string', default: '20' },
  },
})
const deviceCount = Number(flags.devices)
const requestCount = Number(flags.requests)
const warmupCount = Number(flags.warmup)
const concurrency = Number(flags.concurrency)
const churnPerSecond = Number(flags['churn-per-second'])
const churnSeconds = Number(flags['churn-seconds'])
const serialRequests = Number(flags['serial-requests'])
const indexRepetitions = Number(flags['index-repetitions'])
if (flags.store !== 'pglite' && flags.store !== 'postgres')
  throw new Error('--store must be pglite or postgres')
if (!(deviceCount > 0 && requestCount > 0 && concurrency > 0))
  throw new Error('--devices, --requests, --concurrency must be positive')

const log = (text: string) => process.stdout.write(`${text}\n`)
const here = new URL('.', import.meta.url).pathname
const p99TargetMs = 50

// The query mix: label, HTTP query string, and the same query as the route hands it to OfferIndex.search.
const queries: { label: string; path: string; query: OffersQuery }[] = [
  { label: 'no filter, sort=price', path: '/v1/offers?sort=price', query: { sort: 'price' } },
  {
    label: 'gpuModel=h100&minGpus=8',
    path: '/v1/offers?gpuModel=h100&minGpus=8',
    query: { gpuModel: 'h100', minGpus: 8 },
  },
  {
    label: 'country=DE&sort=reliability',
    path: '/v1/offers?country=DE&sort=reliability',
    query: { country: 'DE', sort: 'reliability' },
  },
  {
    label: 'maxPrice=1.50&verifiedOnly=false',
    path: '/v1/offers?maxPricePerGpuHourUsd=1.50&verifiedOnly=false',
    query: { maxPricePerGpuHourUsd: '1.50', verifiedOnly: false },
  },
  {
    label: 'minVramGb=40&sort=performance',
    path: '/v1/offers?minVramGb=40&sort=performance',
    query: { minVramGb: 40, sort: 'performance' },
  },
  { label: 'cursor=5000 (deep page)', path: '/v1/offers?cursor=5000', query: { cursor: '5000' } },
  {
    label: 'limit=200 (largest page)',
    path: '/v1/offers?limit=200&sort=performance',
    query: { limit: 200, sort: 'performance' },
  },
]

// ---------------------------------------------------------------------------------------------------------
// The device mix, generated from a seed so runs are comparable.

function mulberry32(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
const random = mulberry32(Number(flags.seed))
const pick = <T>(weighted: readonly (readonly [T, number])[]): T => {
  const total = weighted.reduce((sum, [, weight]) => sum + weight, 0)
  let roll = random() * total
  for (const [value, weight] of weighted) {
    roll -= weight
    if (roll <= 0) return value
  }
  return weighted[weighted.length - 1]![0]
}

/** Model id, share of devices, going rate per GPU-hour in USD, and whether it is a data-center card. */
const models: readonly (readonly [string, number, number, boolean])[] = [
  ['rtx-4090', 22, 0.35, false],
  ['rtx-3090', 12, 0.22, false],
  ['rtx-5090', 4, 0.6, false],
  ['rtx-4080', 5, 0.25, false],
  ['rtx-3080', 4, 0.15, false],
  ['rtx-a6000', 3, 0.5, false],
  ['rtx-6000-ada', 2, 0.8, false],
  ['t4', 8, 0.12, true],
  ['l4', 4, 0.3, true],
  ['a10g', 3, 0.45, true],
  ['a10', 2, 0.4, true],
  ['l40s', 5, 0.85, true],
  ['l40', 2, 0.7, true],
  ['v100', 3, 0.3, true],
  ['a100-40gb', 5, 1.0, true],
  ['a100-80gb', 7, 1.35, true],
  ['h100-pcie', 3, 1.9, true],
  ['h100', 5, 2.3, true],
  ['h200', 1, 3.2, true],
]
const locations: readonly (readonly [readonly [string, string], number])[] = [
  [['us-east', 'US'], 18],
  [['us-west', 'US'], 12],
  [['ca-central', 'CA'], 4],
  [['eu-west', 'DE'], 10],
  [['eu-west', 'NL'], 6],
  [['eu-west', 'FR'], 5],
  [['eu-west', 'GB'], 6],
  [['eu-west', 'IE'], 2],
  [['eu-north', 'SE'], 3],
  [['eu-north', 'FI'], 3],
  [['eu-central', 'PL'], 4],
  [['ap-southeast', 'SG'], 5],
  [['ap-northeast', 'JP'], 5],
  [['ap-northeast', 'KR'], 3],
  [['ap-south', 'IN'], 5],
  [['sa-east', 'BR'], 4],
  [['oc-south', 'AU'], 5],
]
const productNames = new Map(gpuCatalog.map((spec) => [spec.id, `NVIDIA ${spec.displayName}`]))

type DeviceSeed = {
  readonly id: string
  readonly accountId: string
  readonly report: DeviceReport
  readonly reliability: number
  readonly verification: 'verified' | 'failed' | 'verifying' | 'unverified'
  readonly bandwidthTier: BandwidthTier | null
}

function randomIdBody(): string {
  let body = ''
  for (let index = 0; index < idBodyLength; index += 1)
    body += idBodyAlphabet[Math.floor(random() * idBodyAlphabet.length)]
  return body
}

function makeDevice(index: number, accountIds: readonly string[]): DeviceSeed {
  const [modelKey, , rate, dataCenter] = pick(models.map((model) => [model, model[1]] as const))
  const spec = gpuModelById(modelKey)!
  const gpuCount = dataCenter
    ? pick([
        [1, 30],
        [2, 15],
        [4, 20],
        [8, 35],
      ])
    : pick([
        [1, 60],
        [2, 22],
        [4, 13],
        [8, 5],
      ])
  const [region, country] = pick(locations)
  const gpus: GpuInfo[] = Array.from({ length: gpuCount }, (_, gpu) => ({
    index: gpu,
    uuid: `GPU-${index.toString(16).padStart(8, '0')}-${gpu}-${randomBytes(6).toString('hex')}`,
    productName: productNames.get(modelKey) ?? modelKey,
    modelKey,
    vramMib: spec.vramMib,
    architecture: spec.architecture,
    pcieGeneration: 4,
    pcieWidthLanes: 16,
    powerLimitWatts: 300,
    migMode: dataCenter ? 'disabled' : 'unsupported',
    migInstances: [],
  }))
  const cores = pick([
    [8, 15],
    [16, 30],
    [32, 25],
    [64, 20],
    [128, 10],
  ])
  const inventory: HardwareInventory = {
    hostname: `gpu-node-${index}`,
    gpus,
    driverVersion: '550.54.15',
    cudaVersion: '12.4',
    cpu: {
      model: dataCenter ? 'AMD EPYC 7763 64-Core Processor' : 'AMD Ryzen 9 7950X',
      logicalCores: cores,
      architecture: 'x64',
    },
    memoryMib: cores * 8 * 1024,
    disk: { path: '/var/lib/gpumesh', totalMib: 2_000_000, freeMib: 1_200_000 },
    os: { platform: 'linux', release: '6.8.0-45-generic', distribution: 'Ubuntu 24.04 LTS' },
    probeSource: 'nvidia-smi',
    warnings: [],
  }
  const price = Math.max(0.05, rate * (0.6 + random())).toFixed(2)
  const reliabilityRoll = random()
  const reliability =
    reliabilityRoll < 0.7
      ? 0.9 + random() * 0.1
      : reliabilityRoll < 0.9
        ? 0.6 + random() * 0.3
        : random() * 0.6
  return {
    id: formatId(IdPrefix.device, randomIdBody()),
    accountId: accountIds[Math.floor(random() * accountIds.length)]!,
    report: {
      hostname: inventory.hostname,
      inventory,
      region,
      country,
      pricing: { mode: 'fixed' as const, askingPriceMicroUsd: parseUsdToMicro(price) },
      capabilities: simulatedCapabilities(),
    },
    reliability,
    verification: pick([
      ['verified', 45],
      ['failed', 3],
      ['verifying', 4],
      ['unverified', 48],
    ]),
    bandwidthTier: pick<BandwidthTier | null>([
      ['high', 30],
      ['medium', 40],
      ['low', 15],
      [null, 15],
    ]),
  }
}

// ---------------------------------------------------------------------------------------------------------

let driver: SqlDriver | undefined
let store: Store | undefined
let database: TestDatabase | undefined
let coordinator: Coordinator | undefined
let loadProcess: ChildProcess | undefined

async function timed<T>(label: string, action: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const startedAt = performance.now()
  const value = await action()
  const took = performance.now() - startedAt
  log(`  ${label}: ${(took / 1000).toFixed(1)} s`)
  return { value, ms: took }
}

async function seed(): Promise<{ deviceIds: string[]; seedMs: number }> {
  const nowMs = Date.now()
  const enrolledAtMs = nowMs - 3_600_000
  const accountIds = Array.from({ length: Math.max(1, Math.round(deviceCount / 50)) }, () =>
    formatId(IdPrefix.account, randomIdBody()),
  )
  const devices = Array.from({ length: deviceCount }, (_, index) => makeDevice(index, accountIds))
  const startedAt = performance.now()
  const chunks = <T>(items: readonly T[], size: number) =>
    Array.from({ length: Math.ceil(items.length / size) }, (_, index) =>
      items.slice(index * size, (index + 1) * size),
    )
  const parallel = store!.kind === 'postgres' ? 16 : 1

  await timed(
    `insert ${accountIds.length} supplier accounts and ${deviceCount} enrolled devices (SQL)`,
    async () => {
      await driver!.execute(
        `INSERT INTO accounts (id, name, roles, created_at_ms)
       SELECT id, 'bench supplier ' || id, ARRAY['supplier'], $2 FROM unnest($1::text[]) AS u(id)`,
        [accountIds, enrolledAtMs],
      )
      for (const chunk of chunks(devices, 10_000)) {
        await driver!.execute(
          `INSERT INTO devices (id, account_id, public_key, hostname, state, state_reason_code, state_reason,
           state_changed_at_ms, enrolled_at_ms)
         SELECT id, account_id, public_key, '', 'offline', 'enrolled', 'enrolled; waiting for the worker to connect', $4, $4
         FROM unnest($1::text[], $2::text[], $3::text[]) AS u(id, account_id, public_key)`,
          [
            chunk.map((device) => device.id),
            chunk.map((device) => device.accountId),
            chunk.map(() => randomBytes(32).toString('base64url')),
            enrolledAtMs,
          ],
        )
        await driver!.execute(
          `INSERT INTO device_events (device_id, at_ms, state, reason_code, reason)
         SELECT id, $2, 'offline', 'enrolled', 'enrolled; waiting for the worker to connect' FROM unnest($1::text[]) AS u(id)`,
          [chunk.map((device) => device.id), enrolledAtMs],
        )
      }
    },
  )
  await timed('store.applyDeviceStateChanges -> online', async () => {
    for (const chunk of chunks(devices, 2_000)) {
      await store!.applyDeviceStateChanges(
        chunk.map((device) => ({
          deviceId: device.id,
          state: 'online',
          reasonCode: 'connected',
          reason: 'worker connected (agent bench)',
          atMs: enrolledAtMs,
        })),
      )
    }
  })
  await timed('store.saveDeviceReport (inventory, location, price)', () =>
    mapConcurrent(devices, parallel, (device) => store!.saveDeviceReport(device.id, device.report)),
  )
  await timed('store.flushHeartbeats + refreshReliability', async () => {
    const bucketStartMs = Math.floor(enrolledAtMs / 3_600_000) * 3_600_000
    for (const chunk of chunks(devices, 5_000)) {
      await store!.flushHeartbeats(
        chunk.map((device) => ({
          deviceId: device.id,
          lastSeenAtMs: nowMs,
          uptimeBuckets: [
            { bucketStartMs, onlineMs: Math.round(device.reliability * (nowMs - enrolledAtMs)) },
          ],
        })),
      )
    }
    await store!.refreshReliability(nowMs, 30 * 86_400_000, 3_600_000)
  })
  await timed('store.setDeviceVerification + setDeviceBandwidthTier', () =>
    mapConcurrent(devices, parallel, async (device) => {
      if (device.verification !== 'unverified') {
        await store!.setDeviceVerification(device.id, device.verification, `bench: ${device.verification}`)
      }
      if (device.bandwidthTier !== null) await store!.setDeviceBandwidthTier(device.id, device.bandwidthTier)
    }),
  )
  // Only the ids are kept: the generated inventories would otherwise sit in this process's heap (and its
  // garbage collector's work) while the coordinator is being measured.
  return { deviceIds: devices.map((device) => device.id), seedMs: performance.now() - startedAt }
}

/** Loads a separate OfferIndex the way the coordinator does at start (OfferFeed.resync: pages of 5,000 by
 * change_seq), timing the store reads and the upserts apart; the index is dropped afterwards. */
async function measureIndexLoad() {
  collectGarbage()
  const heapBefore = process.memoryUsage().heapUsed
  let standalone: OfferIndex | undefined = new OfferIndex()
  let readMs = 0
  let upsertMs = 0
  let lastSeq = 0n
  for (;;) {
    let startedAt = performance.now()
    const page = await store!.listDevicesChangedSince(lastSeq, 5_000)
    readMs += performance.now() - startedAt
    startedAt = performance.now()
    for (const device of page) {
      standalone.upsert(device)
      if (device.changeSeq > lastSeq) lastSeq = device.changeSeq
    }
    upsertMs += performance.now() - startedAt
    if (page.length < 5_000) break
  }
  collectGarbage()
  const indexHeapBytes = process.memoryUsage().heapUsed - heapBefore
  const startedAt = performance.now()
  standalone.search({ sort: 'price', limit: 1 })
  const firstSortMs = performance.now() - startedAt
  standalone = undefined
  collectGarbage()
  return { readMs, upsertMs, lastSeq, indexHeapBytes, firstSortMs }
}

/** A full collection, for heap figures (V8 lets a running process expose gc()). */
function collectGarbage(): void {
  setFlagsFromString('--expose-gc')
  ;(runInNewContext('gc') as () => void)()
}

function runLoad(
  url: string,
  warmup: number,
  requests: number,
  options: { durationMs?: number; concurrency?: number } = {},
): Promise<LoadDone> {
  const { durationMs } = options
  loadProcess = fork(`${here}offers-load.ts`, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const child = loadProcess
  const message: LoadRun = {
    type: 'run',
    url,
    paths: queries.map((entry) => entry.path),
    warmup,
    requests,
    concurrency: options.concurrency ?? concurrency,
    timeoutMs: 30_000,
    ...(durationMs === undefined ? {} : { durationMs }),
  }
  return withTimeout(
    new Promise<LoadDone>((resolve, reject) => {
      child.once('message', (done: LoadDone) => resolve(done))
      child.once('exit', (code) => reject(new Error(`load process exited with ${code}`)))
      child.send(message)
    }),
    10 * 60_000,
    'HTTP load',
  ).finally(() => {
    child.kill()
    loadProcess = undefined
  })
}

function latencyTable(done: LoadDone): string {
  const rows = queries.map((entry, which) => {
    const summary = summarize(done.latenciesMs.filter((_, index) => done.pathIndex[index] === which))
    return [entry.label, summary.count, ms(summary.p50), ms(summary.p95), ms(summary.p99), ms(summary.max)]
  })
  const overall = summarize(done.latenciesMs)
  rows.push(['overall', overall.count, ms(overall.p50), ms(overall.p95), ms(overall.p99), ms(overall.max)])
  return table(['GET /v1/offers query', 'n', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms'], rows)
}

async function main(): Promise<void> {
  const deadline = setTimeout(
    () => {
      process.stderr.write(`offers-search: --max-minutes ${flags['max-minutes']} reached\n`)
      void cleanup().finally(() => process.exit(1))
    },
    Number(flags['max-minutes']) * 60_000,
  )
  deadline.unref()

  log(
    `offers-search: ${deviceCount} devices, store ${flags.store}, ${requestCount} requests after ${warmupCount} warm-up, concurrency ${concurrency}`,
  )
  if (flags.store === 'postgres') {
    database = await createTestDatabase()
    driver = await createPostgresDriver({ connectionString: database.connectionString, maxConnections: 16 })
  } else {
    driver = await createPgliteDriver()
  }
  store = await createStore({ driver })

  log('seeding')
  const { deviceIds, seedMs } = await seed()
  const [listable] = await driver.query<{ count: bigint }>(
    `SELECT count(*)::bigint AS count FROM devices WHERE state = 'online' AND inventory IS NOT NULL AND verification_state <> 'failed'`,
  )
  log(`seeded in ${(seedMs / 1000).toFixed(1)} s; ${listable?.count} devices listable`)

  const load = await measureIndexLoad()
  const startedAt = performance.now()
  coordinator = await buildCoordinator(
    { store, clock: systemClock },
    {
      ...benchCoordinatorSettings({ host: '127.0.0.1', port: 0, logLevel: 'warn' }),
      runBackgroundLoops: false,
    },
  )
  const buildMs = performance.now() - startedAt
  const url = await coordinator.listen()
  const index = coordinator.index
  const listed = index.search({ limit: 1 }).total
  log(`coordinator at ${url}; index holds ${index.size} devices, ${listed} listed`)

  // In-process search, no HTTP.
  const indexRows: (string | number)[][] = []
  for (const entry of queries) {
    const samples: number[] = []
    let total = 0
    for (let repetition = 0; repetition < indexRepetitions; repetition += 1) {
      const began = performance.now()
      total = index.search(entry.query).total
      samples.push(performance.now() - began)
    }
    const summary = summarize(samples.slice(1))
    indexRows.push([
      entry.label,
      total,
      ms(samples[0] ?? NaN),
      ms(summary.p50),
      ms(summary.p99),
      ms(summary.max),
    ])
  }
  // What the first query of each order pays after a change that can move a listing: a full re-sort.
  const sortRows: (string | number)[][] = []
  const probe = (await store.getDevice(deviceIds[0]!))!
  for (const sort of ['price', 'performance', 'reliability'] as const) {
    const samples: number[] = []
    for (let repetition = 0; repetition < 5; repetition += 1) {
      index.upsert({
        ...probe,
        askingPriceMicroUsd: (probe.askingPriceMicroUsd ?? 0n) + BigInt(repetition + 1),
      })
      const began = performance.now()
      index.search({ sort, limit: 50 })
      samples.push(performance.now() - began)
    }
    const summary = summarize(samples)
    sortRows.push([`first sort=${sort} after a change`, ms(summary.p50), ms(summary.max)])
  }
  index.upsert(probe)

  // The coordinator re-reads every device every offerIndexResyncMs (60 s by default; OfferFeed.resync). With
  // the sorted orders built, each unchanged device is swapped in place (#replaceInSortedOrders).
  for (const sort of ['price', 'performance', 'reliability'] as const) index.search({ sort, limit: 1 })
  const resync = { readMs: 0, upsertMs: 0, longestPageMs: 0 }
  let resyncSeq = 0n
  for (;;) {
    let began = performance.now()
    const page = await store.listDevicesChangedSince(resyncSeq, 5_000)
    const pageReadMs = performance.now() - began
    began = performance.now()
    for (const device of page) {
      index.upsert(device)
      if (device.changeSeq > resyncSeq) resyncSeq = device.changeSeq
    }
    const pageUpsertMs = performance.now() - began
    resync.readMs += pageReadMs
    resync.upsertMs += pageUpsertMs
    resync.longestPageMs = Math.max(resync.longestPageMs, pageReadMs + pageUpsertMs)
    if (page.length < 5_000) break
  }

  // HTTP, steady index.
  log(`HTTP: ${warmupCount} warm-up + ${requestCount} requests`)
  const steady = await withProfile('steady', () => runLoad(url, warmupCount, requestCount))
  // One request at a time: the service time of each query, without queueing behind the others.
  log(`HTTP one at a time: ${serialRequests} requests`)
  const serial = serialRequests > 0 ? await runLoad(url, 50, serialRequests, { concurrency: 1 }) : undefined

  // HTTP while listings change: price updates through the store, the index following the change feed.
  let churned = 0
  let churnErrors = 0
  // The coordinator loaded its index up to the same point as the standalone load; nothing was written since.
  let feedSeq = load.lastSeq
  const churnTimer =
    churnPerSecond > 0
      ? setInterval(() => {
          const id = deviceIds[Math.floor(random() * deviceIds.length)]!
          void (async () => {
            const device = await store!.getDevice(id)
            if (!device?.inventory || device.region === null || device.country === null) return
            const price = (Number(device.askingPriceMicroUsd ?? 100_000n) / 1e6) * (0.9 + random() * 0.2)
            await store!.saveDeviceReport(id, {
              hostname: device.hostname,
              inventory: device.inventory,
              region: device.region,
              country: device.country,
              pricing: {
                mode: 'fixed',
                askingPriceMicroUsd: parseUsdToMicro(Math.max(0.05, price).toFixed(2)),
              },
            })
            churned += 1
          })().catch(() => (churnErrors += 1))
        }, 1000 / churnPerSecond)
      : undefined
  let following = false
  const feedTimer = setInterval(() => {
    if (following) return
    following = true
    void (async () => {
      for (;;) {
        const page = await store!.listDevicesChangedSince(feedSeq, 5_000)
        for (const device of page) {
          index.upsert(device)
          if (device.changeSeq > feedSeq) feedSeq = device.changeSeq
        }
        if (page.length < 5_000) break
      }
    })().finally(() => (following = false))
  }, 250)
  log(`HTTP under churn: ${churnPerSecond} price changes/s for ${churnSeconds} s`)
  const churnRun =
    churnSeconds > 0
      ? await withProfile('churn', () => runLoad(url, 0, 1_000_000, { durationMs: churnSeconds * 1000 }))
      : undefined
  clearInterval(churnTimer)
  clearInterval(feedTimer)

  // Report
  const steadySummary = summarize(steady.latenciesMs)
  const lines = [
    '',
    `RESULT offers-search (${new Date().toISOString()}, store ${flags.store}, node ${process.version})`,
    `devices seeded                 ${deviceCount} (${listable?.count} listable), seeding took ${(seedMs / 1000).toFixed(1)} s`,
    `index load (standalone)        ${((load.readMs + load.upsertMs) / 1000).toFixed(2)} s: store read ${(load.readMs / 1000).toFixed(2)} s` +
      ` + OfferIndex.upsert ${(load.upsertMs / 1000).toFixed(2)} s; index heap ${mib(load.indexHeapBytes)}; first sort ${ms(load.firstSortMs)} ms`,
    `coordinator start (with load)  ${(buildMs / 1000).toFixed(2)} s (buildCoordinator, includes the index load); ${listed} offers listed`,
    '',
    `OfferIndex.search in-process, ${indexRepetitions} repetitions each (first = cold, may include a sort)`,
    table(['query', 'matches', 'first ms', 'p50 ms', 'p99 ms', 'max ms'], indexRows),
    '',
    table(['re-sort after an index change', 'p50 ms', 'max ms'], sortRows),
    `full index resync with orders built (OfferFeed.resync, every 60 s by default): ${((resync.readMs + resync.upsertMs) / 1000).toFixed(2)} s` +
      ` = store read ${(resync.readMs / 1000).toFixed(2)} s + upserts ${(resync.upsertMs / 1000).toFixed(2)} s;` +
      ` longest page of 5,000 blocks ${ms(resync.longestPageMs)} ms`,
    '',
    `HTTP GET, steady index: ${steady.latenciesMs.length} requests in ${(steady.wallMs / 1000).toFixed(1)} s =` +
      ` ${((1000 * steady.latenciesMs.length) / steady.wallMs).toFixed(0)} req/s, concurrency ${concurrency}, errors ${steady.statusErrors}`,
    latencyTable(steady),
    `target p99 < ${p99TargetMs} ms: ${steadySummary.p99 < p99TargetMs ? 'MET' : 'NOT MET'} (overall p99 ${ms(steadySummary.p99)} ms)`,
  ]
  if (serial) {
    lines.push(
      '',
      `HTTP GET one at a time (concurrency 1: service time, no queueing): ${serial.latenciesMs.length} requests in` +
        ` ${(serial.wallMs / 1000).toFixed(1)} s = ${((1000 * serial.latenciesMs.length) / serial.wallMs).toFixed(0)} req/s, errors ${serial.statusErrors}`,
      latencyTable(serial),
    )
  }
  if (churnRun) {
    const churnSummary = summarize(churnRun.latenciesMs)
    lines.push(
      '',
      `HTTP GET under churn (${churnPerSecond} price changes/s through the store, feed followed every 250 ms; ${churned} applied):` +
        ` ${churnRun.latenciesMs.length} requests in ${(churnRun.wallMs / 1000).toFixed(1)} s =` +
        ` ${((1000 * churnRun.latenciesMs.length) / churnRun.wallMs).toFixed(0)} req/s, errors ${churnRun.statusErrors + churnErrors}`,
      latencyTable(churnRun),
      `target p99 < ${p99TargetMs} ms under churn: ${churnSummary.p99 < p99TargetMs ? 'MET' : 'NOT MET'} (overall p99 ${ms(churnSummary.p99)} ms)`,
    )
  }
  lines.push(
    `process RSS ${mib(process.memoryUsage().rss)}, heap used ${mib(process.memoryUsage().heapUsed)}`,
  )
  for (const line of lines) log(line)
  for (const path of profiles) log(`CPU profile: ${path} (node bench/cpuprofile-summary.ts ${path})`)
  const samples = [...steady.errorSamples, ...(churnRun?.errorSamples ?? [])]
  if (samples.length > 0) log(`error samples:\n  ${samples.join('\n  ')}`)
}

const profiles: string[] = []

/** With --profile: a V8 CPU profile of this process (the coordinator's) while `action` runs. */
async function withProfile<T>(name: string, action: () => Promise<T>): Promise<T> {
  if (!flags.profile) return action()
  const session = new Session()
  session.connect()
  await session.post('Profiler.enable')
  await session.post('Profiler.setSamplingInterval', { interval: 500 })
  await session.post('Profiler.start')
  try {
    return await action()
  } finally {
    const { profile } = await session.post('Profiler.stop')
    session.disconnect()
    mkdirSync(`${here}results`, { recursive: true })
    const path = `${here}results/offers-${name}-${Date.now()}.cpuprofile`
    writeFileSync(path, JSON.stringify(profile))
    profiles.push(path)
  }
}

let cleaning: Promise<void> | undefined
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    loadProcess?.kill('SIGKILL')
    const step = (action: () => Promise<unknown>) =>
      withTimeout(action(), 60_000, 'cleanup').catch((error: unknown) => log(`cleanup: ${String(error)}`))
    if (coordinator) await step(() => coordinator!.stop())
    if (store) await step(() => store!.close())
    else if (driver) await step(() => driver!.close())
    if (database) await step(() => database!.drop())
  })()
  return cleaning
}

process.on('SIGINT', () => {
  log('interrupted: cleaning up')
  void cleanup().finally(() => process.exit(130))
})

try {
  await main()
} catch (error) {
  process.stderr.write(`offers-search failed: ${(error as Error).stack ?? String(error)}\n`)
  process.exitCode = 1
} finally {
  await cleanup()
}
