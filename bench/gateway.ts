// The inference gateway's cost: what a request through the coordinator's OpenAI-compatible gateway adds to
// the same request sent straight to the model replica, both measured in the same run, and the requests per
// second each path serves at saturation with the repository's tiny model (python/models/tiny-chat).
// Target: the gateway adds under 5 ms at p99 below saturation.
//
// Method
//   1. Starts the real processes with the CLI, each in its own process group: a coordinator on PGlite in a
//      temporary dataDir (`--store postgres`: on a fresh database at GPUMESH_TEST_POSTGRES_URL, dropped after;
//      PGlite runs inside the coordinator's process, PostgreSQL in its own) (127.0.0.1, a port the kernel picks, proof-of-compute off, 1,000,000 inference
//      requests a minute per key, settlement every 500 ms, serving plan every 500 ms, log level warn), and one
//      worker agent with --serve-models, which runs Ray Serve in its sandbox (own network namespace, user
//      nobody, Ray with one CPU, one Serve replica) behind its relay. The operator pushes tiny-chat with
//      `gpumesh model push` and asks for exactly one replica; a renter is credited 10,000 GMT. The replica's
//      own address comes from the worker's "model replica ready" log line.
//   2. Two targets get the same body, {"model":"tiny-chat","prompt":"Hi","max_tokens":1,"temperature":0}:
//        gateway  POST {coordinator}/v1/completions with the renter's key: authentication (cached), rate
//                 limit, price, the most the request can cost reserved in memory, then undici to the worker's
//                 relay (token check), which forwards over the veth pair to Ray Serve; the answer comes back
//                 the same way and the request is charged at the next settlement;
//        direct   POST {replica}/v1/completions: Ray Serve's HTTP proxy itself, no key, no relay.
//      Each target has its own undici Pool (keep-alive connections). A request is timed from the call to the
//      last byte of the answer, and is an error unless the status is 200.
//   3. Latency below saturation: one request at a time, direct and gateway alternating (direct, gateway,
//      direct, ...) so both see the same machine: `--warmup-pairs` (100) not counted, then `--pairs` (2000).
//      Reports p50/p90/p99/max of each, the difference of each percentile (gateway - direct), and the
//      p50/p90/p99 of the paired differences (gateway - direct of the same pair).
//   4. Saturation: for each concurrency in `--levels` (1,2,4,8,16,32), `--seconds` (8) of closed-loop clients
//      (each sends its next request as soon as its last answer arrives) against the gateway, then the same
//      against direct, with a second's pause between runs. Requests/s counts the answers completed inside the
//      window (those still in flight when it closes are awaited, not counted); p50/p99 of those; errors.
//   Both phases report the CPU each part used per answered request, from /proc/<pid>/stat: the coordinator,
//   the worker agent (its relay), and in the replica's namespace Serve's HTTP proxy actor, the Serve replica
//   actor and the rest of Ray (launcher, raylet, GCS, controller, agents); this process (the load); and the
//   rest of the machine's busy time (/proc/stat: other work, the kernel, PostgreSQL's backends with
//   --store postgres), with the machine's busy share of its cores.
//   5. Money: waits for settlement, then GET /v1/explorer/inference must count, for tiny-chat:1.0.0, exactly
//      the gateway requests that were answered 200 (all phases, warm-up included), and GET /v1/ledger/verify
//      (operator key) must say ok. Both are printed; exit code 1 when either fails.
//   6. Prints the figures as tables and one JSON line (stdout; progress goes to stderr). Cleans up, also on
//      failure, Ctrl-C or --max-minutes: SIGTERM to the worker (it drains and removes the replica's
//      namespace; SIGKILL to its process group after 30 s, then cleanUpModelReplicaLeftovers), then to the
//      coordinator, then drops the test database and removes the temporary directory.
//
// Run as root (the replica's sandbox needs it) with .venv holding Ray Serve and torch (scripts/setup-python.sh);
// about 3 minutes with the defaults, the first replica start included:
//   node bench/gateway.ts
//   node bench/gateway.ts --pairs 200 --warmup-pairs 20 --levels 1,4,16 --seconds 3     # a quick look
//   node bench/gateway.ts --store postgres  # the coordinator on a fresh PostgreSQL test database instead
//   node bench/gateway.ts --cpu-prof        # + CPU profiles of the coordinator and the worker in bench/results/
//   node bench/cpuprofile-summary.ts bench/results/gateway-coordinator-<time>.cpuprofile
//
// Bounded: --max-minutes (default 15) stops the run and cleans up; every request has a 60 s timeout, every
// wait for the system a deadline.

