// The explorer and epoch rewards at network scale: p50/p99 of the public explorer endpoints under concurrent
// load with 100,000 devices (target: p99 under 50 ms), and the time to close a reward epoch for 100,000
// devices (target: under 10 s).
//
// Method
//   1. Opens a store: a fresh PostgreSQL test database (default; --store pglite for the embedded one).
//   2. Seeds `--devices` devices with set-based SQL through the store's driver (rows as the coordinator
//      writes them): 1,000 supplier accounts; 0-8 GPUs per device over the catalog's models (a fifth with
//      none: the CPU pool); 95% online since before the epoch, 5% dropping out in its middle; 60% with a
//      passed proof-of-compute, 1% failing a spot check in the epoch; a tenth hired by 1-node clusters for
//      half the epoch; bandwidth tiers; a week of hourly price-index samples per model.
//   3. Builds the real coordinator in this process (background loops off) with a clock just after the
//      epoch, and times `rewards.close(epoch)`: reading the records, computing every payout, storing the
//      plan and paying it through the ledger in one batch. Then closes it again (paid once: timed too).
//   4. Forks bench/offers-load.ts (its own process) to send `--requests` GETs over keep-alive HTTP with
//      `--concurrency` in flight, round-robin over the explorer paths below (summary, price index, device
//      lists with filters, 200 device pages, epochs, one epoch's payouts), with the coordinator's default
//      5 s reply cache; and prints p50/p99/max per path and overall. Then the same paths once each with no
//      cache at all (`explorerCacheMs` 0): what computing each reply costs.
//
// Run (Node 24; ~2-3 minutes on 2 cores, most of it seeding):
//   node bench/explorer.ts
//   node bench/explorer.ts --devices 100000 --requests 20000 --concurrency 16 --store pglite
//
// Bounded: --max-minutes (default 15). Drops the test database and stops the load process on failure too.

import { fork, type ChildProcess } from 'node:child_process'
import { parseArgs } from 'node:util'
import { buildCoordinator, type Coordinator } from '@gpumesh/coordinator'
import { gpuCatalog } from '@gpumesh/core'
import { defaultRewardPolicy, epochStartMs } from '@gpumesh/rewards'
import { createPgliteDriver, createPostgresDriver, createStore, type SqlDriver } from '@gpumesh/store'
import { createTestDatabase, ManualClock, type TestDatabase } from '@gpumesh/testing'
import { benchCoordinatorSettings, ms, summarize, table, withTimeout } from './common.ts'
import type { LoadDone, LoadRun } from './offers-load.ts'

const { values: flags } = parseArgs({
  options: {
    devices: { type: 'string', default: '100000' },
    requests: { type: 'string', default: '40000' },
    warmup: { type: 'string', default: '500' },
    concurrency: { type: 'string', default: '8' },
    store: { type: 'string', default: 'postgres' },
    'max-minutes': { type: 'string', default: '15' },
    /** Seed, close the epoch, and keep the PostgreSQL database for a closer look (its URL is printed). */
    'close-only-keep-db': { type: 'boolean', default: false },
  },
})
const deviceCount = Number(flags.devices)
const here = new URL('.', import.meta.url).pathname
const policy = defaultRewardPolicy
const epoch = 8_000
const startMs = epochStartMs(policy, epoch)
const endMs = startMs + policy.epochLengthMs
const hourMs = 3_600_000

let database: TestDatabase | undefined
let coordinator: Coordinator | undefined
let loadProcess: ChildProcess | undefined
const abort = setTimeout(
  () => {
    console.error(`explorer bench: over --max-minutes ${flags['max-minutes']}; stopping`)
    void cleanup().finally(() => process.exit(2))
  },
  Number(flags['max-minutes']) * 60_000,
)

async function cleanup() {
  loadProcess?.kill()
  await coordinator?.stop().catch(() => undefined)
  await database?.drop().catch(() => undefined)
}

