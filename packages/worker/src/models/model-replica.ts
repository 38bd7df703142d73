import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { createHash, timingSafeEqual } from 'node:crypto'
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import {
  Agent,
  createServer,
  request,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type Server,
  type ServerResponse,
} from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { pipeline } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { artifactPathPattern, sha256HexPattern } from '@gpumesh/protocol'
import type { WorkerLogger } from '../logger.ts'
import {
  asUser,
  createPrivateTempDir,
  rayEnvironment,
  rayProcessesOf,
  rayTempDirWithin,
} from '../ray/ray-node.ts'
import type { ArtifactRef } from './artifact-cache.ts'

// One model replica on a supplier's machine: the Ray Serve launcher (python/gpumesh_models/serve_model.py) in a
// network namespace of its own, joined to the worker's namespace by one veth pair and nothing else (no default
// route), run as an unprivileged user. Model code then reaches only the worker's end of that pair. Renters
// never talk to it directly: an authenticated relay in the worker's namespace checks their token and streams
// requests and answers through, so the replica itself needs no credentials and no port on any real network.

const run = promisify(execFile)

export const modelLauncherPath = fileURLToPath(
  new URL('../../../../python/gpumesh_models/serve_model.py', import.meta.url),
)
/** Launcher start to GPUMESH-SERVE-READY, unless ModelReplicaInit.startTimeoutMs says otherwise. */
export const modelReplicaStartTimeoutMs = 300_000
/** After SIGTERM, how long the launcher gets to shut Serve and Ray down before what is left is killed. */
const launcherStopGraceMs = 30_000
/** After SIGKILL, how long to wait for the processes to be gone before the namespace is deleted anyway. */
const killWaitMs = 10_000
/** Requests the relay forwards at once; more are refused (503) rather than queued without bound. */
export const maxRelayInFlightRequests = 256
/** The launcher refuses larger bodies too (413); the relay stops reading at the same size. */
export const maxRelayRequestBodyBytes = 1024 * 1024
/** An upstream request with no bytes either way for this long is abandoned (queueing in Serve included). */
export const relayUpstreamIdleTimeoutMs = 300_000
/** Launcher stderr lines kept to explain a failure. */
const launcherOutputTailLines = 40
const ipCommandTimeoutMs = 30_000
const stdoutAfterExitWaitMs = 2_000

// 10.250.0.0/16 split into /30s: the host end is .1, the replica's end .2 of each.
const replicaSubnetBase = (10 << 24) | (250 << 16)
const replicaSubnetCount = 1 << 14
const reservedSubnets = new Set<number>()

const replicaIdPattern = /^[a-z0-9_-]{1,48}$/
const sha256Pattern = new RegExp(sha256HexPattern)
const pathPattern = new RegExp(artifactPathPattern)

export type ModelReplicaInit = {
  /** Unique on the machine; the namespace, interface and temp dir names derive from it. [a-z0-9_-]{1,48} */
  readonly replicaId: string
  readonly pythonPath: string
  /** Readable by runAs: the launcher reads and hashes every artifact in it. */
  readonly modelDir: string
  /** The hashes the launcher checks before it loads anything. */
  readonly artifacts: readonly ArtifactRef[]
  /** Where the footprint file (model-replicas.json) lives. */
  readonly stateDir: string
  /** Run the launcher and its Ray as this unprivileged user: model code cannot read the worker's keys. */
  readonly runAs?: { readonly uid: number; readonly gid: number }
  /** CPUs the replica's Ray offers; each Serve replica takes one. */
  readonly numCpus: number
  /**
   * GPUs the replica may see (CUDA_VISIBLE_DEVICES); none when absent. The launcher has no GPU flag of its
   * own: its Ray counts what CUDA shows it.
   */
  readonly visibleGpuIndices?: readonly number[]
  /** Serve replicas on this machine: a fixed count when equal, autoscaled between them otherwise. */
  readonly minReplicas: number
  readonly maxReplicas: number
  readonly objectStoreMemoryBytes?: number
  /** See MeshInterfaceInit.netnsMountNamespace. */
  readonly netnsMountNamespace?: string
  /** Where the relay listens, in the worker's own namespace; port 0 lets the kernel pick. */
  readonly relayHost: string
  readonly relayPort: number
  /** Requests must carry `Authorization: Bearer <accessToken>`. */
  readonly accessToken: string
  readonly startTimeoutMs?: number
  readonly launcherPath?: string
  readonly logger: WorkerLogger
  /** The launcher exited on its own after it was ready, not through drain() or stop(); call stop() next. */
  readonly onExit?: (detail: string) => void
}

