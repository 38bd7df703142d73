import { spawn } from 'node:child_process'
import { chownSync, mkdirSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

// The worker's handle on a cluster's head: python/cluster_head.py, a Ray driver inside the cluster's network
// namespace that submits and follows jobs with Ray's own JobManager (Ray's HTTP job API needs the dashboard,
// which we do not run) and reports which nodes are alive. JSON lines both ways; every event line is checked
// before it is acted on, since the agent runs code we did not write (Ray) in its process.

export const RayJobStatus = {
  pending: 'pending',
  running: 'running',
  succeeded: 'succeeded',
  failed: 'failed',
  stopped: 'stopped',
} as const
export type RayJobStatus = (typeof RayJobStatus)[keyof typeof RayJobStatus]

export type ClusterHeadAgentInit = {
  /** The managed environment's Python, with Ray. */
  readonly pythonPath: string
  /** The cluster's network namespace; the agent runs inside it (`ip netns exec`). */
  readonly namespace: string
  readonly headAddress: string
  readonly gcsPort: number
  /** Where jobs' working dirs are unpacked; created if missing, owned by runAs when given. */
  readonly workDir: string
  /** Run as this unprivileged user (setpriv --reuid/--regid/--clear-groups); root otherwise. */
  readonly runAs?: { readonly uid: number; readonly gid: number }
}

/** What a job submitted through Ray's job API carries besides its entrypoint (checked by the coordinator). */
export type RaySubmission = {
  readonly runtimeEnv?: Readonly<Record<string, unknown>>
  /** Zips the runtime_env names by URI (gcs://_ray_pkg_...zip), base64; the agent puts them into the GCS. */
  readonly packages?: readonly { readonly uri: string; readonly zipBase64: string }[]
  readonly entrypointResources?: {
    readonly numCpus?: number
    readonly numGpus?: number
    readonly memory?: number
    readonly resources?: Readonly<Record<string, number>>
  }
}

export type ClusterHeadAgentEvents = {
  onNodes(alive: readonly string[]): void
  onJobLog(jobId: string, text: string): void
  onJobStatus(jobId: string, status: RayJobStatus, message: string, exitCode: number | null): void
  onError(message: string, jobId?: string): void
  /** The agent process exited unexpectedly (not via close()). */
  onExit(detail: string): void
}

export type ClusterHeadAgent = {
  /** Resolves once connected to Ray (the 'ready' event); rejects if the process exits first or after a timeout. */
  readonly ready: Promise<void>
  submit(jobId: string, entrypoint: string, workingDirTarGz?: Buffer, ray?: RaySubmission): void
  stop(jobId: string): void
  /** Ends stdin, waits for exit (SIGKILL after a few seconds). Idempotent. */
  close(): Promise<void>
}

export type ClusterHeadEvent =
  | { readonly event: 'ready' }
  | { readonly event: 'nodes'; readonly alive: readonly string[] }
  | { readonly event: 'log'; readonly jobId: string; readonly text: string }
  | {
      readonly event: 'job'
      readonly jobId: string
      readonly status: RayJobStatus
      readonly message: string
      readonly exitCode: number | null
    }
  | { readonly event: 'error'; readonly jobId?: string; readonly message: string }

const agentScript = fileURLToPath(new URL('../../python/cluster_head.py', import.meta.url))
/** The agent's own deadline for connecting to Ray (its --connect-timeout-s). */
export const clusterHeadConnectTimeoutMs = 60_000
/** The agent's deadline plus time for the interpreter to start and import Ray; then it is killed. */
const clusterHeadReadyTimeoutMs = clusterHeadConnectTimeoutMs + 30_000
/** How long close() waits after ending stdin before SIGKILL, and again for the exit after it. */
const clusterHeadCloseGraceMs = 5_000
/** Longest event line accepted; the agent splits log text into events of at most 64 KiB characters. */
const clusterHeadMaxEventLineChars = 1024 * 1024
const stderrTailLines = 20

const isString = (value: unknown): value is string => typeof value === 'string'
const jobStatuses = new Set<unknown>(Object.values(RayJobStatus))

/** One stdout line of the agent, or undefined when it is not a well-formed event. */
export function parseClusterHeadEvent(line: string): ClusterHeadEvent | undefined {
  if (line.length > clusterHeadMaxEventLineChars) return undefined
  let parsed: unknown
  try {
    parsed = JSON.parse(line)
  } catch {
    return undefined
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined
  const fields = parsed as Record<string, unknown>
  const { jobId, message } = fields
  switch (fields['event']) {
    case 'ready':
      return { event: 'ready' }
    case 'nodes': {
      const alive = fields['alive']
      return Array.isArray(alive) && alive.every(isString) ? { event: 'nodes', alive } : undefined
    }
    case 'log': {
      const text = fields['text']
      return isString(jobId) && isString(text) ? { event: 'log', jobId, text } : undefined
    }
    case 'job': {
      const { status, exitCode } = fields
      const exitCodeValid = exitCode === null || Number.isInteger(exitCode)
      return isString(jobId) && jobStatuses.has(status) && isString(message) && exitCodeValid
        ? {
            event: 'job',
            jobId,
            status: status as RayJobStatus,
            message,
            exitCode: exitCode as number | null,
          }
        : undefined
    }
    case 'error':
      if (!isString(message) || (jobId !== undefined && !isString(jobId))) return undefined
      return jobId === undefined ? { event: 'error', message } : { event: 'error', jobId, message }
    default:
      return undefined
  }
}

export function startClusterHeadAgent(
  init: ClusterHeadAgentInit,
  events: ClusterHeadAgentEvents,
): ClusterHeadAgent {
  mkdirSync(init.workDir, { recursive: true })
  if (init.runAs) chownSync(init.workDir, init.runAs.uid, init.runAs.gid)
  const args = [
    'netns',
    'exec',
    init.namespace,
    ...(init.runAs
      ? ['setpriv', `--reuid=${init.runAs.uid}`, `--regid=${init.runAs.gid}`, '--clear-groups']
      : []),
    init.pythonPath,
    agentScript,
    '--address',
    `${init.headAddress}:${init.gcsPort}`,
    '--work-dir',
    init.workDir,
    '--connect-timeout-s',
    String(clusterHeadConnectTimeoutMs / 1000),
  ]
  const child = spawn('ip', args, {
    cwd: init.workDir,
    stdio: ['pipe', 'pipe', 'pipe'],
    env: {
      ...process.env,
      // Job logs are decoded as text whatever the machine's locale.
      PYTHONUTF8: '1',
      RAY_USAGE_STATS_ENABLED: '0',
      // An unprivileged user may have no writable home of its own; whatever Ray caches goes to the work dir.
      ...(init.runAs ? { HOME: init.workDir } : {}),
    },
  })

  const stderrTail: string[] = []
  createInterface({ input: child.stderr }).on('line', (line) => {
    stderrTail.push(line)
    if (stderrTail.length > stderrTailLines) stderrTail.shift()
  })

  let exited = false
  let closeRequested = false
  let closing: Promise<void> | undefined
  let readySettled = false
  let markReady: () => void = () => {}
  let failReady: (error: Error) => void = () => {}
  const ready = new Promise<void>((resolve, reject) => {
    markReady = resolve
    failReady = reject
  })
  // Rejections of `ready` reach whoever awaits it; a caller that never does must not crash the worker.
  ready.catch(() => {})
  const settleReady = (error?: Error) => {
    if (readySettled) return
    readySettled = true
    clearTimeout(readyTimer)
    if (error) failReady(error)
    else markReady()
  }
  const readyTimer = setTimeout(() => {
    settleReady(new Error(`cluster head agent was not ready within ${clusterHeadReadyTimeoutMs} ms`))
    child.kill('SIGKILL')
  }, clusterHeadReadyTimeoutMs)

  createInterface({ input: child.stdout }).on('line', (line) => {
    const event = parseClusterHeadEvent(line)
    if (!event) {
      events.onError(`cluster head agent sent a malformed event: ${line.slice(0, 200)}`)
      return
    }
    switch (event.event) {
      case 'ready':
        settleReady()
        break
      case 'nodes':
        events.onNodes(event.alive)
        break
      case 'log':
        events.onJobLog(event.jobId, event.text)
        break
      case 'job':
        events.onJobStatus(event.jobId, event.status, event.message, event.exitCode)
        break
      case 'error':
        events.onError(event.message, event.jobId)
        break
    }
  })

  const exitedPromise = new Promise<void>((resolve) => {
    const finish = (detail: string) => {
      if (exited) return
      exited = true
      const stderr = stderrTail.length > 0 ? `: ${stderrTail.join('\n')}` : ''
      settleReady(new Error(`cluster head agent ${detail} before it was ready${stderr}`))
      if (!closeRequested) events.onExit(`${detail}${stderr}`)
      resolve()
    }
    child.once('error', (error) => finish(`could not run (${error.message})`))
    // 'close', not 'exit': every event line the agent wrote has been read by then.
    child.once('close', (code, signal) => finish(`exited (${signal ?? code})`))
  })
  // Writes after the agent died fail with EPIPE; its exit is reported through onExit.
  child.stdin.on('error', () => {})

  const send = (command: object, jobId: string) => {
    if (exited || closeRequested) {
      events.onError('cluster head agent is not running', jobId)
      return
    }
    child.stdin.write(`${JSON.stringify(command)}\n`)
  }

  return {
    ready,
    submit(jobId, entrypoint, workingDirTarGz, ray) {
      send(
        {
          op: 'submit',
          jobId,
          entrypoint,
          workingDirTarGz: workingDirTarGz ? workingDirTarGz.toString('base64') : null,
          ...(ray?.runtimeEnv ? { runtimeEnv: ray.runtimeEnv } : {}),
          ...(ray?.packages ? { packages: ray.packages } : {}),
          ...(ray?.entrypointResources ? { entrypointResources: ray.entrypointResources } : {}),
        },
        jobId,
      )
    },
    stop(jobId) {
      send({ op: 'stop', jobId }, jobId)
    },
    close() {
      closeRequested = true
      closing ??= (async () => {
        if (exited) return
        // EOF asks the agent to exit; its jobs keep running, Ray owns them.
        child.stdin.end()
        const grace = (ms: number) =>
          new Promise<boolean>((resolve) => setTimeout(() => resolve(false), ms).unref())
        if (await Promise.race([exitedPromise.then(() => true), grace(clusterHeadCloseGraceMs)])) return
        child.kill('SIGKILL')
        await Promise.race([exitedPromise, grace(clusterHeadCloseGraceMs)])
      })()
      return closing
    },
  }
}
