import assert from 'node:assert/strict'
import { execFile, execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, beforeEach, describe, it } from 'node:test'
import type { ClusterEventView, ClusterView, JobView } from '@gpumesh/protocol'

// The cluster and job commands end to end against a scripted coordinator on loopback: what they ask for,
// what they print while following, and how they exit. The coordinator's own behaviour is tested in its
// package; here it only replays fixed answers.

const cli = join(import.meta.dirname, '../src/main.ts')
const clusterId = 'cls_aaaaaaaaaaaaaaaaaaaa'
const jobId = 'job_bbbbbbbbbbbbbbbbbbbb'
const head = 'dev_headheadheadheadhead'
const worker = 'dev_workworkworkworkwork'
const t0 = Date.UTC(2026, 0, 1, 12, 0, 0)

type Request = { method: string; path: string; query: URLSearchParams; body: unknown }
type Handler = (request: Request) => { status?: number; body: unknown }

let handler: Handler
let requests: Request[]
let baseUrl: string
const scratch = mkdtempSync(join(tmpdir(), 'gpumesh-cli-'))
const server = createServer((incoming: IncomingMessage, response: ServerResponse) => {
  let text = ''
  incoming.on('data', (chunk: Buffer) => (text += chunk.toString()))
  incoming.on('end', () => {
    const url = new URL(incoming.url ?? '/', 'http://localhost')
    const request = {
      method: incoming.method ?? 'GET',
      path: url.pathname,
      query: url.searchParams,
      body: text ? JSON.parse(text) : undefined,
    }
    requests.push(request)
    const reply = handler(request)
    response.writeHead(reply.status ?? 200, { 'content-type': 'application/json' })
    response.end(JSON.stringify(reply.body))
  })
})

before(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})
after(() => {
  server.close()
  rmSync(scratch, { recursive: true, force: true })
})
beforeEach(() => {
  requests = []
})

type Run = { code: number; stdout: string; stderr: string }

function gpumesh(...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [cli, ...args],
      {
        env: {
          ...process.env,
          GPUMESH_COORDINATOR: baseUrl,
          GPUMESH_API_KEY: 'gpm_test',
          GPUMESH_CONFIG_DIR: join(scratch, 'config'),
          TZ: 'UTC',
        },
        timeout: 60_000,
      },
      (error, stdout, stderr) => resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr }),
    )
  })
}

function cluster(state: ClusterView['state'], stateReason: string): ClusterView {
  const node = (deviceId: string, role: 'head' | 'worker', index: number) => ({
    deviceId,
    role,
    phase: state === 'ready' ? 'ray_joined' : state === 'terminated' ? 'released' : 'reserved',
    phaseReason: '',
    // A torn-down cluster has given its subnet back.
    overlayAddress: state === 'terminated' ? null : `100.64.3.${index}`,
    joinedAtMs: t0,
    leftAtMs: state === 'terminated' ? t0 + 60_000 : null,
    pricePerHourUsd: '1.20',
    servedMs: state === 'ready' ? 18_000 : 0,
  })
  return {
    id: clusterId,
    name: 'demo',
    state,
    stateReason,
    desired: state === 'terminating' || state === 'terminated' ? 'terminated' : 'running',
    nodeCount: 2,
    gpusPerNode: 1,
    durationHours: 1,
    pricePerHourUsd: '2.4',
    subnet: '100.64.3.0/24',
    rayAddress: state === 'ready' ? '100.64.3.1:6379' : null,
    createdAtMs: t0,
    provisionDeadlineAtMs: state === 'pending' || state === 'provisioning' ? t0 + 300_000 : null,
    readyAtMs: state === 'ready' ? t0 + 42_000 : null,
    expiresAtMs: t0 + 3_600_000,
    endedAtMs: null,
    nodes: [node(head, 'head', 1), node(worker, 'worker', 2)],
    billing: null,
  }
}

const event = (seq: number, kind: string, deviceId: string | null, message: string): ClusterEventView => ({
  seq: String(seq),
  atMs: t0 + seq * 1000,
  kind,
  deviceId,
  message,
})