export type ModelReplica = {
  readonly replicaId: string
  /**
   * Resolves once the launcher reports ready; otherwise removes all it made and rejects with a
   * ModelReplicaStartError. Once only.
   */
  start(): Promise<{ relayUrl: string }>
  /** Requests the relay is forwarding now. */
  readonly inFlight: number
  /** The launcher's pid (the Python process itself: `ip netns exec` and setpriv exec it), while it runs. */
  readonly launcherPid: number | undefined
  /**
   * Refuses new requests (503, code `replica_draining`), waits up to timeoutMs for those in flight to finish,
   * then stops.
   */
  drain(timeoutMs: number): Promise<void>
  /**
   * Stops the launcher (SIGTERM, then SIGKILL for whatever of its processes is left), closes the relay, deletes
   * the veth pair, the namespace and the temp dir. Idempotent, and safe before or during start().
   */
  stop(): Promise<void>
}

export const ModelReplicaStartErrorCode = {
  artifactHashMismatch: 'artifact_hash_mismatch',
  modelFormatInvalid: 'model_format_invalid',
  invalidArguments: 'invalid_arguments',
  startupTimeout: 'startup_timeout',
  startupFailed: 'startup_failed',
  /** The launcher exited without saying why (killed, or it could not even start Python). */
  launcherExited: 'launcher_exited',
  /** stop() or drain() was called before the replica was ready. */
  stopped: 'stopped',
} as const
export type ModelReplicaStartErrorCode =
  (typeof ModelReplicaStartErrorCode)[keyof typeof ModelReplicaStartErrorCode]

/** The replica did not become ready: the launcher's own failure code when it gave one. */
export class ModelReplicaStartError extends Error {
  override readonly name = 'ModelReplicaStartError'
  readonly code: ModelReplicaStartErrorCode
  constructor(code: ModelReplicaStartErrorCode, message: string) {
    super(`${code}: ${message}`)
    this.code = code
  }
}

/** What is kept on disk per replica, so a crashed agent's leftovers can be found and removed next time. */
export type ModelReplicaFootprint = {
  readonly replicaId: string
  readonly namespace: string
  readonly hostInterface: string
  readonly tempDir: string
  /** Informational: a pid may be reused after a reboot, so clean-up goes by namespace and temp dir. */
  readonly launcherPid?: number
}

export type ModelReplicaNames = {
  readonly namespace: string
  /** The veth end in the worker's namespace. */
  readonly hostInterface: string
  /** The veth end inside the replica's namespace. */
  readonly replicaInterface: string
  /**
   * HOME and TMPDIR, 0700 and the sandbox user's, with Ray's temp dir inside it (rayTempDirWithin): short,
   * since Ray's socket paths must stay under 108 bytes.
   */
  readonly tempDir: string
}

/** Names derived from a replica id: interface names fit Linux's 15 characters, so they come from a hash. */
export function modelReplicaNames(replicaId: string): ModelReplicaNames {
  if (!replicaIdPattern.test(replicaId)) throw new Error(`bad model replica id ${JSON.stringify(replicaId)}`)
  const digest = createHash('sha256').update(replicaId).digest('hex').slice(0, 10)
  return {
    namespace: `gmr-${replicaId}`,
    hostInterface: `gmr${digest}h`,
    replicaInterface: `gmr${digest}r`,
    tempDir: `/tmp/gmr-${digest}`,
  }
}

