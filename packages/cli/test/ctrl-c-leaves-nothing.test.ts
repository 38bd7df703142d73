import assert from 'node:assert/strict'
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'
import type { ModelReplicaStartMessage, WorkerMessage } from '@gpumesh/protocol'
import {
  cleanUpModelReplicaLeftovers,
  modelReplicaFootprintFile,
  modelReplicaNames,
  processesNaming,
} from '@gpumesh/worker'

// Issue 25, item 1: Ctrl-C on `gpumesh up` left a model replica behind (its namespace, its veth, a 0777 temp
// dir, its entry in the worker's replica state, its launcher running on). A terminal's Ctrl-C reaches `up` and
// its workers together, and `up` then sends each worker SIGTERM: this stops a worker serving models the same
// way (SIGINT to its process group, then SIGTERM to it) at seeded random moments — while it fetches the model,
// builds the sandbox, waits for the launcher, measures its speed, or serves — and sometimes hands it another
// replica to start after the signal, as a coordinator may while the worker says goodbye. After every stop
// nothing of any replica may be left. The launcher is a stand-in that starts in a second (Ray Serve takes
// twenty), so twenty-odd stops fit in a minute or two; everything else is the worker's own code.

const here = fileURLToPath(new URL('.', import.meta.url))
const harness = join(here, 'fixtures/replica-worker.ts')
const launcher = join(here, 'fixtures/stand-in-model-launcher.py')
/** Any Python 3 the sandbox user may run: the stand-in needs only its standard library. */
const python = '/usr/bin/python3'
const nobody = 65534
const stopCount = Number(process.env['GPUMESH_CTRL_C_STOPS'] ?? 24)
const seed = Number(process.env['GPUMESH_CTRL_C_SEED'] ?? 2025)
/** A stopping worker drains (1 s here) and stops its launcher: far less than this, even on a loaded machine. */
const stopTimeoutMs = 30_000

function unusableReason(): string | undefined {
  if (process.platform !== 'linux' || process.getuid?.() !== 0)
    return 'needs root on Linux (network namespaces)'
  for (const tool of ['ip', 'setpriv'])
    try {
      execFileSync('which', [tool], { stdio: 'ignore' })
    } catch {
      return `needs ${tool}`
    }
  if (!existsSync(python)) return `needs ${python}`
  return undefined
}
// Under CI a missing tool is a failure, not a skip.
const skipReason = process.env['CI'] === 'true' ? undefined : unusableReason()