/** Serves `events` one per poll; the cluster reads `stateAfter(n)` once n of them have been served. */
function eventScript(events: ClusterEventView[], stateAfter: (served: number) => ClusterView): Handler {
  let served = 0
  return (request) => {
    if (request.path === `/v1/clusters/${clusterId}/events`) {
      const afterSeq = Number(request.query.get('after') ?? '0')
      const next = events.filter((one) => Number(one.seq) > afterSeq).slice(0, 1)
      served = Math.max(served, ...next.map((one) => Number(one.seq)))
      return { body: { events: next } }
    }
    if (request.path === `/v1/clusters/${clusterId}` && request.method === 'GET')
      return { body: stateAfter(served) }
    return { status: 404, body: { code: 'GPUMESH_ERR_NOT_FOUND', message: `no ${request.path}` } }
  }
}

describe('gpumesh cluster create', () => {
  it('creates, follows provisioning one line per event, and ends with the Ray address', async () => {
    const events = [
      event(1, 'created', null, '2 nodes reserved at 2.4 USD/h'),
      event(2, 'node_reserved', head, 'reserved as head'),
      event(3, 'node_mesh_up', head, 'mesh up at 100.64.3.1'),
      event(4, 'node_ray_joined', worker, 'node 100.64.3.2 joined Ray'),
      event(5, 'state_changed', null, 'ready: Ray reports all 2 nodes alive'),
    ]
    const follow = eventScript(events, (served) =>
      // Ready one event early: the last one is read after the state, without waiting.
      served >= 4 ? cluster('ready', 'Ray reports all 2 nodes alive') : cluster('provisioning', 'mesh'),
    )
    handler = (request) =>
      request.method === 'POST' && request.path === '/v1/clusters'
        ? { status: 201, body: cluster('pending', 'nodes reserved') }
        : follow(request)

    const run = await gpumesh('cluster', 'create', '--gpus', 'A100:2', '--nodes', '2', '--hours', '1')
    assert.equal(run.code, 0, run.stderr)
    assert.deepEqual(requests[0]!.body, { gpus: 'A100:2', nodes: 2, durationHours: 1 })
    assert.equal(
      run.stdout,
      [
        `cluster ${clusterId} (demo): 2 nodes reserved at $2.4/h for 1 h`,
        'it is ready by 12:05:00 UTC or it fails, releasing everything; nothing is charged before it is ready',
        '12:00:01  cluster  2 nodes reserved at 2.4 USD/h',
        '12:00:02  node 100.64.3.1 (dev_headhe…)  reserved as head',
        '12:00:03  node 100.64.3.1 (dev_headhe…)  mesh up',
        '12:00:04  node 100.64.3.2 (dev_workwo…)  joined Ray',
        '12:00:05  cluster  ready: Ray reports all 2 nodes alive',
        '',
        `cluster ${clusterId} ready in 42 s: 2/2 nodes in Ray, Ray address 100.64.3.1:6379`,
        `  run a job:     gpumesh job submit --cluster ${clusterId} --working-dir . -- python train.py`,
        `  tear it down:  gpumesh cluster terminate ${clusterId}`,
        '',
      ].join('\n'),
    )
    const polls = requests.filter((request) => request.path.endsWith('/events'))
    assert.deepEqual(
      polls.map((poll) => poll.query.get('after')),
      ['0', '1', '2', '3', '4'],
    )
    // Every poll but the last (the drain) waits for news.
    assert.deepEqual(
      polls.map((poll) => poll.query.get('waitMs')),
      ['25000', '25000', '25000', '25000', '0'],
    )
  })

  it('exits non-zero when the cluster fails', async () => {
    handler = (request) =>
      request.method === 'POST'
        ? { status: 201, body: cluster('pending', 'nodes reserved') }
        : eventScript([event(1, 'state_changed', null, 'failed: no replacement')], () =>
            cluster('failed', 'no replacement for a lost node'),
          )(request)
    const run = await gpumesh('cluster', 'create', '--gpus', '2')
    assert.equal(run.code, 1)
    assert.match(run.stdout, /12:00:01 {2}cluster {2}failed: no replacement\n/)
    assert.equal(run.stderr, `cluster ${clusterId} failed: no replacement for a lost node\n`)
  })

  it('prints the blocking constraint and the market when nothing fits', async () => {
    handler = () => ({
      status: 409,
      body: {
        code: 'GPUMESH_ERR_UNPLACEABLE',
        message: 'cannot place this cluster: no A100 at or under 1 USD per GPU-hour',
        details: {
          blockingConstraint: 'price',
          rejections: { price: 3 },
          withoutBlockingConstraint: { pricePerHourUsd: '4.5', nodes: [] },
          market: [{ gpuModel: 'A100', nodes: 3, gpus: 24, minPricePerGpuHourUsd: '1.5' }],
        },
      },
    })
    const run = await gpumesh('cluster', 'create', '--gpus', 'A100:8', '--max-price', '1')
    assert.equal(run.code, 1)
    assert.match(run.stdout, /^cannot be placed — blocked by price\n {2}cannot place this cluster: no A100/)
    assert.match(run.stdout, /without the price constraint it would cost \$4\.5\/h/)
    assert.match(run.stdout, /A100 .*│ 3 .*│ 24 .*│ 1\.5/)
  })

  it('returns at once with --no-wait', async () => {
    handler = () => ({ status: 201, body: cluster('pending', 'nodes reserved') })
    const run = await gpumesh('cluster', 'create', '--gpus', '2', '--no-wait')
    assert.equal(run.code, 0, run.stderr)
    assert.equal(requests.length, 1)
    assert.match(run.stdout, new RegExp(`gpumesh cluster events ${clusterId} --follow`))
  })

  it('names the flag it refuses', async () => {
    const run = await gpumesh('cluster', 'create', '--gpus', '2', '--wait-timeout', 'soon')
    assert.equal(run.code, 2)
    assert.equal(run.stderr, 'error: --wait-timeout must be a positive number, not "soon"\n')
    assert.equal(requests.length, 0)
  })
})