async function seed(driver: SqlDriver) {
  const models = gpuCatalog.map((model) => `'${model.id}'`).join(',')
  await driver.exec(`
    INSERT INTO accounts (id, name, roles, created_at_ms)
      SELECT 'acc_bench' || i, 'supplier ' || i, ARRAY['supplier'], 0 FROM generate_series(1, 1000) i;
    INSERT INTO devices (id, account_id, public_key, hostname, state, state_reason_code, state_reason,
        state_changed_at_ms, verification_state, verification_reason, region, country, bandwidth_tier,
        enrolled_at_ms, last_seen_at_ms, reliability)
      SELECT 'dev_bench' || i, 'acc_bench' || (1 + i % 1000), 'pk' || i, 'host-' || i,
        CASE WHEN i % 20 = 0 THEN 'offline' ELSE 'online' END, 'connected', 'connected', ${startMs - hourMs},
        CASE WHEN i % 10 < 6 THEN 'verified' ELSE 'unverified' END, '',
        (ARRAY['us-east','us-west','eu-west','eu-central','ap-south','ap-east'])[1 + i % 6],
        (ARRAY['US','DE','FR','GB','IN','JP','SG','CA','BR','NL'])[1 + i % 10],
        (ARRAY['low','medium','high'])[1 + i % 3], ${startMs - 86_400_000}, ${endMs}, 0.95
      FROM generate_series(1, ${deviceCount}) i;
    INSERT INTO device_gpus (device_id, uuid, gpu_index, model_key, vram_mib)
      SELECT 'dev_bench' || i, 'GPU-' || i || '-' || g, g, (ARRAY[${models}])[1 + (i * 7) % ${gpuCatalog.length}], 24576
      FROM generate_series(1, ${deviceCount}) i, generate_series(1, (i % 5) * (1 + i % 2)) g;
    INSERT INTO device_events (device_id, at_ms, state, reason_code, reason)
      SELECT 'dev_bench' || i, ${startMs - hourMs}, 'online', 'connected', 'connected' FROM generate_series(1, ${deviceCount}) i;
    INSERT INTO device_events (device_id, at_ms, state, reason_code, reason)
      SELECT 'dev_bench' || i, ${startMs + hourMs / 2}, 'offline', 'missed_heartbeats', 'no heartbeat'
      FROM generate_series(20, ${deviceCount}, 20) i;
    INSERT INTO verification_challenges (id, device_id, issued_at_ms, matrix_size, seed_hex, commit_deadline_at_ms,
        outcome, reason_code, reason, finished_at_ms)
      SELECT 'chl_bench' || i, 'dev_bench' || i, ${startMs - 700_000}, 1024, '00', ${startMs}, 'passed', NULL, 'passed',
        ${startMs - 600_000}
      FROM generate_series(1, ${deviceCount}) i WHERE i % 10 < 6;
    INSERT INTO verification_challenges (id, device_id, issued_at_ms, matrix_size, seed_hex, commit_deadline_at_ms,
        outcome, reason_code, reason, finished_at_ms)
      SELECT 'chl_spot' || i, 'dev_bench' || i, ${startMs + 60_000}, 1024, '00', ${startMs + 70_000}, 'failed',
        'wrong_rows', 'opened rows do not match the commitment', ${startMs + 70_000}
      FROM generate_series(1, ${deviceCount}, 100) i;
    INSERT INTO clusters (id, account_id, name, state, state_reason, desired, request, node_count, gpus_per_node,
        duration_ms, price_per_hour_micro_usd, created_at_ms, ready_at_ms, state_changed_at_ms, updated_at_ms)
      SELECT 'cl_bench' || i, 'acc_bench' || (1 + i % 1000), 'bench-' || i, CASE WHEN i % 2 = 0 THEN 'ready' ELSE 'terminated' END,
        '', 'running', '{}'::jsonb, 1, 1, ${hourMs}, 1000000, ${startMs - hourMs}, ${startMs - hourMs}, ${startMs}, ${startMs}
      FROM generate_series(1, ${Math.ceil(deviceCount / 10)}) i;
    INSERT INTO cluster_node_service (cluster_id, device_id, started_at_ms, ended_at_ms)
      SELECT 'cl_bench' || i, 'dev_bench' || (i * 10), ${startMs - hourMs}, ${startMs + hourMs / 2}
      FROM generate_series(1, ${Math.ceil(deviceCount / 10)}) i;
    INSERT INTO price_index_samples (model_key, at_ms, median_micro_usd, offers)
      SELECT m, ${endMs} - h * ${hourMs}, 500000 + (h * 997 + length(m) * 31337) % 2000000, 100 + h % 50
      FROM unnest(ARRAY[${models}]) m, generate_series(0, 167) h;
    ANALYZE;
  `)
}

