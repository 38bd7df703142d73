// How many workers does one coordinator process hold with 10 s heartbeats?
//
// Method
//   1. Starts the real coordinator in a child process (bench/coordinator-process.ts: PGlite in a temporary
//      dataDir, or a fresh PostgreSQL test database with --store postgres; heartbeatIntervalMs 10000,
//      logLevel warn), so its CPU and memory are read apart from the load generator's, from
//      /proc/<pid>/stat (utime + stime) and /proc/<pid>/status (VmRSS, VmHWM).
//   2. Enrolls N devices the way real workers do, over HTTP: one supplier account (POST /v1/accounts), then per
//      device an Ed25519 key pair (node:crypto), a one-time token (POST /v1/enrollment-tokens) and
//      POST /v1/worker/enroll signed over enrollmentSigningPayload(token); `--enroll-concurrency` in flight.
//   3. Forks `--swarms` load generators (bench/worker-swarm.ts), each holding N/k real-protocol clients on
//      the `ws` package: auth signed over sessionSigningPayload(nonce, deviceId), one hardware report, then a
//      heartbeat every 10 s after a random first offset. Handshakes go out as a sliding window of `--wave`
//      in flight (split across swarms). Clients bind source addresses 127.0.0.1, 127.0.0.2, ... with
//      `--clients-per-address` each: loopback has ~28k ephemeral ports per source address toward one port.
//   4. Ramp: until every client is welcomed or has failed. Reports connect time, connects/s, handshake
//      latency, coordinator CPU and RSS.
//   5. Settle `--settle-seconds` (the index absorbs the last reports), then hold `--hold-seconds`: samples the
//      coordinator every second, and reports its CPU % over the window, RSS, event-loop delay, heartbeats
//      sent, GET /v1/health connectedWorkers at start and end, and every failure (auth refusals, closes,
//      coordinator warnings).
//   6. Cleans up, also on failure or Ctrl-C: stops the swarms and the coordinator (which drops its test
//      database / removes its dataDir), kills them if they hang, removes the temp dir.
//
// Run (Linux, Node 24). File descriptors: the coordinator needs one per worker plus ~50, each swarm one per
// client; the script prints /proc/self/limits and warns when that is short. Raise the limit in the shell that
// runs it, as far as the hard limit allows (raising the hard limit needs root / CAP_SYS_RESOURCE):
//
//   ulimit -n 65536          # or: ulimit -n $(ulimit -Hn)
//   node bench/worker-connections.ts --workers 20000 --hold-seconds 60
//   node bench/worker-connections.ts --workers 5000 --store postgres
//   node bench/worker-connections.ts --workers 20000 --coordinator-cpu-prof   # whole run, .cpuprofile in bench/results/
//   node bench/worker-connections.ts --workers 19000 --profile-hold           # hold window only, bench/results/
//   node bench/cpuprofile-summary.ts bench/results/<file>.cpuprofile           # where the time went
//
// Bounded: `--max-minutes` (default 30) aborts the whole run; every HTTP call and handshake has a timeout.

