// A coordinator in its own process, for benchmarks that must measure its CPU and memory apart from the load.
//
// It builds the real coordinator (buildCoordinator) on PGlite in a temporary dataDir (default) or on a fresh
// PostgreSQL database made with createTestDatabase (`--store postgres`, server at GPUMESH_TEST_POSTGRES_URL,
// default postgres://postgres@127.0.0.1:5432/postgres), listens on 127.0.0.1 on a free port, and prints one
// JSON line on stdout when ready:
//
//   {"event":"ready","url":"http://127.0.0.1:41234","pid":1234,"store":"pglite","dataDir":"/tmp/...","database":null}
//
// Then it reads commands, one per line, on stdin:
//   stats    -> prints {"event":"stats", rssBytes, heapUsedBytes, eventLoopDelayMs: {p50,p99,max}, ...} and resets
//               the event-loop-delay histogram
//   stats gc -> the same after a full garbage collection (when started with node --expose-gc)
//   profile-start        -> starts the V8 CPU profiler in this process (node:inspector)
//   profile-stop <file>  -> stops it, writes the .cpuprofile to <file>, prints {"event":"profile","path":...}
//   stop   -> stops the coordinator, closes the store, drops the test database / removes the temporary
//             dataDir it made, prints {"event":"stopped"} and exits
// End of stdin, SIGTERM and SIGINT stop it the same way, so it never outlives the benchmark that started it.
// Coordinator logs (pino JSON) go to stderr.
//
//   node bench/coordinator-process.ts [--store pglite|postgres] [--data-dir DIR] [--heartbeat-interval-ms 10000]
//        [--heartbeat-flush-interval-ms 5000] [--log-level warn] [--port 0] [--verification]
//        [--failed-auth-burst N]   (failed authentications allowed per source and per key id a minute)
//
// Every other setting is the production default (the CoordinatorSettings schema's), except proof-of-compute,
// which is off unless --verification is given: the benchmark load generators do not answer challenges.
//
// Run by hand it serves until Ctrl-C. Add `--cpu-prof --cpu-prof-dir=bench/results` before the script path to
// profile it (the profile is written when it exits).

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { Session } from 'node:inspector/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import { buildCoordinator, type Coordinator } from '@gpumesh/coordinator'
import type { CoordinatorSettings } from '@gpumesh/protocol'
import { openStore, type Store } from '@gpumesh/store'
import { createTestDatabase, systemClock, type TestDatabase } from '@gpumesh/testing'
import { benchCoordinatorSettings } from './common.ts'

const { values: flags } = parseArgs({
  options: {
    store: { type: 'string', default: 'pglite' },
    'data-dir': { type: 'string' },
    'heartbeat-interval-ms': { type: 'string', default: '10000' },
    'heartbeat-flush-interval-ms': { type: 'string', default: '5000' },
    'log-level': { type: 'string', default: 'warn' },
    port: { type: 'string', default: '0' },
    verification: { type: 'boolean', default: false },
    'failed-auth-burst': { type: 'string' },
  },
})

if (flags.store !== 'pglite' && flags.store !== 'postgres')
  throw new Error('--store must be pglite or postgres')

const print = (line: object) => process.stdout.write(`${JSON.stringify(line)}\n`)
// The histogram records the time between its timer's ticks, so the resolution is subtracted when reported.
const eventLoopResolutionMs = 10
const eventLoopDelay = monitorEventLoopDelay({ resolution: eventLoopResolutionMs })
eventLoopDelay.enable()

let store: Store | undefined
let coordinator: Coordinator | undefined
let database: TestDatabase | undefined
let ownDataDir: string | undefined
let stopping: Promise<void> | undefined