import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { availableParallelism, loadavg, tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import { createInterface } from 'node:readline'
import { parseArgs, promisify } from 'node:util'
import { createTestDatabase, type TestDatabase } from '@gpumesh/testing'
import { cleanUpModelReplicaLeftovers } from '@gpumesh/worker'
import { Pool } from 'undici'
import {
  machineBusyCpuSeconds,
  ms,
  processCpuSeconds,
  sleep,
  summarize,
  table,
  withTimeout,
  type Summary,
} from './common.ts'

const { values: flags } = parseArgs({
  options: {
    pairs: { type: 'string', default: '2000' },
    'warmup-pairs': { type: 'string', default: '100' },
    levels: { type: 'string', default: '1,2,4,8,16,32' },
    seconds: { type: 'string', default: '8' },
    'settle-ms': { type: 'string', default: '500' },
    'max-minutes': { type: 'string', default: '15' },
    /** The coordinator's store: pglite (embedded, in its process) or postgres (a fresh test database). */
    store: { type: 'string', default: 'pglite' },
    /** CPU profiles of the coordinator and the worker agent, whole run, in bench/results/. */
    'cpu-prof': { type: 'boolean', default: false },
  },
})
const pairCount = Number(flags.pairs)
const warmupPairCount = Number(flags['warmup-pairs'])
const levels = flags.levels.split(',').map(Number)
const windowMs = Number(flags.seconds) * 1000
if (
  !Number.isInteger(pairCount) ||
  pairCount < 1 ||
  !Number.isInteger(warmupPairCount) ||
  warmupPairCount < 0 ||
  levels.some((level) => !Number.isInteger(level) || level < 1 || level > 256) ||
  !(windowMs > 0)
)
  throw new Error('--pairs ≥ 1, --warmup-pairs ≥ 0, --levels integers 1..256, --seconds > 0')
if (flags.store !== 'pglite' && flags.store !== 'postgres')
  throw new Error('--store must be pglite or postgres')
const storeName = flags.store === 'postgres' ? 'PostgreSQL' : 'PGlite'

const repoRoot = new URL('..', import.meta.url).pathname
const cli = join(repoRoot, 'packages/cli/src/main.ts')
const tinyModel = join(repoRoot, 'python/models/tiny-chat')
const modelKey = 'tiny-chat:1.0.0'
const targetAddedP99Ms = 5
const requestBody = JSON.stringify({ model: 'tiny-chat', prompt: 'Hi', max_tokens: 1, temperature: 0 })
const requestTimeoutMs = 60_000
const replicaReadyTimeoutMs = 240_000
const settlementTimeoutMs = 30_000
const workerStopGraceMs = 30_000
const coordinatorStopGraceMs = 30_000
/** Log lines kept per process to explain a failure. */
const logTailLines = 40

const run = promisify(execFile)
const progress = (text: string) => process.stderr.write(`gateway bench: ${text}\n`)
const out = (text: string) => process.stdout.write(`${text}\n`)

type Child = {
  readonly name: string
  readonly process: ChildProcess
  readonly exited: Promise<void>
  readonly tail: string[]
  /** Lines at warn or above (pino level ≥ 40, or the worker's "warn"/"error"). */
  readonly warnings: string[]
}

const tempDir = mkdtempSync(join(tmpdir(), 'gpumesh-bench-gateway-'))
// The replica runs as nobody and reads its model under the worker's state directory.
chmodSync(tempDir, 0o711)
const workerStateDir = join(tempDir, 'worker')
let database: TestDatabase | undefined
let coordinator: Child | undefined
let worker: Child | undefined
const pools: Pool[] = []
let cleaningUp: Promise<void> | undefined
/** Set with the reason when a signal or --max-minutes stops the run. */
let stopExitCode: number | undefined

const profileStamp = new Date().toISOString().replaceAll(':', '-')
const profileDir = join(repoRoot, 'bench/results')
const profilePath = (name: string) => join(profileDir, `gateway-${name}-${profileStamp}.cpuprofile`)

function startChild(
  name: string,
  args: string[],
  onLine?: (line: string) => void,
  env: NodeJS.ProcessEnv = process.env,
): Child {
  if (flags['cpu-prof']) mkdirSync(profileDir, { recursive: true })
  const nodeArgs = flags['cpu-prof']
    ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${basename(profilePath(name))}`]
    : []
  const child = spawn(process.execPath, [...nodeArgs, ...args], {
    // Its own process group: Ctrl-C reaches only this script, which then stops the children in order.
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env,
  })
  const tail: string[] = []
  const warnings: string[] = []
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  for (const stream of [child.stdout!, child.stderr!]) {
    createInterface({ input: stream }).on('line', (line) => {
      tail.push(line)
      if (tail.length > logTailLines) tail.shift()
      if (/"level":(4\d|5\d|6\d|"warn"|"error")/.test(line)) warnings.push(line)
      onLine?.(line)
    })
  }
  return { name, process: child, exited, tail, warnings }
}

const running = (child: Child): boolean =>
  child.process.exitCode === null && child.process.signalCode === null

/** SIGTERM, then after graceMs SIGKILL to its whole process group. True when it stopped on its own. */
async function stopChild(child: Child | undefined, graceMs: number): Promise<boolean> {
  if (!child || !running(child)) return true
  child.process.kill('SIGTERM')
  const stopped = await Promise.race([child.exited.then(() => true), sleep(graceMs).then(() => false)])
  if (stopped) return true
  progress(`${child.name} did not stop within ${graceMs} ms: killing its process group`)
  try {
    process.kill(-child.process.pid!, 'SIGKILL')
  } catch {
    // already gone
  }
  await Promise.race([child.exited, sleep(5_000)])
  return false
}

async function cleanup(): Promise<void> {
  cleaningUp ??= (async () => {
    await Promise.allSettled(pools.map((pool) => pool.destroy()))
    await stopChild(worker, workerStopGraceMs)
    // Whatever the worker left of its replica (processes, veth pair, namespace, temp dir); nothing if it
    // stopped cleanly.
    const removed = await cleanUpModelReplicaLeftovers(workerStateDir).catch((error: unknown) => {
      progress(`removing the replica's leftovers failed: ${String(error)}`)
      return 0
    })
    if (removed > 0) progress(`removed the leftovers of ${removed} replica(s)`)
    await stopChild(coordinator, coordinatorStopGraceMs)
    await database
      ?.drop()
      .catch((error: unknown) => progress(`dropping the test database failed: ${String(error)}`))
    rmSync(tempDir, { recursive: true, force: true })
  })()
  return cleaningUp
}

