import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { chmodSync, chownSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { promisify } from 'node:util'

// One Ray node of a cluster, run from the worker's managed Python environment inside the cluster's network
// namespace and bound to the node's overlay address, so Ray traffic flows only over the private mesh.
// `ray start --block` keeps every Ray process in one process group led by the process we spawned: stopping
// signals that group, never Ray processes found by name (other clusters run on the same machine).

const run = promisify(execFile)
export const rayStartTimeoutMs = 120_000
const rayStopGraceMs = 10_000

export type RayNodeInit = {
  readonly pythonPath: string
  /** The cluster's network namespace; the Ray processes run inside it. */
  readonly namespace: string
  readonly nodeAddress: string
  /** The head's GCS port; for a worker node, where the head listens. */
  readonly gcsPort: number
  /** Absent: this node is the head. */
  readonly headAddress?: string
  readonly numCpus: number
  readonly numGpus: number
  /**
   * This node's private dir (see createPrivateTempDir): short (Ray's unix socket paths must stay under 108
   * bytes) and unique per node.
   */
  readonly tempDir: string
  readonly objectStoreMemoryBytes?: number
  /** Run Ray as this unprivileged user: renter code then cannot read the worker's files or keys. */
  readonly runAs?: { readonly uid: number; readonly gid: number }
  /** Ray exited on its own (its raylet or GCS died), not through stop(). */
  readonly onExit?: (detail: string) => void
}

export type RayNode = {
  readonly processGroupId: number | undefined
  start(): Promise<void>
  stop(): Promise<void>
}

export function createRayNode(init: RayNodeInit): RayNode {
  let leader: ChildProcess | undefined
  let stopping = false
  const args = [
    'netns',
    'exec',
    init.namespace,
    ...asUser(init.runAs),
    init.pythonPath,
    '-m',
    'ray.scripts.scripts',
    'start',
    ...(init.headAddress
      ? ['--address', `${init.headAddress}:${init.gcsPort}`]
      : ['--head', '--port', String(init.gcsPort), '--include-dashboard=false']),
    '--node-ip-address',
    init.nodeAddress,
    '--num-cpus',
    String(init.numCpus),
    '--num-gpus',
    String(init.numGpus),
    '--temp-dir',
    rayTempDirWithin(init.tempDir),
    '--disable-usage-stats',
    '--block',
    ...(init.objectStoreMemoryBytes ? ['--object-store-memory', String(init.objectStoreMemoryBytes)] : []),
  ]

  const stopGroup = async () => {
    const group = leader?.pid
    if (!group) return
    const leaderExited =
      leader!.exitCode !== null || leader!.signalCode !== null
        ? Promise.resolve()
        : new Promise<void>((resolve) => leader!.once('exit', () => resolve()))
    // Ray's daemons may leave the group (their own sessions); they are ours if they descend from the leader
    // or name this node's unique temp dir. Collected before any signal, while the tree is still intact.
    const ours = () => rayProcessesOf(group, init.tempDir)
    const signal = (pids: readonly number[], name: NodeJS.Signals) => {
      for (const pid of pids) {
        try {
          process.kill(pid, name)
        } catch {
          // already gone
        }
      }
    }
    signal(ours(), 'SIGTERM')
    const deadline = Date.now() + rayStopGraceMs
    while (ours().length > 0 && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 100))
    signal(ours(), 'SIGKILL')
    await leaderExited
    while (ours().length > 0 && Date.now() < deadline + rayStopGraceMs)
      await new Promise((resolve) => setTimeout(resolve, 100))
  }

  return {
    get processGroupId() {
      return leader?.pid
    },
    async start() {
      stopping = false
      createPrivateTempDir(init.tempDir, init.runAs)
      // A process group of our own: the one handle on every process this Ray node starts.
      leader = spawn('ip', args, {
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: rayEnvironment(init.pythonPath, init.tempDir),
      })
      const spawned = leader
      const output: string[] = []
      const started = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`ray start did not report ready within ${rayStartTimeoutMs} ms`)),
          rayStartTimeoutMs,
        )
        const watch = (line: string) => {
          output.push(line)
          if (output.length > 200) output.shift()
          if (/Ray runtime started/.test(line)) {
            clearTimeout(timer)
            resolve()
          }
        }
        createInterface({ input: leader!.stdout! }).on('line', watch)
        createInterface({ input: leader!.stderr! }).on('line', watch)
        leader!.once('exit', (code) => {
          clearTimeout(timer)
          reject(new Error(`ray start exited (${code}): ${output.slice(-20).join('\n')}`))
        })
      })
      try {
        await started
      } catch (error) {
        await stopGroup()
        throw error
      }
      spawned.once('exit', (code, signal) => {
        if (!stopping && leader === spawned) init.onExit?.(`ray exited (${signal ?? code})`)
      })
    },
    async stop() {
      stopping = true
      await stopGroup()
      leader = undefined
      rmSync(init.tempDir, { recursive: true, force: true })
    },
  }
}

