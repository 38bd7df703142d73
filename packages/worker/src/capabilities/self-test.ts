import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { promisify } from 'node:util'
import type { CapabilityCheck, HardwareInventory, WorkerCapabilities } from '@gpumesh/protocol'
import { asUser } from '../ray/ray-node.ts'
import { CheckName, deriveCapabilities } from './derive.ts'

// The worker's self-test: runs, on this machine, what cluster nodes and model replicas will run (the
// commands, a throwaway network namespace, the managed Python as the sandbox user) and turns the outcome
// into capabilities (derive.ts). It runs at start, every selfTestIntervalMs, and after a prepare failed for
// a reason of this machine's own; `gpumesh worker doctor` runs it by hand.

const run = promisify(execFile)
/** One check's command may take this long (importing Ray on a loaded machine takes seconds). */
export const selfTestCommandTimeoutMs = 60_000
/** The Ray version the coordinator's clusters are built for (scripts/setup-python.sh pins it). */
export const expectedRayVersion = '2.58.0'

export type SelfTestInit = {
  readonly pythonPath: string
  /** The sandbox user cluster nodes and replicas run as; the Python check runs as this user. */
  readonly runAs: { readonly uid: number; readonly gid: number }
  readonly wireguardGoCommand?: string
  readonly clustersEnabled: boolean
  readonly serveModels: boolean
  /** See ClusterNodesInit.netnsMountNamespace. */
  readonly netnsMountNamespace?: string
  readonly nowMs: () => number
}

/** Runs every check; the latest hardware probe says where the GPUs come from. */
export type SelfTest = (inventory: HardwareInventory | undefined) => Promise<WorkerCapabilities>

export function createSelfTest(init: SelfTestInit): SelfTest {
  return async (inventory) => {
    const checks: CapabilityCheck[] = []
    const isRoot = process.getuid?.() === 0
    checks.push({
      name: CheckName.root,
      ok: isRoot,
      detail: isRoot ? 'running as root' : `running as uid ${process.getuid?.() ?? 'unknown'}, not root`,
    })
    const ip = await commandCheck(CheckName.ip, 'ip', ['-V'])
    checks.push(ip)
    if (isRoot && ip.ok) checks.push(await namespaceCheck(init.netnsMountNamespace))
    checks.push(
      await commandCheck(CheckName.wireguardGo, init.wireguardGoCommand ?? 'wireguard-go', ['--version']),
    )
    checks.push(await commandCheck(CheckName.wg, 'wg', ['--version']))
    checks.push(...(await pythonChecks(init.pythonPath, isRoot ? init.runAs : undefined)))
    checks.push(gpuCheck(inventory))
    return deriveCapabilities({
      checks,
      clustersEnabled: init.clustersEnabled,
      serveModels: init.serveModels,
      testedAtMs: init.nowMs(),
    })
  }
}

/** Runs the command; ok with its first line of output, or failed with why it could not run. */
async function commandCheck(
  name: string,
  command: string,
  args: readonly string[],
): Promise<CapabilityCheck> {
  try {
    const { stdout, stderr } = await run(command, args, { timeout: selfTestCommandTimeoutMs })
    const firstLine = `${stdout}${stderr}`.split('\n').find((line) => line.trim() !== '')
    return { name, ok: true, detail: firstLine?.trim().slice(0, 200) ?? 'present' }
  } catch (error) {
    return { name, ok: false, detail: describeFailure(command, error) }
  }
}

/** Creates and deletes a namespace of its own, as a cluster node's prepare will. */
async function namespaceCheck(netnsMountNamespace: string | undefined): Promise<CapabilityCheck> {
  const namespace = `gmst-${randomBytes(4).toString('hex')}`
  const admin = (args: string[]) =>
    netnsMountNamespace
      ? run('nsenter', [`--mount=${netnsMountNamespace}`, '--', 'ip', ...args], {
          timeout: selfTestCommandTimeoutMs,
        })
      : run('ip', args, { timeout: selfTestCommandTimeoutMs })
  try {
    await admin(['netns', 'add', namespace])
  } catch (error) {
    return { name: CheckName.namespaces, ok: false, detail: describeFailure('ip netns add', error) }
  }
  await admin(['netns', 'del', namespace]).catch(() => undefined)
  return { name: CheckName.namespaces, ok: true, detail: 'created and removed a test namespace' }
}