export function createModelReplica(init: ModelReplicaInit): ModelReplica {
  const names = modelReplicaNames(init.replicaId)
  if (!init.accessToken) throw new Error('a model replica needs an access token')
  // The launcher takes whole CPUs (argparse int), and each Serve replica asks for one.
  if (!Number.isInteger(init.numCpus) || init.numCpus < 1) throw new Error(`bad numCpus ${init.numCpus}`)
  if (!(init.minReplicas >= 0 && init.minReplicas <= init.maxReplicas && init.maxReplicas >= 1))
    throw new Error(`bad replica range ${init.minReplicas}..${init.maxReplicas}`)
  for (const artifact of init.artifacts)
    if (!sha256Pattern.test(artifact.sha256) || !pathPattern.test(artifact.path))
      throw new Error(`refusing artifact ${JSON.stringify(artifact)}: bad hash or path`)
  const { logger, replicaId } = init
  const startTimeoutMs = init.startTimeoutMs ?? modelReplicaStartTimeoutMs
  const footprintFile = modelReplicaFootprintFile(init.stateDir)
  const ip = (args: string[]) => run('ip', args, { timeout: ipCommandTimeoutMs })
  const netnsAdmin = (args: string[]) =>
    init.netnsMountNamespace
      ? run('nsenter', [`--mount=${init.netnsMountNamespace}`, '--', 'ip', ...args], {
          timeout: ipCommandTimeoutMs,
        })
      : ip(args)

  let starting: Promise<{ relayUrl: string }> | undefined
  let ready = false
  let draining = false
  let stopRequested = false
  let stopping: Promise<void> | undefined
  let launcher: ChildProcess | undefined
  let launcherPid: number | undefined
  let subnet: number | undefined
  let namespaceCreated = false
  let vethCreated = false
  let relay: ReturnType<typeof createRelay> | undefined
  let abortStart: ((error: ModelReplicaStartError) => void) | undefined

  const recordFootprint = (footprint: ModelReplicaFootprint | undefined) =>
    updateFootprints(footprintFile, (footprints) => [
      ...footprints.filter((entry) => entry.replicaId !== replicaId),
      ...(footprint ? [footprint] : []),
    ])
  const footprint = (): ModelReplicaFootprint => ({
    replicaId,
    namespace: names.namespace,
    hostInterface: names.hostInterface,
    tempDir: names.tempDir,
    ...(launcherPid ? { launcherPid } : {}),
  })

  const createSandbox = async (): Promise<string> => {
    createPrivateTempDir(names.tempDir, init.runAs)
    subnet = await reserveSubnet(replicaId)
    const hostAddress = subnetAddress(subnet, 1)
    const replicaAddress = subnetAddress(subnet, 2)
    // Marked before the command, not after: an `ip` that fails may still have made it (a Ctrl-C reaches the
    // worker's `ip` children too, and may end one after the kernel did the work, before it said so).
    namespaceCreated = true
    await netnsAdmin(['netns', 'add', names.namespace])
    await ip(['-n', names.namespace, 'link', 'set', 'lo', 'up'])
    vethCreated = true
    await ip(['link', 'add', names.hostInterface, 'type', 'veth', 'peer', 'name', names.replicaInterface])
    await ip(['link', 'set', names.replicaInterface, 'netns', names.namespace])
    // No IPv6 link-local addresses: the pair carries only the /30, so the replica has no other way across.
    await ip(['link', 'set', 'dev', names.hostInterface, 'addrgenmode', 'none'])
    await ip(['-n', names.namespace, 'link', 'set', 'dev', names.replicaInterface, 'addrgenmode', 'none'])
    await ip(['addr', 'add', `${hostAddress}/30`, 'dev', names.hostInterface])
    await ip(['link', 'set', names.hostInterface, 'up'])
    await ip(['-n', names.namespace, 'addr', 'add', `${replicaAddress}/30`, 'dev', names.replicaInterface])
    await ip(['-n', names.namespace, 'link', 'set', names.replicaInterface, 'up'])
    return replicaAddress
  }

  const launcherArgs = (replicaAddress: string, expectedSha256File: string) => [
    init.launcherPath ?? modelLauncherPath,
    '--model-dir',
    init.modelDir,
    '--expected-sha256-file',
    expectedSha256File,
    '--host',
    replicaAddress,
    '--port',
    '0',
    ...(init.minReplicas === init.maxReplicas
      ? ['--num-replicas', String(init.maxReplicas)]
      : ['--min-replicas', String(init.minReplicas), '--max-replicas', String(init.maxReplicas)]),
    '--num-cpus',
    String(init.numCpus),
    '--node-ip-address',
    replicaAddress,
    '--ray-temp-dir',
    rayTempDirWithin(names.tempDir),
    ...(init.objectStoreMemoryBytes
      ? ['--object-store-memory-bytes', String(init.objectStoreMemoryBytes)]
      : []),
    '--ready-timeout-s',
    String(startTimeoutMs / 1000),
    // The worker holds the other end of stdin: if the agent dies, the launcher shuts its Ray down by itself.
    '--stop-on-stdin-eof',
  ]

  const launch = (replicaAddress: string): Promise<{ port: number; startupSeconds: number | undefined }> => {
    const expectedSha256File = join(names.tempDir, 'expected.sha256')
    writeFileSync(
      expectedSha256File,
      init.artifacts.map((artifact) => `${artifact.sha256}  ${artifact.path}\n`).join(''),
      { mode: 0o644 },
    )
    const child = spawn(
      'ip',
      [
        'netns',
        'exec',
        names.namespace,
        ...asUser(init.runAs),
        init.pythonPath,
        ...launcherArgs(replicaAddress, expectedSha256File),
      ],
      {
        // A process group of its own: the launcher's Ray processes all stay in it.
        detached: true,
        stdio: ['pipe', 'pipe', 'pipe'],
        env: {
          ...rayEnvironment(init.pythonPath, names.tempDir),
          TMPDIR: names.tempDir,
          CUDA_VISIBLE_DEVICES: (init.visibleGpuIndices ?? []).join(','),
        },
      },
    )
    launcher = child
    launcherPid = child.pid
    recordFootprint(footprint())
    const outputTail: string[] = []
    createInterface({ input: child.stderr! }).on('line', (line) => {
      outputTail.push(line)
      if (outputTail.length > launcherOutputTailLines) outputTail.shift()
    })
    const explain = () => outputTail.slice(-12).join('\n')
    return new Promise((resolve, reject) => {
      let settled = false
      const settle = (outcome: () => void) => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        abortStart = undefined
        outcome()
      }
      const fail = (error: ModelReplicaStartError) => settle(() => reject(error))
      abortStart = fail
      // The launcher enforces the same limit itself (--ready-timeout-s); this catches one that hangs.
      const timer = setTimeout(
        () =>
          fail(
            new ModelReplicaStartError(
              ModelReplicaStartErrorCode.startupTimeout,
              `not ready within ${startTimeoutMs} ms\n${explain()}`,
            ),
          ),
        startTimeoutMs + 15_000,
      )
      child.once('error', (error) =>
        fail(new ModelReplicaStartError(ModelReplicaStartErrorCode.launcherExited, String(error))),
      )
      createInterface({ input: child.stdout! }).on('line', (line) => {
        const [word, ...rest] = line.split(' ')
        const payload = parseJsonObject(rest.join(' '))
        if (word === 'GPUMESH-SERVE-READY') {
          const port = payload?.['port']
          if (typeof port !== 'number' || !Number.isInteger(port) || port <= 0 || port > 65535)
            return fail(
              new ModelReplicaStartError(ModelReplicaStartErrorCode.startupFailed, `bad ready line: ${line}`),
            )
          const startupSeconds = payload?.['startupSeconds']
          settle(() =>
            resolve({
              port,
              startupSeconds: typeof startupSeconds === 'number' ? startupSeconds : undefined,
            }),
          )
        } else if (word === 'GPUMESH-SERVE-FAILED') {
          const code = launcherFailureCode(payload?.['code'])
          const message = typeof payload?.['message'] === 'string' ? payload['message'] : line
          fail(new ModelReplicaStartError(code, `${message}\n${explain()}`))
        }
      })
      // 'exit' may come before the last stdout line is read: a FAILED line says more than "it exited".
      const stdoutClosed = new Promise<void>((resolve) => child.stdout!.once('close', () => resolve()))
      child.once('exit', (code, signal) => {
        const detail = `launcher exited (${signal ?? code})`
        void Promise.race([stdoutClosed, sleep(stdoutAfterExitWaitMs)]).then(() => {
          fail(
            new ModelReplicaStartError(ModelReplicaStartErrorCode.launcherExited, `${detail}\n${explain()}`),
          )
          if (ready && !stopRequested) {
            logger.warn('model replica launcher exited', { replicaId, detail, output: explain() })
            init.onExit?.(detail)
          }
        })
      })
    })
  }

  const stopLauncher = async () => {
    const child = launcher
    const leader = launcherPid
    if (!child || !leader) return
    const exited =
      child.exitCode !== null || child.signalCode !== null
        ? Promise.resolve()
        : new Promise<void>((resolve) => child.once('exit', () => resolve()))
    // Everything in the namespace is ours; so is what descends from the launcher or names its temp dir.
    const ours = async () => {
      const pids = new Set(rayProcessesOf(leader, names.tempDir))
      if (namespaceCreated) for (const pid of await namespacePids(netnsAdmin, names.namespace)) pids.add(pid)
      pids.delete(process.pid)
      return [...pids]
    }
    if (child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(leader, 'SIGTERM')
      } catch {
        // already gone
      }
      await Promise.race([exited, sleep(launcherStopGraceMs)])
    }
    signalAll(await ours(), 'SIGKILL')
    const deadline = Date.now() + killWaitMs
    while ((await ours()).length > 0 && Date.now() < deadline) await sleep(100)
    await Promise.race([exited, sleep(killWaitMs)])
    child.stdin?.destroy()
    launcher = undefined
    launcherPid = undefined
  }

  /** Frees whatever exists so far; each part remembers whether it exists, so a second pass does nothing. */
  const tearDown = async () => {
    draining = true
    await relay?.close()
    await stopLauncher()
    if (vethCreated) {
      // Gone already if the namespace went first: deleting either end deletes the pair.
      await ip(['link', 'del', names.hostInterface]).catch(() => undefined)
      vethCreated = false
    }
    if (namespaceCreated) {
      await netnsAdmin(['netns', 'del', names.namespace]).catch((error: unknown) =>
        logger.warn('deleting a model replica namespace failed', { replicaId, error: String(error) }),
      )
      namespaceCreated = false
    }
    if (subnet !== undefined) reservedSubnets.delete(subnet)
    subnet = undefined
    rmSync(names.tempDir, { recursive: true, force: true })
    recordFootprint(undefined)
  }

  const stopped = () =>
    new ModelReplicaStartError(ModelReplicaStartErrorCode.stopped, 'stopped before it was ready')
  /** Between start's steps: stop() was called meanwhile, so go no further (start's own catch cleans up). */
  const checkNotStopped = () => {
    if (stopRequested) throw stopped()
  }

  const start = async (): Promise<{ relayUrl: string }> => {
    const startedAtMs = Date.now()
    // On disk before anything exists, so a crash at any point leaves a trace to clean up.
    recordFootprint(footprint())
    try {
      // The relay first: a busy port fails in milliseconds, not after the model has loaded.
      relay = createRelay({
        accessToken: init.accessToken,
        isReady: () => ready,
        isDraining: () => draining,
      })
      const relayUrl = await relay.listen(init.relayHost, init.relayPort)
      checkNotStopped()
      const replicaAddress = await createSandbox()
      checkNotStopped()
      const { port, startupSeconds } = await launch(replicaAddress)
      checkNotStopped()
      relay.setUpstream(replicaAddress, port)
      ready = true
      logger.info('model replica ready', {
        replicaId,
        namespace: names.namespace,
        replicaAddress,
        // Reachable from the worker's namespace only: what a benchmark compares the gateway against.
        replicaUrl: `http://${replicaAddress}:${port}`,
        relayUrl,
        startupMs: Date.now() - startedAtMs,
        launcherStartupSeconds: startupSeconds,
      })
      return { relayUrl }
    } catch (error) {
      if (error instanceof ModelReplicaStartError && error.code === ModelReplicaStartErrorCode.stopped)
        logger.info('model replica stopped while starting', { replicaId })
      else logger.error('model replica did not start', { replicaId, error: String(error) })
      await tearDown()
      throw error
    }
  }

  const stop = () => {
    stopRequested = true
    draining = true
    stopping ??= (async () => {
      abortStart?.(stopped())
      // A start in progress stops at its next step and removes what it made; then anything left goes.
      await starting?.catch(() => undefined)
      if (starting) {
        logger.info('stopping model replica', { replicaId, inFlight: relay?.inFlight ?? 0 })
        await tearDown()
      }
    })()
    return stopping
  }

  return {
    replicaId,
    get inFlight() {
      return relay?.inFlight ?? 0
    },
    get launcherPid() {
      return launcherPid
    },
    start() {
      if (starting) return Promise.reject(new Error(`model replica ${replicaId} was already started`))
      if (stopRequested) return Promise.reject(stopped())
      starting = start()
      return starting
    },
    async drain(timeoutMs) {
      draining = true
      if (relay && ready && !stopRequested) {
        logger.info('draining model replica', { replicaId, inFlight: relay.inFlight, timeoutMs })
        await Promise.race([relay.idle(), sleep(timeoutMs)])
      }
      await stop()
    },
    stop,
  }
}