/**
 * Makes a sandbox's temp dir: 0700, owned by the user the sandbox runs as. Ray makes its own temp dir world
 * writable (0777, no sticky bit: ray._common.utils.try_make_directory_shared), so Ray is given a dir inside
 * this one (rayTempDirWithin), which nobody else can even reach.
 */
export function createPrivateTempDir(
  directory: string,
  runAs: { readonly uid: number; readonly gid: number } | undefined,
): void {
  mkdirSync(directory, { recursive: true, mode: 0o700 })
  // Also when it was there already (a leftover): mkdir's mode applies only to a dir it makes.
  chmodSync(directory, 0o700)
  if (runAs) chownSync(directory, runAs.uid, runAs.gid)
}

/** Where Ray keeps its files inside a sandbox's private temp dir. */
export function rayTempDirWithin(privateDir: string): string {
  return join(privateDir, 'ray')
}

/** setpriv's prefix that drops to an unprivileged user and all of root's groups. */
export function asUser(runAs: { readonly uid: number; readonly gid: number } | undefined): string[] {
  return runAs ? ['setpriv', `--reuid=${runAs.uid}`, `--regid=${runAs.gid}`, '--clear-groups', '--'] : []
}

/**
 * Ray's environment: the managed Python first on PATH (a job's `python train.py` runs the venv's Python),
 * and HOME in the node's own temp dir, the one place an unprivileged Ray may write.
 */
export function rayEnvironment(pythonPath: string, tempDir: string): NodeJS.ProcessEnv {
  return {
    ...pipConfiguration(process.env),
    PATH: `${dirname(pythonPath)}:${process.env['PATH'] ?? '/usr/bin:/bin'}`,
    HOME: tempDir,
    LANG: process.env['LANG'] ?? 'C.UTF-8',
    RAY_USAGE_STATS_ENABLED: '0',
    // One attempt at a job's runtime_env: a requirement that cannot be installed fails the job with pip's
    // message after one install, not three (Ray's default retries a deterministic failure).
    RUNTIME_ENV_RETRY_TIMES: '1',
  }
}

/**
 * The package index the supplier configured for this agent, for the pip that Ray runs for a job's
 * runtime_env: pip's own PIP_* variables as the agent has them, and GPUMESH_PIP_INDEX_URL (the variable
 * scripts/setup-python.sh reads) as the index. pip's global config files (/etc/pip.conf) apply as well;
 * the per-user ones do not, since HOME is the node's temp dir.
 */
export function pipConfiguration(environment: NodeJS.ProcessEnv): Record<string, string> {
  const pip: Record<string, string> = {}
  for (const [name, value] of Object.entries(environment))
    if (name.startsWith('PIP_') && value !== undefined) pip[name] = value
  const index = environment['GPUMESH_PIP_INDEX_URL']
  if (index) pip['PIP_INDEX_URL'] = index
  return pip
}

/** Asks Ray, from inside the cluster's namespace, how many nodes are alive. */
export async function aliveRayNodes(
  pythonPath: string,
  namespace: string,
  headAddress: string,
  gcsPort: number,
): Promise<number> {
  const script = `import ray; ray.init(address=${JSON.stringify(`${headAddress}:${gcsPort}`)}, logging_level='ERROR'); print(sum(1 for n in ray.nodes() if n['Alive']))`
  const { stdout } = await run('ip', ['netns', 'exec', namespace, pythonPath, '-c', script], {
    timeout: 60_000,
  })
  return Number(stdout.trim().split('\n').pop())
}

type ProcessEntry = {
  readonly pid: number
  readonly ppid: number
  readonly pgid: number
  readonly commandLine: string
}

function livingProcesses(): ProcessEntry[] {
  const entries: ProcessEntry[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      // fields after the parenthesised command: state, ppid, pgrp, ...
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      if (fields[0] === 'Z') continue
      const commandLine = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ')
      entries.push({ pid: Number(entry), ppid: Number(fields[1]), pgid: Number(fields[2]), commandLine })
    } catch {
      // exited while we looked
    }
  }
  return entries
}

/** Living processes of a Ray node: its process group, the leader's descendants, and any naming its temp dir. */
export function rayProcessesOf(leaderPid: number, tempDir: string): number[] {
  const processes = livingProcesses()
  const ours = new Set<number>()
  for (const entry of processes) {
    if (
      entry.pgid === leaderPid ||
      entry.pid === leaderPid ||
      entry.commandLine.includes(`=${tempDir}`) ||
      entry.commandLine.includes(`${tempDir}/`)
    ) {
      ours.add(entry.pid)
    }
  }
  let grew = true
  while (grew) {
    grew = false
    for (const entry of processes) {
      if (!ours.has(entry.pid) && ours.has(entry.ppid)) {
        ours.add(entry.pid)
        grew = true
      }
    }
  }
  ours.delete(process.pid)
  return [...ours]
}

/** Processes of a process group that have not exited (zombies waiting to be reaped do not count). */
export function livingMembers(processGroupId: number): number {
  return livingProcesses().filter((entry) => entry.pgid === processGroupId).length
}