const abort = setTimeout(
  () => {
    progress(`over --max-minutes ${flags['max-minutes']}: stopping`)
    stopExitCode = 2
    void cleanup().finally(() => process.exit(2))
  },
  Number(flags['max-minutes']) * 60_000,
)
for (const signal of ['SIGINT', 'SIGTERM'] as const)
  process.on(signal, () => {
    progress(`${signal}: cleaning up`)
    stopExitCode = 130
    void cleanup().finally(() => process.exit(130))
  })

// ---------------------------------------------------------------------------------------------------------

/** JSON over HTTP for setting up and checking (not timed): global fetch with a deadline. */
async function api(
  baseUrl: string,
  path: string,
  options: { method?: string; key?: string; body?: unknown } = {},
): Promise<any> {
  const response = await fetch(`${baseUrl}${path}`, {
    method: options.method ?? 'GET',
    headers: {
      ...(options.key ? { authorization: `Bearer ${options.key}` } : {}),
      ...(options.body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
    signal: AbortSignal.timeout(30_000),
  })
  const text = await response.text()
  if (!response.ok) throw new Error(`${options.method ?? 'GET'} ${path}: HTTP ${response.status} ${text}`)
  return JSON.parse(text)
}

async function waitFor<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (cleaningUp) throw new Error('stopped')
    const value = await check().catch(() => undefined)
    if (value !== undefined) return value
    for (const child of [coordinator, worker])
      if (child && !running(child))
        throw new Error(`${child.name} exited while waiting for ${what}:\n  ${child.tail.join('\n  ')}`)
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(250)
  }
}

type Target = {
  readonly name: 'gateway' | 'direct'
  readonly pool: Pool
  readonly headers: Record<string, string>
}

let gatewayAnswered = 0
let gatewayErrors = 0

/** One request; its latency in ms, or undefined for an error. Throws once the run is being stopped. */
async function send(target: Target): Promise<number | undefined> {
  if (cleaningUp) throw new Error('stopped')
  const started = performance.now()
  try {
    const response = await target.pool.request({
      path: '/v1/completions',
      method: 'POST',
      headers: target.headers,
      body: requestBody,
    })
    await response.body.text()
    const latencyMs = performance.now() - started
    if (response.statusCode !== 200) {
      if (target.name === 'gateway') gatewayErrors += 1
      return undefined
    }
    if (target.name === 'gateway') gatewayAnswered += 1
    return latencyMs
  } catch {
    if (target.name === 'gateway') gatewayErrors += 1
    return undefined
  }
}