/** Removes what replicas of a crashed or killed agent left: processes, veth pairs, namespaces, temp dirs. */
export async function cleanUpModelReplicaLeftovers(
  stateDir: string,
  netnsMountNamespace?: string,
): Promise<number> {
  const footprintFile = modelReplicaFootprintFile(stateDir)
  // Only names this module could have made: a damaged file must not name a directory to delete.
  const footprints = readFootprints(footprintFile).filter(isOwnFootprint)
  const netnsAdmin = (args: string[]) =>
    netnsMountNamespace
      ? run('nsenter', [`--mount=${netnsMountNamespace}`, '--', 'ip', ...args], {
          timeout: ipCommandTimeoutMs,
        })
      : run('ip', args, { timeout: ipCommandTimeoutMs })
  for (const footprint of footprints) {
    // Found by what only this replica owned, never by the launcher's pid (reused after a reboot) or by name.
    const ours = async () => {
      const pids = new Set(await namespacePids(netnsAdmin, footprint.namespace))
      for (const pid of processesNaming(footprint.tempDir)) pids.add(pid)
      pids.delete(process.pid)
      return [...pids]
    }
    signalAll(await ours(), 'SIGKILL')
    const deadline = Date.now() + killWaitMs
    while ((await ours()).length > 0 && Date.now() < deadline) await sleep(100)
    await run('ip', ['link', 'del', footprint.hostInterface], { timeout: ipCommandTimeoutMs }).catch(
      () => undefined,
    )
    await netnsAdmin(['netns', 'del', footprint.namespace]).catch(() => undefined)
    rmSync(footprint.tempDir, { recursive: true, force: true })
  }
  rmSync(footprintFile, { force: true })
  return footprints.length
}

