import assert from 'node:assert/strict'
import { get as httpGet } from 'node:http'
import { after, before, describe, it } from 'node:test'
import fc from 'fast-check'
import type { Coordinator } from '@gpumesh/coordinator'
import type { Store } from '@gpumesh/store'
import { apiCaller, startTestCoordinator, storeBackends } from '@gpumesh/testing'
import {
  allRolesKey,
  openApiOperations,
  pathWith,
  type JsonSchema,
  type Operation,
} from './openapi-operations.ts'

// Issue 22's fuzz test, driven by the coordinator's own OpenAPI document: every operation gets malformed,
// non-finite, NUL, oversized and wrong-typed path params, query values and JSON bodies, with a key that holds
// every role (so each route's own checks are reached). No answer may be a 5xx, and afterwards no invalid value
// may have been stored: the ledger verifies and the explorer's pages answer. /v1/health is timed over HTTP
// while the fuzzing runs; its p99 is printed (tests assert behaviour, not timing: the figure is for reading).

/** Generated requests per operation and store: bounded so the whole file runs in well under a minute. */
const runsPerOperation = Number(process.env['GPUMESH_FUZZ_RUNS'] ?? 6)
const seed = Number(process.env['GPUMESH_FUZZ_SEED'] ?? 22)
const requestTimeoutMs = 15_000

/** Markers a generated value carries for what JSON.stringify cannot write; replaced in the text afterwards. */
const nonFinite = { positive: '\u0001+inf\u0001', negative: '\u0001-inf\u0001' } as const

const hostileText = fc.oneof(
  fc.constantFrom(
    'Infinity',
    '-Infinity',
    '1e400',
    '0x10',
    '  7',
    'NaN',
    '-1',
    '1.5',
    '99999999999999999999',
  ),
  fc.constantFrom('a\u0000b', '\u0000', 'lone \ud800 surrogate', ''),
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.integer({ min: 0, max: 6 }).map((power) => 'x'.repeat(10 ** power)),
)

const hostileValue: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    hostileText,
    fc.constantFrom(nonFinite.positive, nonFinite.negative),
    fc.constantFrom(null, true, false, 0, -1, 1, 2 ** 53, -(2 ** 63), 1e308, 0.5),
    fc.double(),
    fc.array(tie('value'), { maxLength: 3 }),
    fc.dictionary(fc.string({ maxLength: 8 }), tie('value'), { maxKeys: 3 }),
  ),
})).value

/** A body shaped like the schema, with some properties hostile, some missing and some extra. */
function bodyFor(schema: JsonSchema | undefined): fc.Arbitrary<unknown> {
  const properties = schema?.properties ?? {}
  const names = Object.keys(properties)
  const shaped = fc
    .record(Object.fromEntries(names.map((name) => [name, fc.option(hostileValue, { nil: undefined })])))
    .chain((record) =>
      fc
        .option(fc.dictionary(fc.string({ maxLength: 8 }), hostileValue, { maxKeys: 2 }), { nil: undefined })
        .map((extra) => ({ ...extra, ...record })),
    )
  return fc.oneof(shaped, hostileValue)
}

type FuzzRequest = { readonly url: string; readonly body: string | undefined }

function requestFor(operation: Operation): fc.Arbitrary<FuzzRequest> {
  const params = fc.record(
    Object.fromEntries(operation.pathParams.map((name) => [name, fc.oneof(fc.constant('x'), hostileText)])),
  )
  const query = fc.record(
    Object.fromEntries(
      Object.keys(operation.query).map((name) => [name, fc.option(hostileText, { nil: undefined })]),
    ),
  )
  const body =
    operation.jsonBody || operation.method !== 'GET'
      ? fc.option(bodyFor(operation.jsonBody))
      : fc.constant(null)
  const rawBody = fc.oneof(
    { weight: 8, arbitrary: body.map((value) => (value === null ? undefined : jsonWithNonFinite(value))) },
    { weight: 1, arbitrary: fc.constantFrom('{', '{"a":', '[1,2', 'null', '"text"', '{"a":1e400}') },
    { weight: 1, arbitrary: fc.constant(`{"x":"${'y'.repeat(300 * 1024)}"}`) },
  )
  return fc.record({ params, query, body: rawBody }).map(({ params, query, body }) => {
    const path = pathWith(operation, (name) => encodeURIComponent(String(params[name]).toWellFormed()))
    const search = new URLSearchParams()
    for (const [name, value] of Object.entries(query))
      if (value !== undefined) search.append(name, String(value))
    const text = search.toString()
    return { url: text ? `${path}?${text}` : path, body: operation.method === 'GET' ? undefined : body }
  })
}