describe('gpumesh cluster terminate', () => {
  it('follows from the events already there until the cluster is terminated', async () => {
    const old = [event(1, 'created', null, 'old'), event(2, 'state_changed', null, 'ready: old')]
    const teardown = [
      event(3, 'state_changed', null, 'terminating: asked by the renter'),
      event(4, 'node_released', worker, 'released: released by its worker'),
      event(5, 'state_changed', null, 'terminated: every node released'),
    ]
    let terminated = false
    const follow = eventScript([...old, ...teardown], (served) =>
      served >= 5
        ? cluster('terminated', 'every node released')
        : cluster('terminating', 'asked by the renter'),
    )
    handler = (request) => {
      if (request.path.endsWith('/terminate')) {
        terminated = true
        return { body: cluster('terminating', 'asked by the renter') }
      }
      // Before the terminate call, the log holds only the old events, all in one page.
      if (!terminated && request.path.endsWith('/events'))
        return { body: { events: old.filter((one) => Number(one.seq) > Number(request.query.get('after'))) } }
      return follow(request)
    }
    const run = await gpumesh('cluster', 'terminate', clusterId)
    assert.equal(run.code, 0, run.stderr)
    assert.equal(
      run.stdout,
      [
        `terminating cluster ${clusterId} (demo)`,
        '12:00:03  cluster  terminating: asked by the renter',
        '12:00:04  node 100.64.3.2 (dev_workwo…)  released: released by its worker',
        '12:00:05  cluster  terminated: every node released',
        `cluster ${clusterId} terminated`,
        '',
      ].join('\n'),
    )
  })

  it('checks the id before calling anyone', async () => {
    const run = await gpumesh('cluster', 'terminate', 'my cluster/1')
    assert.equal(run.code, 2)
    assert.match(
      run.stderr,
      /<id>: "my cluster\/1" is neither a cluster id \(cls_\.\.\.\) nor a cluster name/,
    )
    assert.equal(requests.length, 0)
  })

  it("looks a name up among the caller's clusters and says when none has it", async () => {
    handler = () => ({ body: { clusters: [] } })
    const run = await gpumesh('cluster', 'terminate', 'my-cluster')
    assert.equal(run.code, 2)
    assert.match(run.stderr, /<id>: you have no cluster named "my-cluster"/)
    assert.equal(requests.length, 1)
    assert.equal(requests[0]?.path, '/v1/clusters')
  })
})

describe('gpumesh cluster ls, show, extend', () => {
  it('lists with nodes ready out of total', async () => {
    handler = () => ({ body: { clusters: [cluster('ready', 'ok')] } })
    const run = await gpumesh('cluster', 'ls', '--limit', '5')
    assert.equal(run.code, 0, run.stderr)
    assert.equal(requests[0]!.query.get('limit'), '5')
    assert.match(
      run.stdout,
      new RegExp(`${clusterId} .*│ demo .*│ ready .*│ 2/2 .*│ \\$2\\.4 .*│ 2026-01-01T13:00:00Z`),
    )
  })

  it('shows each node', async () => {
    handler = () => ({ body: cluster('ready', 'ok') })
    const run = await gpumesh('cluster', 'show', clusterId)
    assert.equal(run.code, 0, run.stderr)
    assert.match(run.stdout, /Ray address +100\.64\.3\.1:6379/)
    assert.match(run.stdout, new RegExp(`head .*│ 100\\.64\\.3\\.1 .*│ ray_joined .*│ ${head}`))
  })

  it('extends by a positive number of hours', async () => {
    handler = () => ({ body: { ...cluster('ready', 'ok'), durationHours: 3.5 } })
    const run = await gpumesh('cluster', 'extend', clusterId, '--hours', '2.5')
    assert.equal(run.code, 0, run.stderr)
    assert.deepEqual(requests[0]!.body, { hours: 2.5 })
    const refused = await gpumesh('cluster', 'extend', clusterId, '--hours', '0')
    assert.equal(refused.code, 2)
    assert.match(refused.stderr, /--hours must be a positive number/)
  })
})