export function modelReplicaFootprintFile(stateDir: string): string {
  return join(stateDir, 'model-replicas.json')
}

type RelayInit = {
  readonly accessToken: string
  readonly isReady: () => boolean
  readonly isDraining: () => boolean
}

// Headers that describe one connection, not the message: never forwarded (RFC 9110 §7.6.1), nor the renter's
// token, which the replica has no use for.
const unforwardedHeaders = new Set([
  'authorization',
  'connection',
  'expect',
  'host',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
])

/** The authenticated relay in front of a replica: checks the token, then streams both ways unbuffered. */
function createRelay(init: RelayInit) {
  const expectedDigest = createHash('sha256').update(`Bearer ${init.accessToken}`).digest()
  const agent = new Agent({ keepAlive: true, maxSockets: maxRelayInFlightRequests, maxFreeSockets: 16 })
  let upstream: { host: string; port: number } | undefined
  let inFlight = 0
  let idleWaiters: (() => void)[] = []

  const authorized = (header: string | undefined) =>
    // Digests of equal length, so the comparison takes the same time whatever the header holds.
    header !== undefined && timingSafeEqual(createHash('sha256').update(header).digest(), expectedDigest)

  const forward = (incoming: IncomingMessage, outgoing: ServerResponse, path: string) => {
    const target = upstream!
    inFlight += 1
    outgoing.once('close', () => {
      inFlight -= 1
      if (inFlight === 0) {
        const waiters = idleWaiters
        idleWaiters = []
        for (const wake of waiters) wake()
      }
    })
    const headers: OutgoingHttpHeaders = { host: `${target.host}:${target.port}` }
    const connectionTokens = new Set(
      String(incoming.headers['connection'] ?? '')
        .split(',')
        .map((token) => token.trim().toLowerCase()),
    )
    for (const [name, value] of Object.entries(incoming.headers))
      if (value !== undefined && !unforwardedHeaders.has(name) && !connectionTokens.has(name))
        headers[name] = value
    const upstreamRequest = request({
      host: target.host,
      port: target.port,
      method: incoming.method,
      path,
      headers,
      agent,
    })
    upstreamRequest.on('socket', (socket: Socket) => socket.setNoDelay(true))
    upstreamRequest.setTimeout(relayUpstreamIdleTimeoutMs, () =>
      upstreamRequest.destroy(new Error('model replica idle too long')),
    )
    upstreamRequest.on('error', () => {
      if (!outgoing.headersSent) refuse(outgoing, 'unreachable')
      else if (!outgoing.writableEnded) outgoing.destroy()
    })
    upstreamRequest.once('response', (upstreamResponse) => {
      const responseHeaders: OutgoingHttpHeaders = {}
      for (const [name, value] of Object.entries(upstreamResponse.headers))
        if (value !== undefined && !unforwardedHeaders.has(name)) responseHeaders[name] = value
      outgoing.writeHead(upstreamResponse.statusCode ?? 502, responseHeaders)
      // Headers now, not with the first body chunk: a stream's client sees it has started.
      outgoing.flushHeaders()
      // Either side failing ends both: a renter who leaves stops the replica's work for them too.
      pipeline(upstreamResponse, outgoing, () => undefined)
    })
    outgoing.once('close', () => {
      if (!outgoing.writableFinished) upstreamRequest.destroy()
    })
    // Not pipeline(): an upstream error must not destroy the renter's socket before the 502 is written.
    let receivedBytes = 0
    incoming.on('data', (chunk: Buffer) => {
      receivedBytes += chunk.length
      if (receivedBytes <= maxRelayRequestBodyBytes) return
      incoming.unpipe(upstreamRequest)
      incoming.pause()
      if (!outgoing.headersSent) tooLarge(outgoing)
      upstreamRequest.destroy()
    })
    incoming.pipe(upstreamRequest)
  }

  const server: Server = createServer({ noDelay: true }, (incoming, outgoing) => {
    if (!authorized(incoming.headers['authorization'])) {
      outgoing.setHeader('www-authenticate', 'Bearer')
      return refuse(outgoing, 'unauthorized')
    }
    if (init.isDraining()) {
      // The renter should go to another replica; this connection has no future here.
      outgoing.setHeader('connection', 'close')
      return refuse(outgoing, 'draining')
    }
    if (!init.isReady() || !upstream) return refuse(outgoing, 'starting')
    let path: string
    try {
      // Parsed, so dot segments (also %2e%2e) are resolved before the allowlist sees the path.
      const url = new URL(incoming.url ?? '/', 'http://relay')
      path = url.pathname + url.search
      if (url.pathname !== '/health' && !url.pathname.startsWith('/v1/')) throw new Error('not served')
    } catch {
      return refuse(outgoing, 'unknownPath')
    }
    if (Number(incoming.headers['content-length'] ?? 0) > maxRelayRequestBodyBytes) return tooLarge(outgoing)
    if (inFlight >= maxRelayInFlightRequests) return refuse(outgoing, 'busy')
    forward(incoming, outgoing, path)
  })
  server.on('connection', (socket: Socket) => socket.setNoDelay(true))

  return {
    get inFlight() {
      return inFlight
    },
    async listen(host: string, port: number): Promise<string> {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen(port, host, () => {
          server.off('error', reject)
          resolve()
        })
      })
      const address = server.address() as AddressInfo
      return `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`
    },
    setUpstream(host: string, port: number) {
      upstream = { host, port }
    },
    /** Resolves when no request is in flight. */
    idle(): Promise<void> {
      if (inFlight === 0) return Promise.resolve()
      return new Promise((resolve) => idleWaiters.push(resolve))
    },
    async close() {
      if (!server.listening) {
        agent.destroy()
        return
      }
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      server.closeAllConnections()
      agent.destroy()
      await closed
    },
  }
}

