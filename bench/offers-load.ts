// HTTP load generator for bench/offers-search.ts, in its own process so that client work never runs on the
// coordinator's event loop. Forked and driven over IPC; not run by hand.
//
//   parent -> {type:'run', url, paths, warmup, requests, concurrency, durationMs?}
//   child  -> {type:'done', latenciesMs, pathIndex, statusErrors, errorSamples, wallMs}
//
// Requests go round-robin over `paths` on keep-alive connections (node:http Agent, one socket per lane),
// `concurrency` in flight; the warm-up requests are sent first and not recorded. A request's latency runs
// from the call to the last byte of the body.

import { Agent, request } from 'node:http'

export type LoadRun = {
  readonly type: 'run'
  readonly url: string
  readonly paths: readonly string[]
  readonly warmup: number
  readonly requests: number
  readonly concurrency: number
  /** Per request; a slower one counts as an error. */
  readonly timeoutMs: number
  /** When set, recorded requests stop after this long (or at `requests`, whichever comes first). */
  readonly durationMs?: number
}

export type LoadDone = {
  readonly type: 'done'
  readonly latenciesMs: number[]
  /** Which path each recorded request used (index into `paths`). */
  readonly pathIndex: number[]
  readonly statusErrors: number
  readonly errorSamples: string[]
  readonly wallMs: number
}

function get(agent: Agent, url: URL, timeoutMs: number): Promise<{ status: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent, timeout: timeoutMs }, (res) => {
      let bytes = 0
      res.on('data', (chunk: Buffer) => (bytes += chunk.length))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes }))
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)))
    req.on('error', reject)
    req.end()
  })
}

async function run(message: LoadRun): Promise<LoadDone> {
  const agent = new Agent({ keepAlive: true, maxSockets: message.concurrency })
  const urls = message.paths.map((path) => new URL(path, message.url))
  const total = message.warmup + message.requests
  const latenciesMs: number[] = []
  const pathIndex: number[] = []
  const errorSamples: string[] = []
  let statusErrors = 0
  let next = 0
  let measuredStart = 0
  const overAt = () =>
    message.durationMs === undefined || measuredStart === 0 ? Infinity : measuredStart + message.durationMs
  const lane = async () => {
    while (next < total && performance.now() < overAt()) {
      const number = next++
      if (number === message.warmup) measuredStart = performance.now()
      const which = number % urls.length
      const startedAt = performance.now()
      try {
        const { status } = await get(agent, urls[which] as URL, message.timeoutMs)
        if (status !== 200) {
          statusErrors += 1
          if (errorSamples.length < 5) errorSamples.push(`${message.paths[which]}: HTTP ${status}`)
        }
      } catch (error) {
        statusErrors += 1
        if (errorSamples.length < 5) errorSamples.push(`${message.paths[which]}: ${String(error)}`)
      }
      if (number >= message.warmup) {
        latenciesMs.push(performance.now() - startedAt)
        pathIndex.push(which)
      }
    }
  }
  await Promise.all(Array.from({ length: message.concurrency }, lane))
  const wallMs = performance.now() - measuredStart
  agent.destroy()
  return { type: 'done', latenciesMs, pathIndex, statusErrors, errorSamples, wallMs }
}

process.on('message', (message: LoadRun) => {
  if (message.type !== 'run') return
  run(message).then(
    (done) => process.send?.(done),
    (error: unknown) =>
      process.send?.({
        type: 'done',
        latenciesMs: [],
        pathIndex: [],
        statusErrors: 1,
        errorSamples: [String(error)],
        wallMs: 0,
      } satisfies LoadDone),
  )
})
process.on('disconnect', () => process.exit(0))
