import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { after, before, describe, it } from 'node:test'
import {
  cleanUpModelReplicaLeftovers,
  createModelReplica,
  modelReplicaFootprintFile,
  modelReplicaNames,
  ModelReplicaStartError,
  type ModelReplica,
  type ModelReplicaInit,
} from '../src/models/model-replica.ts'
import type { ArtifactRef } from '../src/models/artifact-cache.ts'
import { rayProcessesOf } from '../src/ray/ray-node.ts'

// A model replica as a supplier's machine runs it: tiny-chat behind Ray Serve in a network namespace of its
// own, as nobody, reached only through the token-checking relay. Then the two ways it ends: a drain that
// lets a running stream finish, and an agent that "crashed" and left its replica for the next start to remove.

const repoRoot = resolve(import.meta.dirname, '../../..')
const python = join(repoRoot, '.venv/bin/python')
const tinyModel = join(repoRoot, 'python/models/tiny-chat')
const nobody = { uid: 65534, gid: 65534 }

function unusableReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces, veth pairs, setpriv)'
  if (spawnSync('ip', ['-V'], { stdio: 'ignore' }).status !== 0) return 'needs iproute2 (ip)'
  if (
    !existsSync(python) ||
    spawnSync(python, ['-c', 'import torch, ray.serve'], { stdio: 'ignore' }).status !== 0
  )
    return 'needs .venv with torch and Ray Serve (scripts/setup-python.sh)'
  if (!existsSync(join(tinyModel, 'model.safetensors'))) return 'needs python/models/tiny-chat'
  return undefined
}

const skipReason = unusableReason()

function artifactsOf(directory: string): ArtifactRef[] {
  return readdirSync(directory).map((path) => {
    const bytes = readFileSync(join(directory, path))
    return { path, sha256: createHash('sha256').update(bytes).digest('hex'), sizeBytes: bytes.length }
  })
}

function namespaceExists(namespace: string): boolean {
  return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .some((line) => line.split(' ')[0] === namespace)
}

function interfaceExists(name: string): boolean {
  return spawnSync('ip', ['link', 'show', 'dev', name], { stdio: 'ignore' }).status === 0
}

function namespacePids(namespace: string): number[] {
  const listed = spawnSync('ip', ['netns', 'pids', namespace], { encoding: 'utf8' })
  if (listed.status !== 0) return []
  return listed.stdout
    .split('\n')
    .filter((line) => /^\d+$/.test(line.trim()))
    .map(Number)
}

/** The replica's processes: the launcher's tree and group, what names its temp dir, all in its namespace. */
function processesOf(launcherPid: number, replicaId: string): number[] {
  const names = modelReplicaNames(replicaId)
  return [...new Set([...rayProcessesOf(launcherPid, names.tempDir), ...namespacePids(names.namespace)])]
}

function userIdsOf(pid: number): string | undefined {
  try {
    return /^Uid:\s+(.*)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]?.trim()
  } catch {
    return undefined // exited meanwhile
  }
}

async function waitUntil(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) return false
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  return true
}

function rawGet(
  baseUrl: string,
  path: string,
  headers: Record<string, string>,
): Promise<{ status: number; body: string }> {
  const { hostname, port } = new URL(baseUrl)
  return new Promise((resolve, reject) => {
    const outgoing = request({ host: hostname, port, path, headers, agent: false }, (incoming) => {
      let body = ''
      incoming.setEncoding('utf8')
      incoming.on('data', (chunk: string) => (body += chunk))
      incoming.on('end', () => resolve({ status: incoming.statusCode ?? 0, body }))
    })
    outgoing.once('error', reject)
    outgoing.end()
  })
}

/** Reads an SSE body: each network read, and the events in all of them. */
async function readEvents(response: Response): Promise<{ reads: number; events: string[] }> {
  const reader = response.body!.getReader()
  const decoder = new TextDecoder()
  let text = ''
  let reads = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    reads += 1
    text += decoder.decode(value, { stream: true })
  }
  const events = text
    .split('\n\n')
    .map((event) => event.trim())
    .filter((event) => event.startsWith('data: '))
    .map((event) => event.slice('data: '.length))
  return { reads, events }
}