/** Every answer the relay gives itself, in OpenAI's error shape so any OpenAI client reads the reason. */
const relayRefusals = {
  unauthorized: [401, 'invalid_request_error', 'invalid_api_key', 'missing or wrong access token'],
  unknownPath: [404, 'invalid_request_error', 'unknown_url', 'no such path on a model replica'],
  tooLarge: [413, 'invalid_request_error', 'request_too_large', 'request body over 1 MiB'],
  unreachable: [502, 'server_error', 'replica_unreachable', 'the model replica did not answer'],
  starting: [503, 'server_error', 'replica_starting', 'this model replica is still starting'],
  draining: [503, 'server_error', 'replica_draining', 'this model replica is shutting down'],
  busy: [503, 'server_error', 'replica_busy', 'this model replica is at its request limit'],
} as const

function refuse(outgoing: ServerResponse, reason: keyof typeof relayRefusals): void {
  const [status, type, code, message] = relayRefusals[reason]
  const body = JSON.stringify({ error: { message, type, param: null, code } })
  outgoing.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
  })
  outgoing.end(body)
}

function tooLarge(outgoing: ServerResponse): void {
  // The rest of the body is not read: the connection cannot carry another request.
  outgoing.setHeader('connection', 'close')
  refuse(outgoing, 'tooLarge')
}