/** mulberry32: the moments replay from the seed printed on failure. */
function seededRandom(state: number): () => number {
  return () => {
    state = (state + 0x6d2b79f5) | 0
    let t = Math.imul(state ^ (state >>> 15), 1 | state)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Clean-up that goes on past a part already gone. */
function bestEffort(work: () => void): void {
  try {
    work()
  } catch {
    // gone already
  }
}

function namespaceExists(namespace: string): boolean {
  return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .some((line) => line.split(' ')[0] === namespace)
}

function interfaceExists(name: string): boolean {
  return existsSync(`/sys/class/net/${name}`)
}

/** What is left of one replica; empty when nothing is. */
function leftoversOf(replicaId: string, stateDir: string): string[] {
  const names = modelReplicaNames(replicaId)
  const left: string[] = []
  if (namespaceExists(names.namespace)) left.push(`namespace ${names.namespace}`)
  if (interfaceExists(names.hostInterface)) left.push(`interface ${names.hostInterface}`)
  if (existsSync(names.tempDir)) left.push(`temp dir ${names.tempDir}`)
  for (const pid of processesNaming(names.tempDir)) left.push(`process ${pid}`)
  const footprints = modelReplicaFootprintFile(stateDir)
  if (existsSync(footprints) && readFileSync(footprints, 'utf8').includes(replicaId))
    left.push('its entry in the replica state')
  return left
}

type Phase = Extract<WorkerMessage, { type: 'model_replica_status' }>['phase']

describe(
  'issue 25 item 1: Ctrl-C stopping a worker that serves models',
  { skip: skipReason ?? false },
  () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'gpumesh-ctrl-c-'))
    const weights = Buffer.from('stand-in weights for the Ctrl-C test')
    const sha256 = createHash('sha256').update(weights).digest('hex')
    const replicaIds: string[] = []
    const children = new Set<ChildProcess>()
    let server: Server
    let artifactBaseUrl: string

    before(async () => {
      server = createServer((_request, response) => response.end(weights))
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
      artifactBaseUrl = `http://127.0.0.1:${(server.address() as { port: number }).port}`
    })

    after(async () => {
      // Whatever a failed run left: the workers, then every replica's parts by the names they derive from.
      for (const child of children) child.kill('SIGKILL')
      await cleanUpModelReplicaLeftovers(stateDir).catch(() => undefined)
      for (const replicaId of replicaIds) {
        const names = modelReplicaNames(replicaId)
        for (const pid of processesNaming(names.tempDir)) bestEffort(() => process.kill(pid, 'SIGKILL'))
        if (interfaceExists(names.hostInterface))
          bestEffort(() => execFileSync('ip', ['link', 'del', names.hostInterface], { stdio: 'ignore' }))
        if (namespaceExists(names.namespace))
          bestEffort(() => execFileSync('ip', ['netns', 'del', names.namespace], { stdio: 'ignore' }))
        rmSync(names.tempDir, { recursive: true, force: true })
      }
      await new Promise((resolve) => server.close(resolve))
      rmSync(stateDir, { recursive: true, force: true })
    })

    const startMessage = (replicaId: string): ModelReplicaStartMessage => ({
      type: 'model_replica_start',
      replicaId,
      model: {
        name: 'tiny-chat',
        version: '1.0.0',
        artifacts: [{ path: 'model.safetensors', sha256, sizeBytes: weights.length }],
      },
      accessToken: 'a'.repeat(43),
      minReplicas: 1,
      maxReplicas: 1,
    })

    it(`leaves no namespace, interface, process, temp dir or state entry after ${stopCount} stops (seed ${seed})`, async () => {
      const random = seededRandom(seed)
      const phasesAtSignal: string[] = []
      for (let stop = 0; stop < stopCount; stop += 1) {
        const context = `stop ${stop} of seed ${seed}`
        const ids = ['a', 'b', 'c'].map((suffix) => `c${process.pid}-${stop}${suffix}`)
        replicaIds.push(...ids)
        const child = spawn(process.execPath, [harness, stateDir, artifactBaseUrl, python, launcher], {
          // Its own process group, as `up` and its workers share the terminal's: the group gets the Ctrl-C.
          detached: true,
          stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
        })
        children.add(child)
        const output: string[] = []
        child.stderr!.on('data', (chunk: Buffer) => output.push(chunk.toString()))
        const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
        const latestPhase = new Map<string, Phase>()
        let finishedItsStop = false
        child.on('message', (message: WorkerMessage | { type: 'harness_ready' | 'harness_stopped' }) => {
          if (message.type === 'model_replica_status') latestPhase.set(message.replicaId, message.phase)
          if (message.type === 'harness_stopped') finishedItsStop = true
        })
        await new Promise<void>((resolve) => child.once('message', () => resolve()))

        child.send(startMessage(ids[0]!))
        // The first stop comes once a replica serves, so the temp dir is seen while the launcher uses it.
        if (stop === 0) {
          const deadline = Date.now() + stopTimeoutMs
          while (latestPhase.get(ids[0]!) !== 'ready' && Date.now() < deadline) await sleep(50)
          assert.equal(
            latestPhase.get(ids[0]!),
            'ready',
            `${context}: the replica never became ready\n${output.join('')}`,
          )
        } else {
          // A second replica now and then, started at its own moment.
          const secondAtMs = random() < 0.5 ? random() * 1_500 : undefined
          const signalAtMs = random() * 3_000
          if (secondAtMs !== undefined && secondAtMs < signalAtMs) {
            await sleep(secondAtMs)
            child.send(startMessage(ids[1]!))
            await sleep(signalAtMs - secondAtMs)
          } else await sleep(signalAtMs)
        }

        // While the replica runs, nobody but the sandbox user may use its temp dir (root owns it for the
        // moment between mkdir and chown).
        const tempDir = modelReplicaNames(ids[0]!).tempDir
        if (existsSync(tempDir)) {
          const stat = statSync(tempDir)
          const mode = (stat.mode & 0o777).toString(8)
          assert.equal(stat.mode & 0o077, 0, `${context}: ${tempDir} has mode ${mode}`)
          assert.ok(
            stat.uid === nobody || stat.uid === 0,
            `${context}: ${tempDir} belongs to uid ${stat.uid}`,
          )
        }
        phasesAtSignal.push(latestPhase.get(ids[0]!) ?? 'none yet')

        // Ctrl-C: the terminal signals the whole group; then `up` sends its worker SIGTERM.
        process.kill(-child.pid!, 'SIGINT')
        await sleep(random() * 300)
        if (child.connected && random() < 0.5) child.send(startMessage(ids[2]!))
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')

        const timedOut = await Promise.race([exited.then(() => false), sleep(stopTimeoutMs).then(() => true)])
        children.delete(child)
        if (timedOut) child.kill('SIGKILL')
        assert.equal(timedOut, false, `${context}: the worker did not stop within ${stopTimeoutMs} ms`)
        // Not its exit status: a SIGTERM that lands while Node exits (its handlers gone) reads as killed by it.
        assert.ok(
          finishedItsStop,
          `${context}: the worker ended before its stop finished\n${output.join('')}`,
        )
        const left = ids.flatMap((replicaId) => leftoversOf(replicaId, stateDir))
        assert.deepEqual(left, [], `${context}: left behind\n${output.join('')}`)
        // A replica asked for after the signal is refused, never started.
        for (const replicaId of ids) {
          const phase = latestPhase.get(replicaId)
          assert.ok(
            phase === undefined || phase === 'stopped' || phase === 'failed',
            `${context}: ${replicaId} ended ${phase}`,
          )
        }
      }
      // The seeded moments reach the replica's start as well as a serving replica.
      assert.ok(phasesAtSignal.includes('starting'), `stops came at: ${phasesAtSignal.join(', ')}`)
      assert.ok(phasesAtSignal.includes('ready'), `stops came at: ${phasesAtSignal.join(', ')}`)
    })
  },
)