import { fork, spawn, type ChildProcess } from 'node:child_process'
import { generateKeyPairSync, sign } from 'node:crypto'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { Agent, request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import { enrollmentSigningPayload } from '@gpumesh/protocol'
import { testPostgresAdminUrl } from '@gpumesh/testing'
import pg from 'pg'
import {
  emptySwarmCounters,
  mapConcurrent,
  mib,
  ms,
  openFilesLimit,
  openFileCount,
  processCpuSeconds,
  processMemory,
  sleep,
  summarize,
  withTimeout,
  type SwarmCounters,
} from './common.ts'
import type { SwarmClient, SwarmReply, SwarmStart } from './worker-swarm.ts'

const { values: flags } = parseArgs({
  options: {
    workers: { type: 'string', default: '20000' },
    'hold-seconds': { type: 'string', default: '60' },
    'settle-seconds': { type: 'string', default: '10' },
    store: { type: 'string', default: 'pglite' },
    swarms: { type: 'string', default: '2' },
    wave: { type: 'string', default: '500' },
    'clients-per-address': { type: 'string', default: '20000' },
    'enroll-concurrency': { type: 'string', default: '32' },
    'welcome-timeout-seconds': { type: 'string', default: '60' },
    'max-minutes': { type: 'string', default: '30' },
    'coordinator-cpu-prof': { type: 'boolean', default: false },
    'profile-hold': { type: 'boolean', default: false },
  },
})

const workers = Number(flags.workers)
const holdSeconds = Number(flags['hold-seconds'])
const settleSeconds = Number(flags['settle-seconds'])
const swarmCount = Math.max(1, Math.min(Number(flags.swarms), workers))
const wave = Number(flags.wave)
const clientsPerAddress = Number(flags['clients-per-address'])
const enrollConcurrency = Number(flags['enroll-concurrency'])
const welcomeTimeoutMs = Number(flags['welcome-timeout-seconds']) * 1000
const deadlineMs = Date.now() + Number(flags['max-minutes']) * 60_000
if (flags.store !== 'pglite' && flags.store !== 'postgres')
  throw new Error('--store must be pglite or postgres')
if (!(workers > 0 && holdSeconds > 0 && wave > 0 && clientsPerAddress > 0 && clientsPerAddress <= 28_000)) {
  throw new Error('--workers, --hold-seconds, --wave must be positive; --clients-per-address in 1..28000')
}

const log = (text: string) => process.stdout.write(`${text}\n`)
const elapsed = (since: number) => `${((performance.now() - since) / 1000).toFixed(1)} s`
const here = new URL('.', import.meta.url).pathname
const tempDir = mkdtempSync(join(tmpdir(), 'gpumesh-bench-connections-'))
const children: ChildProcess[] = []
// Enrollment reuses connections; its agent is destroyed before the ramp so it holds no coordinator descriptors.
const enrollAgent = new Agent({ keepAlive: true, maxSockets: 64 })
let httpAgent = enrollAgent

type Coordinator = {
  readonly child: ChildProcess
  readonly url: string
  readonly pid: number
  readonly database: string | null
  /** Coordinator log lines (stderr): counted, and counted per distinct message. */
  readonly logs: { count: number; byMessage: Map<string, number> }
  stats(collectFirst?: boolean): Promise<CoordinatorStats>
  /** Sends a command line and waits for the reply line with this event. */
  command(line: string, event: string, timeoutMs: number): Promise<Record<string, unknown>>
  readonly exited: Promise<void>
}
type CoordinatorStats = {
  rssBytes: number
  heapUsedBytes: number
  eventLoopDelayMs: { p50: number; p99: number; max: number }
  presenceConnected: number
  indexSize: number
}

let coordinator: Coordinator | undefined
let cleaningUp: Promise<void> | undefined

// ---------------------------------------------------------------------------------------------------------

async function startCoordinator(): Promise<Coordinator> {
  const execArgv: string[] = ['--expose-gc']
  if (flags['coordinator-cpu-prof']) {
    const dir = join(here, 'results')
    mkdirSync(dir, { recursive: true })
    execArgv.push('--cpu-prof', `--cpu-prof-dir=${dir}`)
  }
  const child = spawn(
    process.execPath,
    [
      ...execArgv,
      join(here, 'coordinator-process.ts'),
      '--store',
      flags.store as string,
      '--data-dir',
      tempDir,
      '--heartbeat-interval-ms',
      '10000',
      '--log-level',
      'warn',
    ],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  )
  children.push(child)
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const logs = { count: 0, byMessage: new Map<string, number>() }
  createInterface({ input: child.stderr! }).on('line', (line) => {
    logs.count += 1
    let text = line
    try {
      const entry = JSON.parse(line) as { level?: number; msg?: string; err?: { message?: string } }
      text = `level ${entry.level} "${entry.msg}"${entry.err?.message ? `: ${entry.err.message}` : ''}`
    } catch {
      // not pino JSON: keep the raw line
    }
    text = text.slice(0, 300)
    if (logs.byMessage.size < 50 || logs.byMessage.has(text))
      logs.byMessage.set(text, (logs.byMessage.get(text) ?? 0) + 1)
  })
  const waiting: ((line: Record<string, unknown>) => boolean)[] = []
  createInterface({ input: child.stdout! }).on('line', (line) => {
    let parsed: Record<string, unknown>
    try {
      parsed = JSON.parse(line) as Record<string, unknown>
    } catch {
      return
    }
    const index = waiting.findIndex((accept) => accept(parsed))
    if (index >= 0) waiting.splice(index, 1)
  })
  const next = (event: string, timeoutMs: number) =>
    withTimeout(
      new Promise<Record<string, unknown>>((resolve, reject) => {
        waiting.push((line) => (line['event'] === event ? (resolve(line), true) : false))
        void exited.then(() =>
          reject(
            new Error(`coordinator exited (waiting for ${event}): ${[...logs.byMessage.keys()].join('\n')}`),
          ),
        )
      }),
      timeoutMs,
      `coordinator ${event}`,
    )
  const ready = await next('ready', 120_000)
  return {
    child,
    url: ready['url'] as string,
    pid: ready['pid'] as number,
    database: (ready['database'] as string | null) ?? null,
    logs,
    exited,
    async stats(collectFirst = false) {
      const reply = next('stats', 30_000)
      child.stdin!.write(collectFirst ? 'stats gc\n' : 'stats\n')
      return (await reply) as unknown as CoordinatorStats
    },
    async command(line, event, timeoutMs) {
      const reply = next(event, timeoutMs)
      child.stdin!.write(`${line}\n`)
      return reply
    },
  }
}

function http<T>(method: string, path: string, body?: unknown, apiKey?: string): Promise<T> {
  const url = new URL(path, coordinator!.url)
  const payload = body === undefined ? undefined : JSON.stringify(body)
  return withTimeout(
    new Promise<T>((resolve, reject) => {
      const req = request(
        url,
        {
          method,
          agent: httpAgent,
          headers: {
            ...(payload === undefined ? {} : { 'content-type': 'application/json' }),
            ...(apiKey ? { authorization: `Bearer ${apiKey}` } : {}),
          },
        },
        (res) => {
          const chunks: Buffer[] = []
          res.on('data', (chunk: Buffer) => chunks.push(chunk))
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8')
            if ((res.statusCode ?? 500) >= 300)
              reject(new Error(`${method} ${path}: ${res.statusCode} ${text}`))
            else resolve(JSON.parse(text) as T)
          })
          res.on('error', reject)
        },
      )
      req.on('error', reject)
      req.end(payload)
    }),
    30_000,
    `${method} ${path}`,
  )
}

