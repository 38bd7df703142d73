// What strangers cost the coordinator (issue 22, findings 1 and 7): `/v1/health` latency while 40
// unauthenticated 10 MiB bodies arrive, the rate at which failed authentications are answered, and whether a
// known key id fails slower than an unknown one. The old code (a git worktree of an earlier commit) and this
// tree are measured in the same run, one after the other, on the same machine.
//
// Method
//   1. For each tree (`--base-dir`, then this one) starts its own `bench/coordinator-process.ts` (PGlite in a
//      temporary dataDir, production settings, log level warn) as a child and creates one renter account.
//   2. Health alone: one `GET /v1/health` at a time for `--health-seconds` (3): p50/p99/max.
//   3. Health under bodies: `--bodies` (40) parallel `POST /v1/clusters/cl_unknown/jobs` without a key, each a
//      JSON job whose `workingDirTarGz` makes it `--body-mib` (10) MiB, sent in full as fast as loopback goes
//      by a child process (this script again), while one health request at a time keeps being timed here
//      until the child reports every body answered. Reports health
//      p50/p99/max during that window, the window's length, and the bodies' statuses.
//   4. Failed authentications: `--auth-clients` (8) keep-alive clients send `GET /v1/me` with random
//      well-formed wrong keys for `--auth-seconds` (5), from 127.0.0.1. Reports answers per second by status
//      (401 refused, 429 throttled). Throttling is on with the defaults (30 failures a minute per source).
//   5. Known vs unknown key id: one request at a time, alternating a wrong secret on the renter's real key id
//      and an unknown key id, `--timing-pairs` (2000) pairs, on a coordinator started with
//      `--failed-auth-burst 1000000000` so that nothing is throttled (the old code has no throttle). Reports
//      the median and mean of each and their difference.
//
//   node bench/auth-load.ts --base-dir /work/base-22 [--bodies 40] [--body-mib 10] [--max-minutes 10]