describe('a model replica in its own namespace behind the relay', { skip: skipReason ?? false }, () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'gpumesh-replica-state-'))
  const accessToken = randomBytes(24).toString('hex')
  const logLines: string[] = []
  const log = (level: string) => (message: string, fields?: Record<string, unknown>) =>
    logLines.push(`${level} ${message} ${JSON.stringify(fields ?? {})}`)
  const initFor = (replicaId: string): ModelReplicaInit => ({
    replicaId,
    pythonPath: python,
    modelDir: tinyModel,
    artifacts: artifactsOf(tinyModel),
    stateDir,
    runAs: nobody,
    numCpus: 2,
    minReplicas: 1,
    maxReplicas: 1,
    objectStoreMemoryBytes: 100 * 1024 * 1024,
    relayHost: '127.0.0.1',
    relayPort: 0,
    accessToken,
    logger: { info: log('info'), warn: log('warn'), error: log('error') },
  })
  const mainId = `t${process.pid}-main`
  const crashedId = `t${process.pid}-crashed`
  const refusedId = `t${process.pid}-refused`
  const abandonedId = `t${process.pid}-abandoned`
  const replicas: ModelReplica[] = []
  let replica: ModelReplica
  let relayUrl: string
  let launcherPid: number
  let startToReadyMs: number

  const post = (path: string, body: unknown, token: string | undefined = accessToken) =>
    fetch(`${relayUrl}${path}`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
      },
      body: JSON.stringify(body),
    })

  before(async () => {
    replica = createModelReplica(initFor(mainId))
    replicas.push(replica)
    const startedAtMs = Date.now()
    ;({ relayUrl } = await replica.start())
    startToReadyMs = Date.now() - startedAtMs
    launcherPid = replica.launcherPid!
  })

  after(async () => {
    // Whatever a failed test left: stop() is idempotent, and the footprint file names the rest.
    for (const each of replicas) await each.stop().catch(() => undefined)
    await cleanUpModelReplicaLeftovers(stateDir)
    rmSync(stateDir, { recursive: true, force: true })
    for (const replicaId of [mainId, crashedId, refusedId, abandonedId]) {
      const names = modelReplicaNames(replicaId)
      spawnSync('ip', ['netns', 'del', names.namespace], { stdio: 'ignore' })
      spawnSync('ip', ['link', 'del', names.hostInterface], { stdio: 'ignore' })
      rmSync(names.tempDir, { recursive: true, force: true })
    }
  })

  it('keeps a footprint of what it made', (context) => {
    context.diagnostic(`replica start to ready: ${startToReadyMs} ms`)
    const footprints = JSON.parse(readFileSync(modelReplicaFootprintFile(stateDir), 'utf8'))
    const names = modelReplicaNames(mainId)
    assert.deepEqual(footprints, [
      {
        replicaId: mainId,
        namespace: names.namespace,
        hostInterface: names.hostInterface,
        tempDir: names.tempDir,
        launcherPid,
      },
    ])
  })

  it('refuses requests without the right token, in OpenAI error shape', async () => {
    for (const authorization of [undefined, `Bearer ${accessToken}x`, 'Bearer ', `Basic ${accessToken}`]) {
      const response = await fetch(`${relayUrl}/v1/models`, {
        headers: authorization === undefined ? {} : { authorization },
      })
      assert.equal(response.status, 401, String(authorization))
      assert.deepEqual(await response.json(), {
        error: {
          message: 'missing or wrong access token',
          type: 'invalid_request_error',
          param: null,
          code: 'invalid_api_key',
        },
      })
    }
    const models = await fetch(`${relayUrl}/v1/models`, {
      headers: { authorization: `Bearer ${accessToken}` },
    })
    assert.equal(models.status, 200)
    assert.equal(((await models.json()) as any).data[0].id, 'tiny-chat')
  })

  it('relays only /v1/ and /health', async () => {
    const headers = { authorization: `Bearer ${accessToken}` }
    const health = await fetch(`${relayUrl}/health`, { headers })
    assert.equal(health.status, 200)
    assert.equal(((await health.json()) as any).status, 'ok')
    // Sent raw: fetch would resolve the dot segments itself, and the relay must too.
    for (const path of ['/', '/-/routes', '/v1/../-/routes', '/v1/%2e%2E/-/healthz', '/healthz', '/v1']) {
      const { status, body } = await rawGet(relayUrl, path, headers)
      assert.equal(status, 404, path)
      assert.equal(JSON.parse(body).error.code, 'unknown_url', path)
    }
  })

  it('refuses a body over 1 MiB without forwarding it', async () => {
    const response = await post('/v1/completions', { model: 'tiny-chat', prompt: 'x'.repeat(1024 * 1024) })
    assert.equal(response.status, 413)
    assert.equal(((await response.json()) as any).error.code, 'request_too_large')
  })

  it("fails to start on a wrong artifact hash, with the launcher's code, and leaves nothing", async () => {
    const init = initFor(refusedId)
    const wrong = init.artifacts.map((artifact) =>
      artifact.path === 'config.json' ? { ...artifact, sha256: '0'.repeat(64) } : artifact,
    )
    const refused = createModelReplica({ ...init, artifacts: wrong })
    replicas.push(refused)
    await assert.rejects(refused.start(), (error: unknown) => {
      assert.ok(error instanceof ModelReplicaStartError)
      assert.equal(error.code, 'artifact_hash_mismatch')
      return true
    })
    const names = modelReplicaNames(refusedId)
    assert.equal(namespaceExists(names.namespace), false)
    assert.equal(interfaceExists(names.hostInterface), false)
    assert.equal(existsSync(names.tempDir), false)
    // Only the main replica's footprint remains.
    const footprints = JSON.parse(readFileSync(modelReplicaFootprintFile(stateDir), 'utf8'))
    assert.deepEqual(
      footprints.map((footprint: { replicaId: string }) => footprint.replicaId),
      [mainId],
    )
  })

  it('stops while starting: start() rejects with code stopped, and nothing is left', async () => {
    const abandoned = createModelReplica(initFor(abandonedId))
    replicas.push(abandoned)
    const starting = abandoned.start()
    const names = modelReplicaNames(abandonedId)
    // Stopped while Ray is coming up inside the namespace: processes beside the launcher, none ready yet.
    assert.ok(await waitUntil(() => namespacePids(names.namespace).length >= 3, 60_000))
    const pid = abandoned.launcherPid!
    await abandoned.stop()
    await assert.rejects(starting, (error: unknown) => {
      assert.ok(error instanceof ModelReplicaStartError)
      assert.equal(error.code, 'stopped')
      return true
    })
    assert.deepEqual(processesOf(pid, abandonedId), [])
    assert.equal(namespaceExists(names.namespace), false)
    assert.equal(interfaceExists(names.hostInterface), false)
    assert.equal(existsSync(names.tempDir), false)
  })

  it('answers a completion with exact token counts', async () => {
    const prompt = 'The Fox and the '
    const response = await post('/v1/completions', {
      model: 'tiny-chat',
      prompt,
      max_tokens: 12,
      temperature: 0,
      seed: 7,
    })
    assert.equal(response.status, 200)
    const completion = (await response.json()) as any
    assert.equal(completion.object, 'text_completion')
    assert.equal(completion.usage.prompt_tokens, [...prompt].length)
    assert.ok(completion.usage.completion_tokens >= 1 && completion.usage.completion_tokens <= 12)
    assert.equal(
      completion.usage.total_tokens,
      completion.usage.prompt_tokens + completion.usage.completion_tokens,
    )
    // The replica's own errors come through as they are.
    const tooLong = await post('/v1/completions', { model: 'tiny-chat', prompt: 'x', max_tokens: 100_000 })
    assert.equal(tooLong.status, 400)
    assert.equal(((await tooLong.json()) as any).error.param, 'max_tokens')
  })

  it('streams a chat completion as server-sent events, chunk by chunk', async () => {
    const response = await post('/v1/chat/completions', {
      model: 'tiny-chat',
      messages: [{ role: 'user', content: 'Tell me about the fox.' }],
      max_tokens: 64,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    })
    assert.equal(response.status, 200)
    assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/)
    const { reads, events } = await readEvents(response)
    assert.equal(events.at(-1), '[DONE]')
    const chunks = events.slice(0, -1).map((event) => JSON.parse(event))
    assert.ok(chunks.length >= 3, `${chunks.length} chunks`)
    assert.ok(reads >= 2, `the body came in ${reads} read(s): buffered, not streamed`)
    assert.equal(chunks[0].object, 'chat.completion.chunk')
    assert.ok(chunks.at(-1).usage.completion_tokens >= 1)
  })

  it('runs the launcher and its Ray as the unprivileged user', () => {
    const pids = processesOf(launcherPid, mainId)
    // The launcher, Ray's GCS and raylet, Serve's controller, proxy and replica at least.
    assert.ok(pids.length >= 4, `only ${pids.length} processes found`)
    assert.ok(pids.includes(launcherPid))
    for (const pid of pids) {
      const userIds = userIdsOf(pid)
      if (userIds !== undefined) assert.equal(userIds, '65534\t65534\t65534\t65534', `process ${pid}`)
    }
  })

  it("issue 25 item 1: keeps its temp dir 0700 and the sandbox user's, though Ray makes its own 0777", () => {
    const { tempDir } = modelReplicaNames(mainId)
    const outer = statSync(tempDir)
    assert.equal((outer.mode & 0o777).toString(8), '700')
    assert.equal(outer.uid, nobody.uid)
    // Ray's dir inside it is world writable (ray._common.utils.try_make_directory_shared): nobody else reaches it.
    assert.equal(statSync(join(tempDir, 'ray')).uid, nobody.uid)
  })

  it('gives the namespace no default route, only the /30 to the worker', () => {
    const { namespace, hostInterface, replicaInterface } = modelReplicaNames(mainId)
    const routes4 = execFileSync('ip', ['-n', namespace, '-4', 'route', 'show'], { encoding: 'utf8' }).trim()
    const routes6 = execFileSync('ip', ['-n', namespace, '-6', 'route', 'show'], { encoding: 'utf8' }).trim()
    assert.doesNotMatch(`${routes4}\n${routes6}`, /default/)
    assert.match(routes4, new RegExp(`^10\\.250\\.\\d+\\.\\d+/30 dev ${replicaInterface} `))
    assert.equal(routes4.split('\n').length, 1, routes4)
    const hostAddresses = execFileSync('ip', ['-4', '-o', 'addr', 'show', 'dev', hostInterface], {
      encoding: 'utf8',
    })
    assert.match(hostAddresses, /inet 10\.250\.\d+\.\d+\/30 /)
  })

  it('drains: a running stream finishes, a new request gets 503, then everything is gone', async () => {
    const names = modelReplicaNames(mainId)
    const pidsBefore = processesOf(launcherPid, mainId)
    // temperature 0 on tiny-chat runs to max_tokens: most of a second of generation on one thread.
    const slow = await post('/v1/completions', {
      model: 'tiny-chat',
      prompt: 'The Fox and the ',
      max_tokens: 512,
      temperature: 0,
      stream: true,
    })
    assert.equal(slow.status, 200)
    const reader = slow.body!.getReader()
    const first = await reader.read()
    assert.equal(first.done, false)
    assert.equal(replica.inFlight, 1)
    const drained = replica.drain(120_000)

    const refused = await post('/v1/completions', { model: 'tiny-chat', prompt: 'x', max_tokens: 1 })
    assert.equal(refused.status, 503)
    assert.deepEqual(await refused.json(), {
      error: {
        message: 'this model replica is shutting down',
        type: 'server_error',
        param: null,
        code: 'replica_draining',
      },
    })

    let text = new TextDecoder().decode(first.value)
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      text += new TextDecoder().decode(value)
    }
    assert.match(text, /data: \[DONE\]\s*$/)
    await drained
    assert.equal(replica.inFlight, 0)

    assert.deepEqual(
      pidsBefore.filter((pid) => userIdsOf(pid) !== undefined),
      [],
      'processes left after drain',
    )
    assert.equal(namespaceExists(names.namespace), false)
    assert.equal(interfaceExists(names.hostInterface), false)
    assert.equal(existsSync(names.tempDir), false)
    assert.equal(existsSync(modelReplicaFootprintFile(stateDir)), false)
    await assert.rejects(fetch(`${relayUrl}/health`))
    // Stopping again does nothing.
    await replica.stop()
  })

  it('removes a replica whose agent crashed, from the footprint it left', async () => {
    const crashed = createModelReplica(initFor(crashedId))
    replicas.push(crashed)
    await crashed.start()
    const pid = crashed.launcherPid!
    const names = modelReplicaNames(crashedId)
    const pids = processesOf(pid, crashedId)
    assert.ok(pids.length >= 4)
    assert.equal(namespaceExists(names.namespace), true)

    // No stop(): as after a kill -9 of the agent, only the footprint file knows what is there.
    assert.equal(await cleanUpModelReplicaLeftovers(stateDir), 1)
    assert.ok(
      await waitUntil(() => pids.every((each) => userIdsOf(each) === undefined), 10_000),
      'processes left after clean-up',
    )
    assert.equal(namespaceExists(names.namespace), false)
    assert.equal(interfaceExists(names.hostInterface), false)
    assert.equal(existsSync(names.tempDir), false)
    assert.equal(existsSync(modelReplicaFootprintFile(stateDir)), false)
    assert.equal(await cleanUpModelReplicaLeftovers(stateDir), 0)
  })
})