const pythonProbe = [
  'import importlib.util as u, json, sys',
  'import ray',
  "print(json.dumps({'python': sys.version.split()[0], 'ray': ray.__version__,",
  "  'missing': [m for m in ('torch', 'safetensors', 'ray.serve', 'numpy') if u.find_spec(m) is None]}))",
].join('\n')

/** The managed Python as the sandbox user will run it: Ray at the pinned version, and the model runtime. */
async function pythonChecks(
  pythonPath: string,
  runAs: { readonly uid: number; readonly gid: number } | undefined,
): Promise<CapabilityCheck[]> {
  const who = runAs ? `uid ${runAs.uid}` : 'this user'
  const command = runAs ? 'setpriv' : pythonPath
  const args = [...asUser(runAs).slice(1), ...(runAs ? [pythonPath] : []), '-I', '-B', '-c', pythonProbe]
  let probe: { python: string; ray: string; missing: string[] }
  try {
    const { stdout } = await run(command, args, {
      timeout: selfTestCommandTimeoutMs,
      cwd: '/',
      env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: '/tmp', LANG: 'C.UTF-8' },
    })
    probe = JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as typeof probe
  } catch (error) {
    const detail = `${who} cannot run the managed Python ${pythonPath}: ${describeFailure(pythonPath, error)}`
    return [
      { name: CheckName.sandboxPython, ok: false, detail },
      { name: CheckName.modelRuntime, ok: false, detail: 'needs the managed Python (see sandbox python)' },
    ]
  }
  const rayOk = probe.ray === expectedRayVersion
  return [
    {
      name: CheckName.sandboxPython,
      ok: rayOk,
      detail: rayOk
        ? `Python ${probe.python} with Ray ${probe.ray}, run as ${who} (${pythonPath})`
        : `Ray ${probe.ray} at ${pythonPath}; clusters need Ray ${expectedRayVersion}`,
    },
    {
      name: CheckName.modelRuntime,
      ok: probe.missing.length === 0,
      detail:
        probe.missing.length === 0
          ? 'torch, safetensors, numpy and Ray Serve importable'
          : `missing from the managed Python: ${probe.missing.join(', ')}`,
    },
  ]
}

function gpuCheck(inventory: HardwareInventory | undefined): CapabilityCheck {
  if (!inventory) return { name: CheckName.gpus, ok: false, detail: 'the hardware has not been probed yet' }
  if (inventory.probeSource === 'nvidia-smi' && inventory.gpus.length > 0)
    return {
      name: CheckName.gpus,
      ok: true,
      detail: `${inventory.gpus.length}× ${inventory.gpus[0]!.productName} (nvidia-smi)`,
    }
  if (inventory.gpus.length > 0)
    return {
      name: CheckName.gpus,
      ok: false,
      detail: `${inventory.gpus.length} GPU(s) from a replayed nvidia-smi capture, not this machine's`,
    }
  return { name: CheckName.gpus, ok: false, detail: 'no GPU found (nvidia-smi is missing or lists none)' }
}

function describeFailure(command: string, error: unknown): string {
  const failure = error as { code?: string | number; killed?: boolean; stderr?: string; message?: string }
  if (failure.code === 'ENOENT') return `${command} not found`
  if (failure.code === 'EACCES') return `${command}: permission denied`
  if (failure.killed) return `${command} did not answer within ${selfTestCommandTimeoutMs / 1000} s`
  const stderr = failure.stderr?.trim().split('\n').slice(-3).join(' | ')
  const exit = typeof failure.code === 'number' ? `exit ${failure.code}` : String(failure.code ?? '')
  return `${command} failed (${[exit, stderr].filter(Boolean).join(': ') || failure.message || 'unknown error'})`.slice(
    0,
    900,
  )
}