/** CPU seconds so far of each part, and of the whole machine. */
type CpuSnapshot = {
  atMs: number
  machine: number
  coordinator: number
  /** The worker agent: its relay is what the gateway path adds on the worker's side. */
  worker: number
  /** Ray Serve's HTTP proxy actor, which the direct path calls. */
  proxy: number
  /** The Serve replica actor running the model. */
  replica: number
  /** Everything else in the replica's namespace: the launcher, raylet, GCS, Serve's controller, agents. */
  ray: number
  /** This process. */
  load: number
}
type CpuPart = Exclude<keyof CpuSnapshot, 'atMs' | 'machine'>
const cpuParts: readonly CpuPart[] = ['coordinator', 'worker', 'proxy', 'replica', 'ray', 'load']

/** Processes in the replica's network namespace: its launcher and everything of Ray and Serve. */
function namespacePids(namespace: string): number[] {
  try {
    return execFileSync('ip', ['netns', 'pids', namespace], {
      encoding: 'utf8',
      timeout: 10_000,
      stdio: ['ignore', 'pipe', 'ignore'],
    })
      .split('\n')
      .filter(Boolean)
      .map(Number)
  } catch {
    return []
  }
}

/** Ray names its actor processes after the actor ("ray::ProxyActor", "ray::ServeReplica:app:Deployment"). */
function rayPartOf(pid: number): 'proxy' | 'replica' | 'ray' {
  let command = ''
  try {
    command = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
  } catch {
    // gone
  }
  if (command.startsWith('ray::ProxyActor')) return 'proxy'
  if (command.startsWith('ray::ServeReplica')) return 'replica'
  return 'ray'
}

function cpuSnapshot(namespace: string): CpuSnapshot {
  const usage = process.cpuUsage()
  const snapshot: CpuSnapshot = {
    atMs: performance.now(),
    machine: machineBusyCpuSeconds(),
    coordinator: processCpuSeconds(coordinator!.process.pid!) ?? 0,
    worker: processCpuSeconds(worker!.process.pid!) ?? 0,
    proxy: 0,
    replica: 0,
    ray: 0,
    load: (usage.user + usage.system) / 1e6,
  }
  for (const pid of namespacePids(namespace)) snapshot[rayPartOf(pid)] += processCpuSeconds(pid) ?? 0
  return snapshot
}

/** Milliseconds of CPU per request by part; rest is the machine's other busy time (other work, the kernel). */
type CpuPerRequest = Record<CpuPart | 'rest', number> & {
  /** Busy share of all the machine's cores over the window. */
  machineBusyShare: number
}

function cpuPerRequest(before: CpuSnapshot, after: CpuSnapshot, requests: number): CpuPerRequest {
  const per = (seconds: number) => (requests > 0 ? (seconds * 1000) / requests : NaN)
  const delta = (key: CpuPart | 'machine') => after[key] - before[key]
  const result = {
    rest: per(Math.max(0, delta('machine') - cpuParts.reduce((sum, part) => sum + delta(part), 0))),
    machineBusyShare: delta('machine') / (((after.atMs - before.atMs) / 1000) * availableParallelism()),
  } as CpuPerRequest
  for (const part of cpuParts) result[part] = per(delta(part))
  return result
}

const cpuHeader = ['coord', 'relay', 'proxy', 'replica', 'ray', 'load', 'rest'] as const
const cpuCells = (cpu: CpuPerRequest) => [...cpuParts, 'rest' as const].map((part) => ms(cpu[part]))
const cpuJson = (cpu: CpuPerRequest) =>
  Object.fromEntries(
    [...cpuParts, 'rest' as const].map((part) => [part, Math.round(cpu[part] * 1000) / 1000]),
  )

type LevelResult = {
  target: 'gateway' | 'direct'
  concurrency: number
  completed: number
  requestsPerSecond: number
  errors: number
  latency: Summary
  cpu: CpuPerRequest
}

/** Closed-loop clients for one window; answers completed inside it count. */
async function saturate(target: Target, concurrency: number, namespace: string): Promise<LevelResult> {
  const latencies: number[] = []
  let errors = 0
  let open = true
  const before = cpuSnapshot(namespace)
  const startedAt = performance.now()
  const endsAt = startedAt + windowMs
  const lanes = Array.from({ length: concurrency }, async () => {
    while (open && !cleaningUp) {
      const latencyMs = await send(target).catch(() => undefined)
      if (performance.now() > endsAt) break
      if (latencyMs === undefined) errors += 1
      else latencies.push(latencyMs)
    }
  })
  await sleep(windowMs)
  open = false
  const after = cpuSnapshot(namespace)
  await withTimeout(Promise.all(lanes), requestTimeoutMs + 5_000, 'the last requests of a window')
  if (cleaningUp) throw new Error('stopped')
  return {
    target: target.name,
    concurrency,
    completed: latencies.length,
    requestsPerSecond: latencies.length / ((after.atMs - startedAt) / 1000),
    errors,
    latency: summarize(latencies),
    cpu: cpuPerRequest(before, after, latencies.length),
  }
}