describe('gpumesh job submit', () => {
  const job = (status: JobView['status'], exitCode: number | null, message: string): JobView => ({
    id: jobId,
    clusterId,
    entrypoint: 'python train.py',
    status,
    message,
    exitCode,
    createdAtMs: t0,
    finishedAtMs: null,
  })

  it('sends the command and working dir, streams the output, and exits with the job', async () => {
    const chunks = [
      { seq: 1, text: 'epoch 1\n' },
      { seq: 2, text: 'epoch 2\n' },
      { seq: 3, text: 'Traceback: boom' },
    ]
    handler = (request) => {
      if (request.method === 'POST') return { status: 201, body: job('pending', null, 'submitted') }
      const afterSeq = Number(request.query.get('after'))
      const next = chunks.filter((chunk) => chunk.seq > afterSeq).slice(0, 1)
      const done = afterSeq >= 2
      return {
        body: {
          chunks: next,
          complete: done,
          job: done ? job('failed', 3, 'exited with 3') : job('running', null, 'running'),
        },
      }
    }
    const dir = join(scratch, 'project')
    mkdirSync(join(dir, '.git'), { recursive: true })
    writeFileSync(join(dir, 'train.py'), 'print(1)\n')
    writeFileSync(join(dir, '.git', 'HEAD'), 'x')

    const run = await gpumesh(
      'job',
      'submit',
      '--cluster',
      clusterId,
      '--working-dir',
      dir,
      '--',
      'python',
      'train.py',
      '--note',
      'two words',
    )
    assert.equal(run.code, 3, run.stderr)
    assert.equal(run.stdout, 'epoch 1\nepoch 2\nTraceback: boom\n')
    assert.match(run.stderr, /packed .*project: 1 file, \d+ B compressed\n/)
    assert.match(run.stderr, new RegExp(`job ${jobId} failed \\(exit code 3\\): exited with 3\\n$`))

    const submit = requests[0]!
    assert.equal(submit.path, `/v1/clusters/${clusterId}/jobs`)
    const body = submit.body as { entrypoint: string; workingDirTarGz: string }
    assert.equal(body.entrypoint, "python train.py --note 'two words'")
    const archive = join(scratch, 'sent.tar.gz')
    writeFileSync(archive, Buffer.from(body.workingDirTarGz, 'base64'))
    assert.deepEqual(execFileSync('tar', ['-tzf', archive], { encoding: 'utf8' }).trim().split('\n'), [
      'train.py',
    ])
    const logPolls = requests.slice(1)
    assert.deepEqual(
      logPolls.map((poll) => [poll.query.get('after'), poll.query.get('waitMs')]),
      [
        ['0', '25000'],
        ['1', '25000'],
        ['2', '25000'],
      ],
    )
  })

  it('prints only the job id with --no-wait', async () => {
    handler = () => ({ status: 201, body: job('pending', null, 'submitted') })
    const run = await gpumesh('job', 'submit', '--cluster', clusterId, '--no-wait', '--', 'nvidia-smi')
    assert.equal(run.code, 0, run.stderr)
    assert.equal(run.stdout, `${jobId}\n`)
    assert.deepEqual(requests[0]!.body, { entrypoint: 'nvidia-smi' })
  })

  it('prints what there is now with job logs, and exits 0 with --follow on success', async () => {
    handler = (request) => ({
      body: {
        chunks: Number(request.query.get('after')) === 0 ? [{ seq: 1, text: 'hello\n' }] : [],
        complete: true,
        job: job('succeeded', 0, 'done'),
      },
    })
    const now = await gpumesh('job', 'logs', '--cluster', clusterId, jobId)
    assert.equal(now.code, 0, now.stderr)
    assert.equal(now.stdout, 'hello\n')
    assert.equal(requests[0]!.query.get('waitMs'), '0')
    const followed = await gpumesh('job', 'logs', '--cluster', clusterId, jobId, '--follow')
    assert.equal(followed.code, 0)
    assert.match(followed.stderr, /succeeded \(exit code 0\)/)
  })
})