/** Connection attempts to the HTTP API that failed (e.g. reset at accept when the coordinator is out of descriptors). */
let apiConnectFailures = 0

/** GET during the measurement: retried on connection errors (the API shares the descriptor limit with the sockets). */
async function probe<T>(path: string): Promise<T | undefined> {
  for (let attempt = 0; attempt < 10; attempt += 1) {
    try {
      return await http<T>('GET', path)
    } catch (error) {
      if (!/ECONNRESET|socket hang up|ECONNREFUSED|EPIPE/.test(String(error))) throw error
      apiConnectFailures += 1
      await sleep(300)
    }
  }
  return undefined
}

async function enrollDevices(count: number): Promise<Omit<SwarmClient, 'localAddress'>[]> {
  const signup = await http<{ apiKey: { key: string } }>('POST', '/v1/accounts', {
    name: 'bench-supplier',
    roles: ['supplier'],
  })
  const apiKey = signup.apiKey.key
  const startedAt = performance.now()
  let done = 0
  const progress = setInterval(() => log(`  enrolled ${done}/${count} (${elapsed(startedAt)})`), 5000)
  try {
    return await mapConcurrent(
      Array.from({ length: count }, (_, index) => index),
      enrollConcurrency,
      async () => {
        if (Date.now() > deadlineMs) throw new Error('--max-minutes reached while enrolling')
        const { privateKey, publicKey } = generateKeyPairSync('ed25519')
        const jwk = privateKey.export({ format: 'jwk' })
        const x = publicKey.export({ format: 'jwk' }).x as string
        const { token } = await http<{ token: string }>(
          'POST',
          '/v1/enrollment-tokens',
          { ttlSeconds: 3600 },
          apiKey,
        )
        const signature = sign(null, Buffer.from(enrollmentSigningPayload(token)), privateKey).toString(
          'base64url',
        )
        const { deviceId } = await http<{ deviceId: string }>('POST', '/v1/worker/enroll', {
          token,
          publicKey: x,
          signature,
        })
        done += 1
        return { deviceId, d: jwk.d as string, x }
      },
    )
  } finally {
    clearInterval(progress)
  }
}