async function main(): Promise<number> {
  const startedAt = new Date()
  const loadAtStart = loadavg()
  progress(`temporary directory ${tempDir}`)
  if (process.getuid?.() !== 0)
    throw new Error('run as root: the replica sandbox (network namespace) needs it')
  if (!existsSync(join(repoRoot, '.venv/bin/python')))
    throw new Error('needs .venv with Ray Serve and torch (scripts/setup-python.sh)')

  // 1. The coordinator.
  const configPath = join(tempDir, 'coordinator.json')
  const dataDir = join(tempDir, 'coordinator')
  writeFileSync(
    configPath,
    JSON.stringify({
      host: '127.0.0.1',
      port: 0,
      dataDir,
      verificationEnabled: false,
      inferenceRequestsPerMinute: 1_000_000,
      inferenceSettleMs: Number(flags['settle-ms']),
      modelServingPlanMs: 500,
      logLevel: 'warn',
    }),
  )
  let coordinatorUrl: string | undefined
  // The CLI takes PostgreSQL from DATABASE_URL; the dataDir then holds only the operator key.
  if (flags.store === 'postgres') database = await createTestDatabase()
  coordinator = startChild(
    'coordinator',
    [cli, 'coordinator', 'start', '--config', configPath],
    (line) => {
      coordinatorUrl ??= /listening on (http:\/\/\S+)/.exec(line)?.[1]
    },
    database ? { ...process.env, DATABASE_URL: database.connectionString } : process.env,
  )
  const baseUrl = await waitFor('the coordinator to listen', 60_000, async () => coordinatorUrl)
  const operatorKey = readFileSync(join(dataDir, 'operator.key'), 'utf8').trim()
  progress(`coordinator at ${baseUrl} (pid ${coordinator.process.pid})`)

  // Accounts, funds, the model.
  const supplier = await api(baseUrl, '/v1/accounts', {
    method: 'POST',
    body: { name: 'bench supplier', roles: ['supplier'] },
  })
  const renter = await api(baseUrl, '/v1/accounts', {
    method: 'POST',
    body: { name: 'bench renter', roles: ['renter'] },
  })
  await api(baseUrl, '/v1/operator/credits', {
    method: 'POST',
    key: operatorKey,
    body: { accountId: renter.account.id, amountGmt: '10000', reason: 'gateway benchmark' },
  })
  await run(process.execPath, [cli, 'model', 'push', tinyModel], {
    env: {
      ...process.env,
      GPUMESH_COORDINATOR: baseUrl,
      GPUMESH_API_KEY: operatorKey,
      GPUMESH_CONFIG_DIR: join(tempDir, 'cli'),
    },
    timeout: 60_000,
  })
  await api(baseUrl, '/v1/store/models/tiny-chat/1.0.0/serving', {
    method: 'PUT',
    key: operatorKey,
    body: { minReplicas: 1, maxReplicas: 1 },
  })

  // 2. The worker, serving models.
  const { token } = await api(baseUrl, '/v1/enrollment-tokens', {
    method: 'POST',
    key: supplier.apiKey.key,
    body: {},
  })
  let replica: { replicaUrl: string; namespace: string; startupMs: number } | undefined
  const replicaStartedAt = performance.now()
  worker = startChild(
    'worker',
    [
      cli,
      'worker',
      'start',
      '--coordinator',
      baseUrl,
      '--state-dir',
      workerStateDir,
      '--token',
      token,
      '--region',
      'bench',
      '--country',
      'DE',
      '--price-per-gpu-hour',
      '0.50',
      '--serve-models',
      '--serve-host',
      '127.0.0.1',
      '--speedtest-interval-ms',
      '0',
      '--no-clusters',
      '--cluster-node-cpus',
      '1',
      '--ray-object-store-memory-bytes',
      String(100 * 1024 * 1024),
      '--log-level',
      'info',
    ],
    (line) => {
      if (replica || !line.includes('"model replica ready"') || !line.includes('replicaUrl')) return
      const fields = JSON.parse(line) as { replicaUrl: string; namespace: string; startupMs: number }
      replica = { replicaUrl: fields.replicaUrl, namespace: fields.namespace, startupMs: fields.startupMs }
    },
  )
  const replicaUrl = await waitFor('the replica to start', replicaReadyTimeoutMs, async () => {
    if (!replica) return undefined
    const { data } = await api(baseUrl, '/v1/models')
    const served = (data as { id: string; replicas: number }[]).find((entry) => entry.id === 'tiny-chat')
    return served?.replicas === 1 ? replica.replicaUrl : undefined
  })
  const { namespace } = replica!
  progress(
    `replica ready at ${replicaUrl} after ${ms((performance.now() - replicaStartedAt) / 1000)} s ` +
      `(launcher ${ms(replica!.startupMs / 1000)} s); worker pid ${worker.process.pid}, namespace ${namespace}`,
  )

  const poolOptions = {
    connections: Math.max(...levels, 1),
    // Idle connections close after undici's default 4 s, well before either server closes them (Ray Serve
    // after 90 s, the coordinator after 72 s): a request never goes out on a connection being closed.
    headersTimeout: requestTimeoutMs,
    bodyTimeout: requestTimeoutMs,
  }
  const gateway: Target = {
    name: 'gateway',
    pool: new Pool(baseUrl, poolOptions),
    headers: { authorization: `Bearer ${renter.apiKey.key}`, 'content-type': 'application/json' },
  }
  const direct: Target = {
    name: 'direct',
    pool: new Pool(replicaUrl, poolOptions),
    headers: { 'content-type': 'application/json' },
  }
  pools.push(gateway.pool, direct.pool)
  for (const target of [direct, gateway])
    if ((await send(target)) === undefined) throw new Error(`the first request ${target.name} failed`)

  // 3. Latency below saturation: pairs, one request at a time.
  progress(`latency: ${warmupPairCount} warm-up pairs, then ${pairCount} pairs, one request at a time`)
  const directMs: number[] = []
  const gatewayMs: number[] = []
  const pairedMs: number[] = []
  const latencyErrors = { direct: 0, gateway: 0 }
  let latencyStartedAt = performance.now()
  let latencyCpuBefore = cpuSnapshot(namespace)
  for (let index = 0; index < warmupPairCount + pairCount; index += 1) {
    const directLatency = await send(direct)
    const gatewayLatency = await send(gateway)
    if (index < warmupPairCount) {
      if (index === warmupPairCount - 1) {
        latencyStartedAt = performance.now()
        latencyCpuBefore = cpuSnapshot(namespace)
      }
      continue
    }
    if (directLatency === undefined) latencyErrors.direct += 1
    else directMs.push(directLatency)
    if (gatewayLatency === undefined) latencyErrors.gateway += 1
    else gatewayMs.push(gatewayLatency)
    if (directLatency !== undefined && gatewayLatency !== undefined)
      pairedMs.push(gatewayLatency - directLatency)
  }
  const latencySeconds = (performance.now() - latencyStartedAt) / 1000
  const latencyCpu = cpuPerRequest(latencyCpuBefore, cpuSnapshot(namespace), 2 * pairCount)
  const directSummary = summarize(directMs)
  const gatewaySummary = summarize(gatewayMs)
  const pairedSummary = summarize(pairedMs)
  // The low tail of the paired differences: were the gateway a constant cost, the spread around the median
  // would be the two requests' own jitter, about as wide below it as above.
  const pairedSorted = Float64Array.from(pairedMs).sort()
  const pairedLow = (share: number) =>
    pairedSorted[Math.max(0, Math.ceil(share * pairedSorted.length) - 1)] ?? NaN

  // 4. Saturation.
  const levelResults: LevelResult[] = []
  for (const concurrency of levels) {
    for (const target of [gateway, direct]) {
      await sleep(1_000)
      const result = await saturate(target, concurrency, namespace)
      levelResults.push(result)
      progress(
        `${target.name.padEnd(7)} concurrency ${String(concurrency).padStart(3)}: ` +
          `${result.requestsPerSecond.toFixed(1)} requests/s, p50 ${ms(result.latency.p50)} ms, ` +
          `p99 ${ms(result.latency.p99)} ms, ${result.errors} errors`,
      )
    }
  }
  const peakOf = (name: 'gateway' | 'direct') =>
    levelResults
      .filter((result) => result.target === name)
      .reduce((best, result) => (result.requestsPerSecond > best.requestsPerSecond ? result : best))
  const peakGateway = peakOf('gateway')
  const peakDirect = peakOf('direct')

  // 5. Money: every gateway request answered 200 is one settled receipt, and the books balance.
  progress(`waiting for settlement of ${gatewayAnswered} gateway requests`)
  const explorerRow = async () =>
    (
      (await api(baseUrl, '/v1/explorer/inference')).models as {
        model: string
        requests: number
        spentGmt: string
        supplierEarningsGmt: string
      }[]
    ).find((entry) => entry.model === modelKey)
  const settled = await waitFor('settlement', settlementTimeoutMs, async () => {
    const row = await explorerRow()
    return row && row.requests === gatewayAnswered ? row : undefined
  }).catch(async () => explorerRow())
  const explorerRequests = settled?.requests ?? 0
  const verification = (await api(baseUrl, '/v1/ledger/verify', { key: operatorKey })) as {
    ok: boolean
    mismatched: string[]
    overdrawn: string[]
    tookMs: number
  }
  const moneyOk = explorerRequests === gatewayAnswered && verification.ok

  // 6. Figures.
  const cores = availableParallelism()
  const p = (summary: Summary) => [ms(summary.p50), ms(summary.p90), ms(summary.p99), ms(summary.max)]
  const difference = (key: 'p50' | 'p90' | 'p99' | 'max') => gatewaySummary[key] - directSummary[key]
  const addedP99Ms = difference('p99')
  out(
    `\ngateway bench, ${startedAt.toISOString()}: ${cores} CPU cores (shared by the coordinator, the worker, ` +
      `Ray Serve and this load), store ${storeName}, Node ${process.version}, load average at start ` +
      `${loadAtStart.map((value) => value.toFixed(2)).join(' ')}`,
  )
  out(
    `model tiny-chat (805,888 parameters, CPU), body ${requestBody}; one replica: Ray with 1 CPU, 1 Serve replica`,
  )
  out(
    `\nlatency below saturation: ${pairCount} pairs after ${warmupPairCount} warm-up pairs, one request at a time, ` +
      `${latencySeconds.toFixed(1)} s; errors direct ${latencyErrors.direct}, gateway ${latencyErrors.gateway}; ` +
      `machine busy ${Math.round(latencyCpu.machineBusyShare * 100)}% of ${cores} cores`,
  )
  out(
    table(
      ['path', 'n', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms'],
      [
        ['direct (Ray Serve)', directSummary.count, ...p(directSummary)],
        ['gateway', gatewaySummary.count, ...p(gatewaySummary)],
        [
          'gateway - direct (percentiles)',
          '',
          ms(difference('p50')),
          ms(difference('p90')),
          ms(difference('p99')),
          ms(difference('max')),
        ],
        ['gateway - direct (each pair)', pairedSummary.count, ...p(pairedSummary)],
      ],
    ),
  )
  out(
    `target: the gateway adds under ${targetAddedP99Ms} ms at p99 below saturation: ` +
      `${addedP99Ms < targetAddedP99Ms ? 'MET' : 'NOT MET'} (p99 ${ms(gatewaySummary.p99)} - ${ms(directSummary.p99)} = ` +
      `${ms(addedP99Ms)} ms; p99 of the paired differences ${ms(pairedSummary.p99)} ms)`,
  )
  out(
    `paired differences below the median: p1 ${ms(pairedLow(0.01))} ms, p10 ${ms(pairedLow(0.1))} ms ` +
      `(the median minus p1 is ${ms(pairedSummary.p50 - pairedLow(0.01))} ms; p99 minus the median ` +
      `${ms(pairedSummary.p99 - pairedSummary.p50)} ms)`,
  )
  out(
    `CPU ms per request, both paths together (a pair is 2 requests): ` +
      cpuHeader.map((name, index) => `${name} ${cpuCells(latencyCpu)[index]}`).join(', '),
  )
  out(
    `\nsaturation: closed-loop clients, ${windowMs / 1000} s per run, gateway then direct at each level; ` +
      `CPU ms per answered request by part: coord(inator), relay (the worker agent), Serve's HTTP proxy, ` +
      `the Serve replica, the rest of Ray, load (this process), rest (the machine's other busy time)`,
  )
  out(
    table(
      ['path', 'clients', 'requests/s', 'p50 ms', 'p99 ms', 'errors', ...cpuHeader, `busy of ${cores}`],
      levelResults.map((result) => [
        result.target,
        result.concurrency,
        result.requestsPerSecond.toFixed(1),
        ms(result.latency.p50),
        ms(result.latency.p99),
        result.errors,
        ...cpuCells(result.cpu),
        `${Math.round(result.cpu.machineBusyShare * 100)}%`,
      ]),
    ),
  )
  out(
    `peak: gateway ${peakGateway.requestsPerSecond.toFixed(1)} requests/s at ${peakGateway.concurrency} clients; ` +
      `direct ${peakDirect.requestsPerSecond.toFixed(1)} requests/s at ${peakDirect.concurrency} clients ` +
      `(gateway/direct ${((peakGateway.requestsPerSecond / peakDirect.requestsPerSecond) * 100).toFixed(0)}%)`,
  )
  out(
    `\nmoney: gateway requests answered 200: ${gatewayAnswered} (errors ${gatewayErrors}); ` +
      `GET /v1/explorer/inference ${modelKey} requests: ${explorerRequests} ` +
      `(spent ${settled?.spentGmt ?? '-'} GMT, suppliers earned ${settled?.supplierEarningsGmt ?? '-'} GMT): ` +
      `${explorerRequests === gatewayAnswered ? 'EQUAL' : 'DIFFERENT'}; GET /v1/ledger/verify ok: ${verification.ok} ` +
      `(${verification.tookMs} ms, mismatched ${verification.mismatched.length}, overdrawn ${verification.overdrawn.length})`,
  )
  if (coordinator.warnings.length > 0 || worker.warnings.length > 0)
    out(
      `log lines at warn or above: coordinator ${coordinator.warnings.length}, worker ${worker.warnings.length}` +
        `\n  ${[...coordinator.warnings, ...worker.warnings].slice(0, 10).join('\n  ')}`,
    )
  const round = (value: number) => Math.round(value * 1000) / 1000
  const summaryJson = (summary: Summary) => ({
    n: summary.count,
    p50: round(summary.p50),
    p90: round(summary.p90),
    p99: round(summary.p99),
    max: round(summary.max),
  })
  out(
    JSON.stringify({
      bench: 'gateway',
      at: startedAt.toISOString(),
      cores,
      store: flags.store,
      node: process.version,
      loadAverageAtStart: loadAtStart.map(round),
      latencyMs: {
        pairs: pairCount,
        warmupPairs: warmupPairCount,
        errors: latencyErrors,
        direct: summaryJson(directSummary),
        gateway: summaryJson(gatewaySummary),
        addedByPercentile: {
          p50: round(difference('p50')),
          p90: round(difference('p90')),
          p99: round(difference('p99')),
          max: round(difference('max')),
        },
        paired: { ...summaryJson(pairedSummary), p1: round(pairedLow(0.01)), p10: round(pairedLow(0.1)) },
        machineBusyShare: round(latencyCpu.machineBusyShare),
        cpuMsPerRequest: cpuJson(latencyCpu),
      },
      target: {
        addedP99MsUnder: targetAddedP99Ms,
        addedP99Ms: round(addedP99Ms),
        met: addedP99Ms < targetAddedP99Ms,
      },
      saturation: {
        seconds: windowMs / 1000,
        runs: levelResults.map((result) => ({
          target: result.target,
          concurrency: result.concurrency,
          requestsPerSecond: round(result.requestsPerSecond),
          p50Ms: round(result.latency.p50),
          p99Ms: round(result.latency.p99),
          errors: result.errors,
          cpuMsPerRequest: cpuJson(result.cpu),
          machineBusyShare: round(result.cpu.machineBusyShare),
        })),
        peak: {
          gateway: {
            requestsPerSecond: round(peakGateway.requestsPerSecond),
            concurrency: peakGateway.concurrency,
          },
          direct: {
            requestsPerSecond: round(peakDirect.requestsPerSecond),
            concurrency: peakDirect.concurrency,
          },
        },
      },
      money: {
        gatewayAnswered,
        gatewayErrors,
        explorerRequests,
        ledgerVerifyOk: verification.ok,
        ok: moneyOk,
      },
    }),
  )
  if (flags['cpu-prof'])
    progress(
      `CPU profiles (written as the processes exit; profiling slows them, so these figures are not comparable):` +
        `\n  node bench/cpuprofile-summary.ts ${profilePath('coordinator')}` +
        `\n  node bench/cpuprofile-summary.ts ${profilePath('worker')}`,
    )
  if (!moneyOk) progress('money check FAILED: see above')
  return moneyOk ? 0 : 1
}

try {
  process.exitCode = await main()
} catch (error) {
  // Stopped by a signal or --max-minutes: that handler has reported it and is cleaning up.
  if (cleaningUp) {
    await cleaningUp
    process.exit(stopExitCode)
  }
  process.stderr.write(`gateway bench failed: ${(error as Error).stack ?? String(error)}\n`)
  for (const child of [coordinator, worker])
    if (child) process.stderr.write(`last ${child.name} log lines:\n  ${child.tail.join('\n  ')}\n`)
  process.exitCode = 1
} finally {
  clearTimeout(abort)
  progress('cleaning up')
  await cleanup()
  progress('done')
  process.exit()
}