describe('gpumesh job logs (issue 25 item 5)', () => {
  const job = (status: JobView['status'], exitCode: number | null, message: string): JobView => ({
    id: jobId,
    clusterId,
    entrypoint: 'python train.py',
    status,
    message,
    exitCode,
    createdAtMs: t0,
    finishedAtMs: t0 + 1_000,
  })
  const rayFailure =
    'Job entrypoint command failed with exit code 1, last available logs (truncated to 20,000 chars):\n' +
    'Traceback (most recent call last):\nValueError: boom\n'
  const scripted = (finished: JobView, chunks: { seq: number; text: string }[]) => {
    handler = (request) => {
      if (request.path === `/v1/jobs/${jobId}`) return { body: finished }
      const afterSeq = Number(request.query.get('after'))
      return {
        body: { chunks: chunks.filter((chunk) => chunk.seq > afterSeq), complete: true, job: finished },
      }
    }
  }

  it('finds the cluster from the job id when --cluster is left out', async () => {
    scripted(job('succeeded', 0, 'done'), [{ seq: 1, text: 'hello\n' }])
    const run = await gpumesh('job', 'logs', jobId)
    assert.equal(run.code, 0, run.stderr)
    assert.equal(run.stdout, 'hello\n')
    assert.deepEqual(
      requests.map((request) => request.path),
      [`/v1/jobs/${jobId}`, `/v1/clusters/${clusterId}/jobs/${jobId}/logs`],
    )
  })

  it("shows a failed job's output from Ray's message when none was streamed, and only its summary after", async () => {
    scripted(job('failed', 1, rayFailure), [])
    const run = await gpumesh('job', 'logs', jobId, '--follow')
    assert.equal(run.code, 1)
    assert.equal(run.stdout, 'Traceback (most recent call last):\nValueError: boom\n')
    assert.match(
      run.stderr,
      new RegExp(`job ${jobId} failed \\(exit code 1\\): Job entrypoint command failed with exit code 1\\n$`),
    )
    // Streamed output is not printed twice.
    scripted(job('failed', 1, rayFailure), [
      { seq: 1, text: 'Traceback (most recent call last):\nValueError: boom\n' },
    ])
    const streamed = await gpumesh('job', 'logs', jobId)
    assert.equal(streamed.stdout, 'Traceback (most recent call last):\nValueError: boom\n')
  })

  it('strips colour codes from output that is not a terminal, even one split between chunks', async () => {
    scripted(job('succeeded', 0, 'done'), [
      { seq: 1, text: '\x1b[1m\x1b[3' },
      { seq: 2, text: '1mred\x1b[0m plain \x1b[' },
      { seq: 3, text: '32mgreen\x1b[0m\n' },
    ])
    const run = await gpumesh('job', 'logs', jobId)
    assert.equal(run.code, 0, run.stderr)
    assert.equal(run.stdout, 'red plain green\n')
  })
})