async function start(): Promise<void> {
  let dataDir = flags['data-dir']
  if (flags.store === 'postgres') {
    database = await createTestDatabase()
    store = await openStore({ kind: 'postgres', connectionString: database.connectionString })
  } else {
    if (dataDir === undefined)
      dataDir = ownDataDir = mkdtempSync(join(tmpdir(), 'gpumesh-bench-coordinator-'))
    store = await openStore({ kind: 'pglite', dataDir: join(dataDir, 'pglite') })
  }
  const settings = benchCoordinatorSettings({
    host: '127.0.0.1',
    port: Number(flags.port),
    ...(dataDir === undefined ? {} : { dataDir }),
    heartbeatIntervalMs: Number(flags['heartbeat-interval-ms']),
    heartbeatFlushIntervalMs: Number(flags['heartbeat-flush-interval-ms']),
    logLevel: flags['log-level'] as CoordinatorSettings['logLevel'],
    verificationEnabled: flags.verification,
  })
  coordinator = await buildCoordinator(
    { store, clock: systemClock },
    {
      ...settings,
      ...(flags['failed-auth-burst'] === undefined
        ? {}
        : { failedAuthLimits: failedAuthLimitsOf(Number(flags['failed-auth-burst'])) }),
      // Same level, but on stderr: stdout carries this script's own JSON lines.
      logger: settings.logLevel === 'silent' ? false : { level: settings.logLevel, stream: process.stderr },
    },
  )
  const url = await coordinator.listen()
  print({
    event: 'ready',
    url,
    pid: process.pid,
    store: store.kind,
    dataDir: dataDir ?? null,
    database: database ? new URL(database.connectionString).pathname.slice(1) : null,
  })
}

function failedAuthLimitsOf(burst: number) {
  const limit = { burst, windowMs: 60_000, maxSubjects: 100_000 }
  return { perSource: limit, perKeyId: limit }
}

function stop(exitCode: number): Promise<void> {
  stopping ??= (async () => {
    const step = async (what: string, action: () => Promise<unknown>, timeoutMs: number) => {
      let timer: NodeJS.Timeout | undefined
      try {
        await Promise.race([
          action(),
          new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('timed out')), timeoutMs))),
        ])
      } catch (error) {
        process.stderr.write(`coordinator-process: ${what} failed: ${String(error)}\n`)
      } finally {
        clearTimeout(timer)
      }
    }
    if (coordinator) await step('coordinator stop', () => coordinator!.stop(), 60_000)
    if (store) await step('store close', () => store!.close(), 30_000)
    if (database) await step('drop test database', () => database!.drop(), 30_000)
    if (ownDataDir) rmSync(ownDataDir, { recursive: true, force: true })
    print({ event: 'stopped' })
    process.exit(exitCode)
  })()
  return stopping
}

let profiler: Session | undefined

async function profileStart(): Promise<void> {
  profiler = new Session()
  profiler.connect()
  await profiler.post('Profiler.enable')
  await profiler.post('Profiler.setSamplingInterval', { interval: 500 })
  await profiler.post('Profiler.start')
}

async function profileStop(path: string): Promise<void> {
  if (!profiler) return
  const { profile } = await profiler.post('Profiler.stop')
  profiler.disconnect()
  profiler = undefined
  writeFileSync(path, JSON.stringify(profile))
  print({ event: 'profile', path })
}

createInterface({ input: process.stdin })
  .on('line', (line) => {
    const command = line.trim()
    if (command === 'stats' || command === 'stats gc') {
      // `stats gc` (needs node --expose-gc) collects first, so heap figures are what is retained.
      const collect = (globalThis as { gc?: () => void }).gc
      if (command === 'stats gc' && collect) collect()
      const memory = process.memoryUsage()
      print({
        event: 'stats',
        rssBytes: memory.rss,
        heapUsedBytes: memory.heapUsed,
        externalBytes: memory.external,
        eventLoopDelayMs: {
          p50: Math.max(0, eventLoopDelay.percentile(50) / 1e6 - eventLoopResolutionMs),
          p99: Math.max(0, eventLoopDelay.percentile(99) / 1e6 - eventLoopResolutionMs),
          max: Math.max(0, eventLoopDelay.max / 1e6 - eventLoopResolutionMs),
        },
        presenceConnected: coordinator?.presence.connectedCount ?? 0,
        indexSize: coordinator?.index.size ?? 0,
      })
      eventLoopDelay.reset()
    } else if (command === 'profile-start') {
      void profileStart()
    } else if (command.startsWith('profile-stop ')) {
      void profileStop(command.slice('profile-stop '.length).trim())
    } else if (command === 'stop') {
      void stop(0)
    }
  })
  .on('close', () => void stop(0))
process.on('SIGTERM', () => void stop(0))
process.on('SIGINT', () => void stop(0))

start().catch((error: unknown) => {
  process.stderr.write(`coordinator-process: start failed: ${(error as Error).stack ?? String(error)}\n`)
  void stop(1)
})