/** A /30 of 10.250.0.0/16 overlapping no address on the worker's interfaces nor another replica's. */
async function reserveSubnet(replicaId: string): Promise<number> {
  const { stdout } = await run('ip', ['-j', '-4', 'addr', 'show'], { timeout: ipCommandTimeoutMs })
  const taken: { network: number; mask: number }[] = []
  for (const link of JSON.parse(stdout) as { addr_info?: { local?: string; prefixlen?: number }[] }[])
    for (const address of link.addr_info ?? []) {
      if (address.local === undefined || address.prefixlen === undefined) continue
      const mask = prefixMask(address.prefixlen)
      taken.push({ network: (ipv4ToNumber(address.local) & mask) >>> 0, mask })
    }
  const clashes = (network: number) =>
    taken.some((other) => {
      // Two prefixes overlap when they agree on the bits of the shorter one.
      const shorter = (other.mask & prefixMask(30)) >>> 0
      return (network & shorter) >>> 0 === (other.network & shorter) >>> 0
    })
  // Start where the id hashes to, so replicas on one machine rarely even probe past each other.
  const first = createHash('sha256').update(replicaId).digest().readUInt32BE(0) % replicaSubnetCount
  for (let step = 0; step < replicaSubnetCount; step += 1) {
    const index = (first + step) % replicaSubnetCount
    const network = (replicaSubnetBase + index * 4) >>> 0
    if (reservedSubnets.has(network) || clashes(network)) continue
    reservedSubnets.add(network)
    return network
  }
  throw new Error('no free /30 left in 10.250.0.0/16 for a model replica')
}