import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { Agent, request as httpRequest } from 'node:http'
import { resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import { ms, summarize, table, withTimeout } from './common.ts'

const { values: flags } = parseArgs({
  options: {
    'base-dir': { type: 'string' },
    bodies: { type: 'string', default: '40' },
    'body-mib': { type: 'string', default: '10' },
    'health-seconds': { type: 'string', default: '3' },
    'auth-clients': { type: 'string', default: '8' },
    'auth-seconds': { type: 'string', default: '5' },
    'timing-pairs': { type: 'string', default: '2000' },
    'max-minutes': { type: 'string', default: '10' },
    /** Internal: this script run as the body sender, so its writes do not delay the health timer's loop. */
    'send-bodies-to': { type: 'string' },
  },
})
const bodies = Number(flags.bodies)
const bodyBytes = Number(flags['body-mib']) * 1024 * 1024
const thisTree = resolve(import.meta.dirname, '..')
const trees = [
  ...(flags['base-dir'] ? [{ name: 'before', dir: resolve(flags['base-dir']) }] : []),
  { name: 'after', dir: thisTree },
]

type Running = { url: string; child: ChildProcessWithoutNullStreams }
const children = new Set<ChildProcessWithoutNullStreams>()

async function startCoordinator(dir: string, extraArgs: readonly string[] = []): Promise<Running> {
  const child = spawn(process.execPath, [resolve(dir, 'bench/coordinator-process.ts'), ...extraArgs], {
    cwd: dir,
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  children.add(child)
  child.stderr.resume()
  const lines = createInterface({ input: child.stdout })
  const ready = new Promise<string>((resolveReady, reject) => {
    lines.on('line', (line) => {
      const event = JSON.parse(line) as { event: string; url?: string }
      if (event.event === 'ready' && event.url) resolveReady(event.url)
    })
    child.once('exit', (code) => reject(new Error(`coordinator in ${dir} exited with ${code}`)))
  })
  return { url: await withTimeout(ready, 120_000, `coordinator in ${dir} to start`), child }
}

async function stopCoordinator(running: Running): Promise<void> {
  const exited = new Promise((done) => running.child.once('exit', done))
  running.child.stdin.end('stop\n')
  await withTimeout(exited, 60_000, 'coordinator to stop').catch(() => running.child.kill('SIGKILL'))
  children.delete(running.child)
}

function send(
  url: string,
  init: { method: string; headers?: Record<string, string>; body?: Buffer; agent?: Agent },
): Promise<{ status: number; text: string }> {
  return new Promise((resolveReply, reject) => {
    const outgoing = httpRequest(url, {
      method: init.method,
      headers: {
        ...init.headers,
        ...(init.body
          ? { 'content-type': 'application/json', 'content-length': String(init.body.length) }
          : {}),
      },
      ...(init.agent ? { agent: init.agent } : {}),
    })
    let answered = false
    outgoing.on('response', (response) => {
      answered = true
      let text = ''
      response.setEncoding('utf8')
      response.on('data', (chunk: string) => (text += chunk))
      response.on('end', () => resolveReply({ status: response.statusCode ?? 0, text }))
      response.on('error', reject)
    })
    // A server that answers before the body is in may close the connection: the answer is what counts.
    outgoing.on('error', (error) => {
      if (!answered) reject(error)
    })
    outgoing.end(init.body)
  })
}

/** Times one health request at a time until `until()` says stop. */
async function healthWhile(url: string, until: () => boolean): Promise<number[]> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  const samples: number[] = []
  while (!until()) {
    const startedAt = performance.now()
    const reply = await send(`${url}/v1/health`, { method: 'GET', agent })
    if (reply.status !== 200) throw new Error(`health answered ${reply.status}`)
    samples.push(performance.now() - startedAt)
  }
  agent.destroy()
  return samples
}

function hugeJobBody(): Buffer {
  const head = '{"entrypoint":"python main.py","workingDirTarGz":"'
  const tail = '"}'
  return Buffer.concat([
    Buffer.from(head),
    Buffer.alloc(bodyBytes - head.length - tail.length, 'A'),
    Buffer.from(tail),
  ])
}

const wrongKey = () =>
  `gmk_${randomBytes(10).toString('hex')}_${randomBytes(30)
    .toString('base64')
    .replace(/[^A-Za-z0-9]/g, 'x')
    .slice(0, 40)}`

async function renterKey(url: string): Promise<{ id: string; key: string }> {
  const reply = await send(`${url}/v1/accounts`, {
    method: 'POST',
    body: Buffer.from(JSON.stringify({ name: 'bench', roles: ['renter'] })),
  })
  return (JSON.parse(reply.text) as { apiKey: { id: string; key: string } }).apiKey
}

type TreeFigures = {
  tree: string
  healthAlone: ReturnType<typeof summarize>
  healthUnderBodies: ReturnType<typeof summarize>
  bodiesWindowS: number
  bodyStatuses: string
  authAnsweredPerS: number
  authByStatus: string
  knownIdMedianUs: number
  unknownIdMedianUs: number
  knownIdMeanUs: number
  unknownIdMeanUs: number
}

async function measureTree(tree: { name: string; dir: string }): Promise<TreeFigures> {
  const running = await startCoordinator(tree.dir)
  try {
    await renterKey(running.url)
    const healthSeconds = Number(flags['health-seconds'])
    const aloneUntil = performance.now() + healthSeconds * 1000
    const healthAlone = summarize(await healthWhile(running.url, () => performance.now() > aloneUntil))

    const windowStartedAt = performance.now()
    const sender = spawn(
      process.execPath,
      [
        import.meta.filename,
        '--send-bodies-to',
        running.url,
        '--bodies',
        String(bodies),
        '--body-mib',
        String(flags['body-mib']),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    )
    children.add(sender as unknown as ChildProcessWithoutNullStreams)
    let senderOutput = ''
    sender.stdout.on('data', (chunk: Buffer) => (senderOutput += chunk.toString()))
    let senderDone = false
    const senderExited = new Promise<void>((done) =>
      sender.once('exit', () => {
        senderDone = true
        done()
      }),
    )
    const underBodies = await healthWhile(running.url, () => senderDone)
    await senderExited
    const bodiesWindowS = (performance.now() - windowStartedAt) / 1000
    const statuses = new Map<string, number>(
      Object.entries(JSON.parse(senderOutput) as Record<string, number>),
    )

    const authSeconds = Number(flags['auth-seconds'])
    const authAgent = new Agent({ keepAlive: true, maxSockets: Number(flags['auth-clients']) })
    const authStatuses = new Map<number, number>()
    const authUntil = performance.now() + authSeconds * 1000
    await Promise.all(
      Array.from({ length: Number(flags['auth-clients']) }, async () => {
        while (performance.now() < authUntil) {
          const reply = await send(`${running.url}/v1/me`, {
            method: 'GET',
            headers: { authorization: `Bearer ${wrongKey()}` },
            agent: authAgent,
          })
          authStatuses.set(reply.status, (authStatuses.get(reply.status) ?? 0) + 1)
        }
      }),
    )
    authAgent.destroy()
    const answered = [...authStatuses.values()].reduce((sum, count) => sum + count, 0)

    const timing = await timeKnownAndUnknown(tree.dir)
    return {
      tree: tree.name,
      healthAlone,
      healthUnderBodies: summarize(underBodies),
      bodiesWindowS,
      bodyStatuses: [...statuses].map(([status, count]) => `${count}×${status}`).join(' '),
      authAnsweredPerS: answered / authSeconds,
      authByStatus: [...authStatuses].map(([status, count]) => `${count}×${status}`).join(' '),
      ...timing,
    }
  } finally {
    await stopCoordinator(running)
  }
}

async function timeKnownAndUnknown(dir: string) {
  // The old coordinator-process has no such flag and no throttle; the new one needs the throttle out of the way.
  const args = dir === thisTree ? ['--failed-auth-burst', '1000000000'] : []
  const running = await startCoordinator(dir, args)
  try {
    const key = await renterKey(running.url)
    const knownId = `gmk_${key.id.slice(key.id.indexOf('_') + 1)}_${'W'.repeat(40)}`
    const unknownId = `gmk_${'z'.repeat(20)}_${'W'.repeat(40)}`
    const agent = new Agent({ keepAlive: true, maxSockets: 1 })
    const known: number[] = []
    const unknown: number[] = []
    const timeOne = async (presented: string, into: number[]) => {
      const startedAt = performance.now()
      const reply = await send(`${running.url}/v1/me`, {
        method: 'GET',
        headers: { authorization: `Bearer ${presented}` },
        agent,
      })
      if (reply.status !== 401) throw new Error(`expected 401, got ${reply.status}: ${reply.text}`)
      into.push((performance.now() - startedAt) * 1000)
    }
    for (let pair = 0; pair < 100; pair += 1) {
      await timeOne(knownId, [])
      await timeOne(unknownId, [])
    }
    for (let pair = 0; pair < Number(flags['timing-pairs']); pair += 1) {
      await timeOne(knownId, known)
      await timeOne(unknownId, unknown)
    }
    agent.destroy()
    const knownSummary = summarize(known)
    const unknownSummary = summarize(unknown)
    return {
      knownIdMedianUs: knownSummary.p50,
      unknownIdMedianUs: unknownSummary.p50,
      knownIdMeanUs: knownSummary.mean,
      unknownIdMeanUs: unknownSummary.mean,
    }
  } finally {
    await stopCoordinator(running)
  }
}

/** The child's part: send the bodies in parallel, print the count of each status as JSON, exit. */
async function sendBodies(url: string): Promise<void> {
  const body = hugeJobBody()
  const agent = new Agent({ keepAlive: false, maxSockets: bodies })
  const statuses: Record<string, number> = {}
  await Promise.all(
    Array.from({ length: bodies }, () =>
      send(`${url}/v1/clusters/cl_unknown/jobs`, { method: 'POST', body, agent })
        .then((reply) => String(reply.status))
        .catch((error: NodeJS.ErrnoException) => error.code ?? 'error')
        .then((status) => {
          statuses[status] = (statuses[status] ?? 0) + 1
        }),
    ),
  )
  agent.destroy()
  process.stdout.write(JSON.stringify(statuses))
}

async function main(): Promise<void> {
  const results: TreeFigures[] = []
  for (const tree of trees) {
    process.stderr.write(`measuring ${tree.name} (${tree.dir})\n`)
    results.push(await measureTree(tree))
  }
  console.log(
    `auth-load: ${bodies} unauthenticated ${flags['body-mib']} MiB bodies to POST /v1/clusters/:id/jobs; health one at a time`,
  )
  console.log(
    table(
      [
        'tree',
        'health alone p50/p99/max ms',
        'under bodies p50/p99/max ms',
        'n',
        'bodies answered in',
        'statuses',
      ],
      results.map((result) => [
        result.tree,
        `${ms(result.healthAlone.p50)} / ${ms(result.healthAlone.p99)} / ${ms(result.healthAlone.max)}`,
        `${ms(result.healthUnderBodies.p50)} / ${ms(result.healthUnderBodies.p99)} / ${ms(result.healthUnderBodies.max)}`,
        result.healthUnderBodies.count,
        `${result.bodiesWindowS.toFixed(2)} s`,
        result.bodyStatuses,
      ]),
    ),
  )
  console.log(
    `\nfailed authentications, ${flags['auth-clients']} keep-alive clients, ${flags['auth-seconds']} s`,
  )
  console.log(
    table(
      ['tree', 'answered/s', 'by status'],
      results.map((result) => [result.tree, result.authAnsweredPerS.toFixed(0), result.authByStatus]),
    ),
  )
  console.log(
    `\nwrong secret on a known key id vs an unknown key id, ${flags['timing-pairs']} pairs, unthrottled`,
  )
  console.log(
    table(
      [
        'tree',
        'known p50 µs',
        'unknown p50 µs',
        'diff p50 µs',
        'known mean µs',
        'unknown mean µs',
        'diff mean µs',
      ],
      results.map((result) => [
        result.tree,
        result.knownIdMedianUs.toFixed(0),
        result.unknownIdMedianUs.toFixed(0),
        (result.knownIdMedianUs - result.unknownIdMedianUs).toFixed(0),
        result.knownIdMeanUs.toFixed(0),
        result.unknownIdMeanUs.toFixed(0),
        (result.knownIdMeanUs - result.unknownIdMeanUs).toFixed(0),
      ]),
    ),
  )
}

const deadline = setTimeout(
  () => {
    process.stderr.write('auth-load: --max-minutes reached\n')
    for (const child of children) child.kill('SIGKILL')
    process.exit(1)
  },
  Number(flags['max-minutes']) * 60_000,
)
deadline.unref()
for (const signal of ['SIGINT', 'SIGTERM'] as const)
  process.once(signal, () => {
    for (const child of children) child.kill('SIGTERM')
    process.exit(130)
  })

try {
  if (flags['send-bodies-to']) await sendBodies(flags['send-bodies-to'])
  else await main()
} finally {
  for (const child of children) child.kill('SIGTERM')
}