function jsonWithNonFinite(value: unknown): string {
  return JSON.stringify(value)
    .replaceAll(JSON.stringify(nonFinite.positive), '1e400')
    .replaceAll(JSON.stringify(nonFinite.negative), '-1e400')
}

const maxHttpBodyBytes = 256 * 1024

function isConnectionReset(error: unknown): boolean {
  const cause = (error as { cause?: { code?: string } }).cause
  return cause?.code === 'ECONNRESET' || cause?.code === 'EPIPE' || cause?.code === 'UND_ERR_SOCKET'
}

/** One GET /v1/health on a connection of its own (no pooled socket the fuzzing could have had closed). */
function healthProbeMs(baseUrl: string): Promise<number> {
  const startedAt = performance.now()
  return new Promise((resolve, reject) => {
    const request = httpGet(`${baseUrl}/v1/health`, { agent: false }, (response) => {
      response.resume()
      response.once('end', () =>
        response.statusCode === 200
          ? resolve(performance.now() - startedAt)
          : reject(new Error(`/v1/health answered ${response.statusCode}`)),
      )
    })
    request.once('error', reject)
  })
}

function percentile(sorted: readonly number[], fraction: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * fraction))] ?? Number.NaN
}

for (const backend of storeBackends) {
  describe(`OpenAPI-driven fuzz on ${backend.name}`, () => {
    let store: Store
    let cleanup: () => Promise<void>
    let coordinator: Coordinator
    let baseUrl: string
    let key: string
    const call = apiCaller(() => baseUrl)

    before(async () => {
      ;({ store, cleanup } = await backend.open())
      coordinator = await startTestCoordinator(store, { runBackgroundLoops: false })
      baseUrl = await coordinator.listen()
      key = await allRolesKey(store)
    })
    after(async () => {
      await coordinator?.stop()
      await cleanup?.()
    })

    it('answers no generated request with a 5xx, and stores no invalid value', async (t) => {
      const operations = openApiOperations(coordinator.app.swagger())
      assert.ok(operations.length >= 60, `only ${operations.length} operations in the OpenAPI document`)
      const healthMs: number[] = []
      let fuzzing = true
      const healthLoop = (async () => {
        while (fuzzing) {
          healthMs.push(await healthProbeMs(baseUrl))
          await new Promise((resolve) => setTimeout(resolve, 20))
        }
      })()
      let requests = 0
      try {
        for (const operation of operations) {
          await fc.assert(
            fc.asyncProperty(requestFor(operation), async ({ url, body }) => {
              requests += 1
              const sent = fetch(`${baseUrl}${url}`, {
                method: operation.method,
                headers: {
                  authorization: `Bearer ${key}`,
                  ...(body === undefined ? {} : { 'content-type': 'application/json' }),
                },
                ...(body === undefined ? {} : { body }),
                signal: AbortSignal.timeout(requestTimeoutMs),
              })
              // A body over the limit is answered 413 and the connection closed, possibly while it is still
              // being sent: a reset is then the refusal, not a failure.
              const response = await sent.catch((error: unknown) => {
                if ((body?.length ?? 0) > maxHttpBodyBytes && isConnectionReset(error)) return undefined
                throw error
              })
              if (!response) return
              const text = await response.text()
              assert.ok(response.status < 500, `${operation.method} ${url} -> ${response.status} ${text}`)
            }),
            { numRuns: runsPerOperation, seed, endOnFailure: true },
          )
        }
      } finally {
        fuzzing = false
        await healthLoop
      }
      const sorted = [...healthMs].sort((a, b) => a - b)
      t.diagnostic(
        `${requests} requests over ${operations.length} operations; /v1/health over ${sorted.length} probes: ` +
          `p50 ${percentile(sorted, 0.5).toFixed(1)} ms, p99 ${percentile(sorted, 0.99).toFixed(1)} ms, ` +
          `max ${(sorted.at(-1) ?? Number.NaN).toFixed(1)} ms`,
      )

      const verification = await store.ledger.verify()
      assert.ok(
        verification.ok,
        JSON.stringify(verification, (_key, value: unknown) =>
          typeof value === 'bigint' ? `${value}` : value,
        ),
      )
      for (const path of [
        '/v1/explorer/summary',
        '/v1/explorer/devices',
        '/v1/offers',
        '/v1/me',
        '/v1/api-keys',
      ]) {
        const reply = await call('GET', path, key)
        assert.equal(reply.status, 200, `${path}: ${JSON.stringify(reply.body)}`)
      }
      for (const account of (await call('GET', '/v1/api-keys', key)).body.apiKeys as { name: string }[])
        assert.ok(account.name.isWellFormed() && !account.name.includes('\u0000'))
    })
  })
}