async function load(url: string, paths: string[], requests: number, warmup: number, concurrency: number) {
  loadProcess = fork(`${here}offers-load.ts`, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const child = loadProcess
  const message: LoadRun = { type: 'run', url, paths, warmup, requests, concurrency, timeoutMs: 30_000 }
  const done = await withTimeout(
    new Promise<LoadDone>((resolve, reject) => {
      child.once('message', (reply) => resolve(reply as LoadDone))
      child.once('error', reject)
      child.send(message)
    }),
    10 * 60_000,
    'explorer load',
  )
  child.kill()
  loadProcess = undefined
  return done
}

try {
  const seedStarted = performance.now()
  let driver: SqlDriver
  if (flags.store === 'postgres') {
    database = await createTestDatabase()
    driver = await createPostgresDriver({ connectionString: database.connectionString })
  } else {
    driver = await createPgliteDriver()
  }
  const store = await createStore({ driver })
  await seed(driver)
  console.log(`seeded ${deviceCount} devices on ${flags.store} in ${ms(performance.now() - seedStarted)}`)

  const clock = new ManualClock(endMs + 60_000)
  coordinator = await buildCoordinator(
    { store, clock },
    { ...benchCoordinatorSettings({ port: 0, logLevel: 'warn' }), runBackgroundLoops: false },
  )
  const url = await coordinator.listen()

  const closeStarted = performance.now()
  const closed = await coordinator.rewards.close(epoch)
  const closeMs = performance.now() - closeStarted
  const again = performance.now()
  const second = await coordinator.rewards.close(epoch)
  const againMs = performance.now() - again
  const stored = (await store.rewards.getEpoch(epoch))!
  const verification = await store.ledger.verify()
  console.log(
    `\nepoch close, ${deviceCount} devices: ${ms(closeMs)} (${stored.devicesConsidered} considered, ` +
      `${stored.devicesEligible} eligible, ${closed.transfers} ledger transfers, paid ${stored.paidUnits} of ${stored.emissionUnits} units)` +
      `\n  phases (ms): ${Object.entries(closed.phasesMs)
        .map(([phase, took]) => `${phase} ${took.toFixed(0)}`)
        .join(', ')}` +
      `\nsecond close of the same epoch: ${ms(againMs)}, computed again: ${second.computed}; ledger verifies: ${verification.ok}`,
  )

  if (flags['close-only-keep-db'] && database) {
    console.log(`kept database: ${database.connectionString}`)
    database = undefined
    await coordinator.stop()
    coordinator = undefined
    await store.close()
    process.exit(0)
  }

  const devicePaths = Array.from(
    { length: 200 },
    (_, index) => `/v1/explorer/devices/dev_bench${1 + ((index * 487) % deviceCount)}`,
  )
  const paths = [
    '/v1/explorer/summary',
    '/v1/explorer/prices?days=7',
    '/v1/explorer/devices?limit=50',
    '/v1/explorer/devices?modelKey=h100&limit=50',
    '/v1/explorer/devices?country=DE&state=online&limit=50&offset=500',
    '/v1/rewards/epochs',
    `/v1/rewards/epochs/${epoch}?limit=100`,
    ...devicePaths,
  ]
  const requests = Number(flags.requests)
  // One pass over every path first, one at a time: a live explorer serves from a warm cache (what a cold
  // reply costs is measured below, without the cache).
  await load(url, paths, paths.length, 0, 1)
  const done = await load(url, paths, requests, Number(flags.warmup), Number(flags.concurrency))
  const byPath = new Map<string, number[]>()
  done.latenciesMs.forEach((latency, index) => {
    const path = paths[done.pathIndex[index]!]!
    const key = path.startsWith('/v1/explorer/devices/') ? '/v1/explorer/devices/:id (200 devices)' : path
    byPath.set(key, [...(byPath.get(key) ?? []), latency])
  })
  const row = (name: string, samples: number[]) => {
    const summary = summarize(samples)
    return [name, summary.count, summary.p50.toFixed(2), summary.p99.toFixed(2), summary.max.toFixed(2)]
  }
  console.log(
    `\nexplorer under load: ${requests} requests, ${flags.concurrency} in flight, 5 s reply cache, ` +
      `${Math.round((requests / done.wallMs) * 1000)} requests/s, ${done.statusErrors} errors`,
  )
  console.log(
    table(
      ['path', 'n', 'p50 ms', 'p99 ms', 'max ms'],
      [...[...byPath.entries()].map(([name, samples]) => row(name, samples)), row('all', done.latenciesMs)],
    ),
  )
  await coordinator.stop()
  coordinator = undefined

  // Without a cache: what each reply costs to compute, one request at a time.
  coordinator = await buildCoordinator(
    { store, clock },
    {
      ...benchCoordinatorSettings({ port: 0, logLevel: 'warn', explorerCacheMs: 0 }),
      runBackgroundLoops: false,
    },
  )
  const uncachedUrl = await coordinator.listen()
  const uncached = await load(uncachedUrl, paths.slice(0, 8), 80, 8, 1)
  const uncachedByPath = new Map<string, number[]>()
  uncached.latenciesMs.forEach((latency, index) => {
    const path = paths[uncached.pathIndex[index]!]!
    uncachedByPath.set(path, [...(uncachedByPath.get(path) ?? []), latency])
  })
  console.log('\nuncached (explorerCacheMs 0), serial: what computing each reply costs')
  console.log(
    table(
      ['path', 'n', 'p50 ms', 'p99 ms', 'max ms'],
      [...uncachedByPath.entries()].map(([name, samples]) => row(name, samples)),
    ),
  )
  await coordinator.stop()
  coordinator = undefined
  await store.close()
} finally {
  clearTimeout(abort)
  await cleanup()
}