function prefixMask(prefixLength: number): number {
  return prefixLength === 0 ? 0 : (0xffffffff << (32 - prefixLength)) >>> 0
}

function ipv4ToNumber(address: string): number {
  return address.split('.').reduce((value, octet) => ((value << 8) | Number(octet)) >>> 0, 0)
}

function subnetAddress(network: number, host: number): string {
  const value = (network + host) >>> 0
  return [value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255].join('.')
}

async function namespacePids(
  netnsAdmin: (args: string[]) => Promise<{ stdout: string }>,
  namespace: string,
): Promise<number[]> {
  try {
    const { stdout } = await netnsAdmin(['netns', 'pids', namespace])
    return stdout
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => /^\d+$/.test(line))
      .map(Number)
  } catch {
    return [] // the namespace is already gone
  }
}

/** Living processes with an argument inside this directory (the launcher's files, Ray's session dir). */
export function processesNaming(directory: string): number[] {
  const pids: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) continue
      const commandLine = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0')
      if (
        commandLine.some(
          (arg) => arg === directory || arg.includes(`${directory}/`) || arg.endsWith(`=${directory}`),
        )
      )
        pids.push(Number(entry))
    } catch {
      // exited while we looked
    }
  }
  return pids
}

function signalAll(pids: readonly number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal)
    } catch {
      // already gone
    }
  }
}

function readFootprints(file: string): ModelReplicaFootprint[] {
  try {
    const footprints: unknown = JSON.parse(readFileSync(file, 'utf8'))
    return Array.isArray(footprints) ? (footprints as ModelReplicaFootprint[]) : []
  } catch {
    return []
  }
}

function isOwnFootprint(footprint: ModelReplicaFootprint): boolean {
  if (typeof footprint?.replicaId !== 'string') return false
  try {
    const names = modelReplicaNames(footprint.replicaId)
    return (
      footprint.namespace === names.namespace &&
      footprint.hostInterface === names.hostInterface &&
      footprint.tempDir === names.tempDir
    )
  } catch {
    return false
  }
}

/** Read, change, write whole: a crash mid-write leaves the old file, never half of a new one. */
function updateFootprints(
  file: string,
  change: (footprints: ModelReplicaFootprint[]) => ModelReplicaFootprint[],
): void {
  const footprints = change(readFootprints(file))
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 })
  if (footprints.length === 0) {
    rmSync(file, { force: true })
    return
  }
  const temporary = `${file}.${process.pid}.tmp`
  writeFileSync(temporary, `${JSON.stringify(footprints, null, 2)}\n`, { mode: 0o600 })
  renameSync(temporary, file)
}

function launcherFailureCode(code: unknown): ModelReplicaStartErrorCode {
  const known: readonly string[] = Object.values(ModelReplicaStartErrorCode)
  return typeof code === 'string' && known.includes(code)
    ? (code as ModelReplicaStartErrorCode)
    : ModelReplicaStartErrorCode.startupFailed
}

function parseJsonObject(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text)
    return value !== null && typeof value === 'object' && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined
  } catch {
    return undefined
  }
}

function sleep(durationMs: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, durationMs).unref())
}