type Swarm = {
  readonly child: ChildProcess
  counters: SwarmCounters
  connectMs: number[]
  rampDone: boolean
  /** performance.now() when its ramp-done arrived. */
  rampDoneAt: number
  snapshot(): Promise<SwarmCounters>
}

function startSwarm(clients: SwarmClient[], maxInFlight: number): Swarm {
  const child = fork(join(here, 'worker-swarm.ts'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  children.push(child)
  const snapshots: ((counters: SwarmCounters) => void)[] = []
  const swarm: Swarm = {
    child,
    counters: {} as SwarmCounters,
    connectMs: [],
    rampDone: false,
    rampDoneAt: 0,
    snapshot: () =>
      withTimeout(
        new Promise<SwarmCounters>((resolve) => {
          snapshots.push(resolve)
          child.send({ type: 'snapshot' })
        }),
        30_000,
        'swarm snapshot',
      ),
  }
  child.on('message', (message: SwarmReply) => {
    swarm.counters = message.counters
    if (message.type === 'ramp-done') {
      swarm.rampDone = true
      swarm.rampDoneAt = performance.now()
      swarm.connectMs = message.connectMs
    } else if (message.type === 'snapshot') snapshots.shift()?.(message.counters)
  })
  const start: SwarmStart = { type: 'start', url: coordinator!.url, clients, maxInFlight, welcomeTimeoutMs }
  child.send(start)
  return swarm
}

function addCounters(list: readonly SwarmCounters[]): SwarmCounters {
  const total = emptySwarmCounters()
  for (const counters of list) {
    for (const key of Object.keys(total) as (keyof SwarmCounters)[]) {
      const value = counters[key]
      if (typeof value === 'number') (total[key] as number) += value
    }
    for (const [code, count] of Object.entries(counters.closeCodes ?? {}))
      total.closeCodes[code] = (total.closeCodes[code] ?? 0) + count
    total.errorSamples.push(...(counters.errorSamples ?? []))
  }
  return total
}

/**
 * CPU used by the PostgreSQL backends serving the test database (postgres store only). Backends come and go
 * (the pool closes idle clients), so each is sampled every second and its growth summed: a backend that exits
 * between two samples loses at most a second of its CPU.
 */
class PostgresBackendCpu {
  readonly #database: string
  readonly #seen = new Map<number, { first: number; last: number }>()

  constructor(database: string) {
    this.#database = database
  }

  /** The first call sets the baseline of the backends alive then; backends started later count from 0. */
  sample(): void {
    const baseline = this.#seen.size === 0
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue
      try {
        const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8')
        if (!cmdline.startsWith('postgres:') || !cmdline.includes(` ${this.#database} `)) continue
        const cpu = processCpuSeconds(Number(entry))
        if (cpu === undefined) continue
        const known = this.#seen.get(Number(entry))
        if (known) known.last = cpu
        else this.#seen.set(Number(entry), { first: baseline ? cpu : 0, last: cpu })
      } catch {
        // gone meanwhile
      }
    }
  }

  get cpuSeconds(): number {
    let total = 0
    for (const { first, last } of this.#seen.values()) total += last - first
    return total
  }
}

async function cleanup(): Promise<void> {
  cleaningUp ??= (async () => {
    for (const child of children) {
      if (child.exitCode === null && child.connected) child.send({ type: 'stop' })
    }
    if (coordinator && coordinator.child.exitCode === null) {
      coordinator.child.stdin!.write('stop\n')
      await withTimeout(coordinator.exited, 90_000, 'coordinator exit').catch(() => undefined)
    }
    await sleep(500)
    for (const child of children) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    }
    // The coordinator drops its own test database; if it had to be killed, drop it here.
    if (coordinator?.database && coordinator.child.signalCode === 'SIGKILL') {
      const admin = new pg.Client({ connectionString: testPostgresAdminUrl })
      await admin.connect()
      await admin
        .query(`DROP DATABASE IF EXISTS ${coordinator.database} WITH (FORCE)`)
        .finally(() => admin.end())
    }
    enrollAgent.destroy()
    httpAgent.destroy()
    rmSync(tempDir, { recursive: true, force: true })
  })()
  return cleaningUp
}

// ---------------------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const limits = openFilesLimit()
  const perSwarm = Math.ceil(workers / swarmCount)
  log(
    `worker-connections: ${workers} workers, ${swarmCount} swarm process(es), store ${flags.store}, hold ${holdSeconds} s`,
  )
  log(`open files limit (this shell, inherited by the children): soft ${limits.soft}, hard ${limits.hard}`)
  // The coordinator's own descriptors: ~110 with PGlite (its data files), ~25 with PostgreSQL, plus HTTP.
  const needed = workers + 150
  if (limits.soft < needed) {
    const advice =
      limits.hard >= needed
        ? `raise it first: \`ulimit -n ${Math.min(limits.hard, 1_048_576)}\``
        : `the hard limit ${limits.hard} is too low as well: raising it needs root / CAP_SYS_RESOURCE` +
          ` (\`ulimit -Hn 1048576\` as root, LimitNOFILE= under systemd, docker --ulimit nofile=1048576:1048576)`
    log(
      `  WARNING: the coordinator needs about ${needed} descriptors (one per worker plus ~150 of its own);` +
        ` with ${limits.soft} it holds at most ~${limits.soft - 150} workers with PGlite. ${advice}.` +
        ` Workers past that are reset at accept (EMFILE).`,
    )
  }
  if (limits.soft < perSwarm + 64)
    log(`  WARNING: each swarm needs about ${perSwarm + 64} descriptors; use more --swarms.`)

  let phase = performance.now()
  coordinator = await startCoordinator()
  const coordinatorPid = coordinator.pid
  log(`coordinator pid ${coordinatorPid} at ${coordinator.url}, started in ${elapsed(phase)}`)
  const idleRssBytes = processMemory(coordinatorPid)?.rssBytes ?? 0
  const idleHeapBytes = (await coordinator.stats(true)).heapUsedBytes
  log(`  idle: RSS ${mib(idleRssBytes)}, ${openFileCount(coordinatorPid)} open fds`)

  phase = performance.now()
  const devices = await enrollDevices(workers)
  const enrollSeconds = (performance.now() - phase) / 1000
  enrollAgent.destroy()
  httpAgent = new Agent({ keepAlive: false })
  log(
    `enrolled ${devices.length} devices over HTTP in ${enrollSeconds.toFixed(1)} s (${(devices.length / enrollSeconds).toFixed(0)}/s)`,
  )

  // Ramp
  const clients: SwarmClient[] = devices.map((device, index) => ({
    ...device,
    localAddress: `127.0.0.${1 + Math.floor(index / clientsPerAddress)}`,
  }))
  const addresses = Math.ceil(workers / clientsPerAddress)
  log(`ramp: ${wave} handshakes in flight, source addresses 127.0.0.1..127.0.0.${addresses}`)
  const cpuBeforeRamp = processCpuSeconds(coordinatorPid) ?? 0
  const rampStart = performance.now()
  const swarms: Swarm[] = []
  for (let index = 0; index < swarmCount; index += 1) {
    // Interleaved, so every swarm spreads over every source address.
    swarms.push(
      startSwarm(
        clients.filter((_, position) => position % swarmCount === index),
        Math.max(1, Math.floor(wave / swarmCount)),
      ),
    )
  }
  let lastCpu = cpuBeforeRamp
  let lastTick = performance.now()
  let rampCpuAtEnd = cpuBeforeRamp
  while (!swarms.every((swarm) => swarm.rampDone)) {
    if (Date.now() > deadlineMs) throw new Error('--max-minutes reached during the ramp')
    if (coordinator.child.exitCode !== null || coordinator.child.signalCode !== null)
      throw new Error('the coordinator died during the ramp')
    await sleep(100)
    rampCpuAtEnd = processCpuSeconds(coordinatorPid) ?? rampCpuAtEnd
    if (performance.now() - lastTick < 5000) continue
    const total = addCounters(swarms.map((swarm) => swarm.counters))
    const cpu = processCpuSeconds(coordinatorPid) ?? lastCpu
    const now = performance.now()
    log(
      `  ${elapsed(rampStart)}: welcomed ${total.welcomed}, open ${total.open}, failed ${total.connectFailed}, auth refused ${total.authRefused}` +
        `, coordinator CPU ${((100 * (cpu - lastCpu)) / ((now - lastTick) / 1000)).toFixed(0)}%` +
        `, RSS ${mib(processMemory(coordinatorPid)?.rssBytes ?? 0)}`,
    )
    lastCpu = cpu
    lastTick = now
  }
  const rampSeconds = (Math.max(...swarms.map((swarm) => swarm.rampDoneAt)) - rampStart) / 1000
  const rampCpuSeconds = rampCpuAtEnd - cpuBeforeRamp
  const afterRamp = addCounters(swarms.map((swarm) => swarm.counters))
  const connectLatency = summarize(swarms.flatMap((swarm) => swarm.connectMs))
  const rampRss = processMemory(coordinatorPid)

  log(`settling ${settleSeconds} s`)
  await sleep(settleSeconds * 1000)

  // Hold
  const healthAtStart = await probe<{ connectedWorkers: number }>('/v1/health')
  const offersAtStart = await probe<{ total: number }>('/v1/offers?limit=1')
  await coordinator.stats() // resets the event-loop-delay histogram
  const swarmsAtStart = addCounters(await Promise.all(swarms.map((swarm) => swarm.snapshot())))
  const swarmCpuAtStart = swarms.map((swarm) => processCpuSeconds(swarm.child.pid!) ?? 0)
  const pgCpu = coordinator.database ? new PostgresBackendCpu(coordinator.database) : undefined
  pgCpu?.sample()
  const logsAtStart = coordinator.logs.count
  const holdStartCpu = processCpuSeconds(coordinatorPid) ?? 0
  const holdStart = performance.now()
  const perSecondCpu: number[] = []
  const rssSamples: number[] = []
  let previousCpu = holdStartCpu
  let previousAt = holdStart
  log(`holding ${holdSeconds} s with ${healthAtStart?.connectedWorkers ?? '(health unreachable)'} connected`)
  if (flags['profile-hold']) coordinator.child.stdin!.write('profile-start\n')
  while (performance.now() - holdStart < holdSeconds * 1000) {
    await sleep(1000)
    if (coordinator.child.exitCode !== null || coordinator.child.signalCode !== null)
      throw new Error('the coordinator died during the hold')
    const cpu = processCpuSeconds(coordinatorPid) ?? previousCpu
    const now = performance.now()
    perSecondCpu.push((100 * (cpu - previousCpu)) / ((now - previousAt) / 1000))
    rssSamples.push(processMemory(coordinatorPid)?.rssBytes ?? 0)
    pgCpu?.sample()
    previousCpu = cpu
    previousAt = now
    if (perSecondCpu.length % 10 === 0) {
      log(
        `  ${perSecondCpu.length} s: CPU last 10 s ${(perSecondCpu.slice(-10).reduce((a, b) => a + b, 0) / 10).toFixed(1)}%`,
      )
    }
  }
  const holdWallSeconds = (performance.now() - holdStart) / 1000
  const holdCpuSeconds = (processCpuSeconds(coordinatorPid) ?? 0) - holdStartCpu
  const swarmsAtEnd = addCounters(await Promise.all(swarms.map((swarm) => swarm.snapshot())))
  const swarmCpuSeconds = swarms.reduce(
    (sum, swarm, index) => sum + (processCpuSeconds(swarm.child.pid!) ?? 0) - (swarmCpuAtStart[index] ?? 0),
    0,
  )
  pgCpu?.sample()
  const pgCpuSeconds = pgCpu?.cpuSeconds ?? 0
  let profilePath: string | undefined
  if (flags['profile-hold']) {
    mkdirSync(join(here, 'results'), { recursive: true })
    const target = join(here, 'results', `coordinator-hold-${workers}-${Date.now()}.cpuprofile`)
    profilePath = (await coordinator.command(`profile-stop ${target}`, 'profile', 60_000))['path'] as string
  }
  const healthAtEnd = await probe<{ connectedWorkers: number }>('/v1/health')
  const offersAtEnd = await probe<{ total: number }>('/v1/offers?limit=1')
  const statsAtEnd = await coordinator.stats()
  const retainedHeapBytes = (await coordinator.stats(true)).heapUsedBytes
  const connectedAtEnd = healthAtEnd?.connectedWorkers ?? statsAtEnd.presenceConnected
  const memory = processMemory(coordinatorPid)
  const fds = openFileCount(coordinatorPid)

  // Report
  const heartbeats = swarmsAtEnd.heartbeatsSent - swarmsAtStart.heartbeatsSent
  const lines = [
    '',
    `RESULT worker-connections (${new Date().toISOString()}, store ${flags.store}, ${swarmCount} swarm(s))`,
    `target workers                 ${workers}`,
    `enrollment (HTTP)              ${enrollSeconds.toFixed(1)} s, ${(workers / enrollSeconds).toFixed(0)} devices/s`,
    `ramp: welcomed                 ${afterRamp.welcomed} of ${afterRamp.attempted} attempted`,
    `ramp: time / rate              ${rampSeconds.toFixed(1)} s, ${(afterRamp.welcomed / rampSeconds).toFixed(0)} connects/s`,
    `ramp: handshake->welcome ms    p50 ${ms(connectLatency.p50)}  p95 ${ms(connectLatency.p95)}  p99 ${ms(connectLatency.p99)}  max ${ms(connectLatency.max)}`,
    `ramp: coordinator CPU          ${rampCpuSeconds.toFixed(1)} s (${((100 * rampCpuSeconds) / rampSeconds).toFixed(0)}% of one core)` +
      `, RSS after ramp ${mib(rampRss?.rssBytes ?? 0)}`,
    `ramp: failures                 connect ${afterRamp.connectFailed}, auth refused ${afterRamp.authRefused}`,
    `hold: connected (coordinator)  ${healthAtStart?.connectedWorkers ?? 'unreachable'} at start,` +
      ` ${healthAtEnd?.connectedWorkers ?? 'unreachable'} at end (GET /v1/health); presence ${statsAtEnd.presenceConnected} at end`,
    `hold: API connects reset       ${apiConnectFailures} (GETs to /v1/health and /v1/offers that were reset and retried)`,
    `hold: open sockets (swarms)    ${swarmsAtEnd.open}`,
    `hold: listed offers            ${offersAtStart?.total ?? 'unreachable'} at start, ${offersAtEnd?.total ?? 'unreachable'} at end` +
      ` (GET /v1/offers total; every worker asks a price)`,
    `hold: window                   ${holdWallSeconds.toFixed(1)} s`,
    `hold: coordinator CPU          ${((100 * holdCpuSeconds) / holdWallSeconds).toFixed(1)}% of one core (${holdCpuSeconds.toFixed(2)} s CPU)` +
      `, busiest second ${Math.max(...perSecondCpu).toFixed(0)}%`,
    `hold: CPU per heartbeat        ${heartbeats > 0 ? ((1e6 * holdCpuSeconds) / heartbeats).toFixed(0) : '-'} us (all coordinator work / heartbeats)`,
    `hold: coordinator RSS          ${mib(memory?.rssBytes ?? 0)} at end, max sampled ${mib(Math.max(...rssSamples))}, peak (VmHWM) ${mib(memory?.peakRssBytes ?? 0)}` +
      `, heap used ${mib(statsAtEnd.heapUsedBytes)}`,
    `hold: heap per connected worker ${connectedAtEnd > 0 ? ((retainedHeapBytes - idleHeapBytes) / connectedAtEnd / 1024).toFixed(1) : '-'} KiB` +
      ` ((heap after full GC ${mib(retainedHeapBytes)} - idle ${mib(idleHeapBytes)}) / connected)`,
    `hold: RSS per connected worker ${connectedAtEnd > 0 ? (((memory?.rssBytes ?? 0) - idleRssBytes) / connectedAtEnd / 1024).toFixed(1) : '-'} KiB` +
      ` ((RSS at end - idle RSS ${mib(idleRssBytes)}) / connected)`,
    `hold: event-loop delay ms      p50 ${ms(statsAtEnd.eventLoopDelayMs.p50)}  p99 ${ms(statsAtEnd.eventLoopDelayMs.p99)}  max ${ms(statsAtEnd.eventLoopDelayMs.max)}`,
    `hold: heartbeats sent          ${heartbeats} (${(heartbeats / holdWallSeconds).toFixed(0)}/s)`,
    `hold: closes after welcome     ${swarmsAtEnd.closedAfterWelcome - swarmsAtStart.closedAfterWelcome}` +
      `, error frames ${swarmsAtEnd.errorFramesAfterWelcome - swarmsAtStart.errorFramesAfterWelcome}`,
    `hold: load generator CPU       ${((100 * swarmCpuSeconds) / holdWallSeconds).toFixed(1)}% of one core (all swarms)`,
    ...(coordinator.database
      ? [`hold: postgres backends CPU    ${((100 * pgCpuSeconds) / holdWallSeconds).toFixed(1)}% of one core`]
      : []),
    `coordinator open fds           ${fds ?? '-'}, index entries ${statsAtEnd.indexSize}`,
    `coordinator log lines          ${coordinator.logs.count} (${coordinator.logs.count - logsAtStart} during the hold)`,
    `all failures, whole run        connect ${swarmsAtEnd.connectFailed}, auth refused ${swarmsAtEnd.authRefused}` +
      `, closed after welcome ${swarmsAtEnd.closedAfterWelcome}, close codes ${JSON.stringify(swarmsAtEnd.closeCodes)}`,
  ]
  for (const line of lines) log(line)
  if (profilePath)
    log(
      `CPU profile of the hold window: ${profilePath}\n  summarize: node bench/cpuprofile-summary.ts ${profilePath}`,
    )
  if (swarmsAtEnd.errorSamples.length > 0)
    log(`failure samples:\n  ${[...new Set(swarmsAtEnd.errorSamples)].join('\n  ')}`)
  if (coordinator.logs.byMessage.size > 0) {
    log(
      `coordinator log lines by message:\n  ${[...coordinator.logs.byMessage].map(([text, count]) => `${count} x ${text}`).join('\n  ')}`,
    )
  }
}

process.on('SIGINT', () => {
  log('interrupted: cleaning up')
  void cleanup().finally(() => process.exit(130))
})

try {
  await main()
  process.exitCode = 0
} catch (error) {
  process.stderr.write(`worker-connections failed: ${(error as Error).stack ?? String(error)}\n`)
  if (coordinator?.logs.byMessage.size) {
    process.stderr.write(
      `coordinator log lines:\n  ${[...coordinator.logs.byMessage].map(([text, count]) => `${count} x ${text}`).join('\n  ')}\n`,
    )
  }
  process.exitCode = 1
} finally {
  log('cleaning up')
  await cleanup()
  log('done')
  process.exit()
}