describe('gpumesh inference receipts (issue 25 item 5)', () => {
  const receipt = (index: number) => ({
    id: `inf_${String(index).padStart(20, '0')}`,
    model: 'tiny-chat:1.0.0',
    endpoint: '/v1/chat/completions',
    deviceId: head,
    promptTokens: 5,
    completionTokens: 2,
    inputPerMillionGmt: '1.000000',
    outputPerMillionGmt: '4.000000',
    amountGmt: '0.000013',
    feeGmt: '0.000001',
    requestId: `req_${index}`,
    createdAtMs: t0 - index,
    settlement: null,
  })
  const stored = Array.from({ length: 1_300 }, (_, index) => receipt(index))
  const cursorOf = (item: ReturnType<typeof receipt>) => `${item.createdAtMs}:${item.id}`
  beforeEach(() => {
    handler = (request) => {
      const limit = Number(request.query.get('limit'))
      const cursor = request.query.get('cursor')
      const start = cursor === null ? 0 : stored.findIndex((item) => cursorOf(item) === cursor) + 1
      const page = stored.slice(start, start + limit)
      return { body: { receipts: page, nextCursor: page.length === limit ? cursorOf(page.at(-1)!) : null } }
    }
  })

  it('pages beyond 500 with --limit, and goes on from a --cursor', async () => {
    const run = await gpumesh('inference', 'receipts', '--limit', '1200', '--json')
    assert.equal(run.code, 0, run.stderr)
    const listed = JSON.parse(run.stdout) as { receipts: { id: string }[]; nextCursor: string }
    assert.deepEqual(
      listed.receipts.map((item) => item.id),
      stored.slice(0, 1_200).map((item) => item.id),
    )
    assert.deepEqual(
      requests.map((request) => [request.query.get('limit'), request.query.get('cursor')]),
      [
        ['500', null],
        ['500', cursorOf(stored[499]!)],
        ['200', cursorOf(stored[999]!)],
      ],
    )
    requests = []
    const rest = await gpumesh('inference', 'receipts', '--limit', '500', '--cursor', listed.nextCursor)
    assert.equal(rest.code, 0, rest.stderr)
    assert.match(rest.stdout, new RegExp(stored[1_200]!.id))
    assert.match(rest.stdout, new RegExp(stored[1_299]!.id))
    assert.doesNotMatch(rest.stdout, /more: /, 'the last page says there is no more')
    assert.equal(requests[0]!.query.get('cursor'), listed.nextCursor)
    const first = await gpumesh('inference', 'receipts', '--limit', '2')
    assert.match(
      first.stdout,
      new RegExp(`more: gpumesh inference receipts --cursor ${cursorOf(stored[1]!)}\\n$`),
    )
  })

  it('refuses a cursor that no listing printed', async () => {
    const run = await gpumesh('inference', 'receipts', '--cursor', 'yesterday')
    assert.equal(run.code, 2)
    assert.match(run.stderr, /--cursor must be a cursor a previous listing printed/)
  })
})

describe('gpumesh rewards', () => {
  const payout = {
    epoch: 12,
    deviceId: head,
    hostname: 'rig-1',
    pool: 'gpu',
    eligible: true,
    ineligibleReasonCode: null,
    ineligibleReason: null,
    factors: {
      hiredPpm: 500_000,
      uptimePpm: 1_000_000,
      bandwidthTier: 'high',
      bandwidthMilli: 1200,
      gpus: [{ modelKey: 'h100', count: 1, multiplierMilli: 2000 }],
      hardwareMilli: 2000,
      hiredMilli: 1500,
    },
    score: '3600000000000000',
    share: '0.642857142',
    amountUnits: '578571428',
    amountGmt: '578.571428',
    transferId: `reward:12:${head}`,
  }
  const epoch = {
    epoch: 12,
    startsAtMs: t0,
    endsAtMs: t0 + 3_600_000,
    closedAtMs: t0 + 3_660_000,
    emissionUnits: '1000000000',
    emissionGmt: '1000.000000',
    paidUnits: '899999999',
    paidGmt: '899.999999',
    devicesConsidered: 3,
    devicesEligible: 2,
    devicesPaid: 2,
    policyVersion: 'rewards-2026-12',
    pools: [
      {
        pool: 'gpu',
        shareBp: 9000,
        emissionUnits: '900000000',
        paidUnits: '899999999',
        totalScore: '1',
        devicesPaid: 2,
      },
    ],
  }

  it("shows an epoch's payouts with every factor, without an API key", async () => {
    handler = () => ({
      body: {
        epoch,
        payouts: [
          payout,
          {
            ...payout,
            deviceId: worker,
            eligible: false,
            ineligibleReasonCode: 'offline',
            amountGmt: '0.000000',
          },
        ],
      },
    })
    const run = await gpumesh('rewards', 'show', '12', '--api-key', '')
    assert.equal(run.code, 0, run.stderr)
    assert.equal(requests[0]?.path, '/v1/rewards/epochs/12')
    assert.match(run.stdout, /emitted 1000\.000000 GMT, paid 899\.999999 GMT to 2 of 3 devices/)
    assert.match(
      run.stdout,
      new RegExp(
        `${head}[│ ]+gpu[│ ]+yes[│ ]+100\\.0%[│ ]+50\\.0%[│ ]+high[│ ]+2000[│ ]+0\\.642857142[│ ]+578\\.571428`,
      ),
    )
    assert.match(run.stdout, new RegExp(`${worker}[│ ]+gpu[│ ]+no: offline`))
  })

  it('checks the epoch number before calling anyone', async () => {
    const run = await gpumesh('rewards', 'show', 'latest')
    assert.notEqual(run.code, 0)
    assert.match(run.stderr, /EPOCH must be a whole number/)
    assert.equal(requests.length, 0)
  })
})
