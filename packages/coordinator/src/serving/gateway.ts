import { GpumeshError, InsufficientFundsError, formatGmtUnits, type Clock } from '@gpumesh/core'
import {
  ChatCompletionBody,
  CompletionBody,
  describeIssues,
  EmbeddingsBody,
  ModelParams,
  ServedModel,
  ServedModelList,
  type OpenAiErrorReply,
} from '@gpumesh/protocol'
import { chargeForUsage, maxChargeFor, type TokenPrices } from '@gpumesh/pricing'
import type { ModelRecord, Store } from '@gpumesh/store'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { Pool } from 'undici'
import { mintIdBody } from '../credentials.ts'
import { authenticate, requireRole, type Principal } from '../principal.ts'
import type { App } from '../routes.ts'
import type { InferenceBilling } from './inference-billing.ts'
import { modelKeyOf, type ModelServing, type Replica } from './model-serving.ts'
import type { CoordinatorMetrics } from '../metrics.ts'

// The OpenAI-compatible gateway. A request is authenticated by its API key, rate-limited per key, checked
// against the model's limits, priced, and its most possible cost reserved from the caller's funds before any
// replica sees it. It then goes to the least-loaded ready replica, through that worker's relay; a replica
// that fails before the first token is replaced by another, transparently. Once the answer is complete the
// request is charged for exactly the tokens it used (the replica's own count, capped at what was asked for).

export type GatewayComponents = {
  readonly store: Store
  readonly clock: Clock
  readonly serving: ModelServing
  readonly billing: InferenceBilling
  /** Requests, latency and tokens, for GET /metrics. */
  readonly metrics?: Pick<CoordinatorMetrics, 'gatewayRequests' | 'gatewaySeconds' | 'gatewayTokens'>
}

export type GatewayInit = {
  readonly requestsPerMinute: number
  /** Replicas tried per request before giving up. */
  readonly maxAttempts: number
  /** How long a replica may take to start answering. */
  readonly firstByteTimeoutMs: number
}

export type GatewayStats = {
  readonly byModel: Record<
    string,
    {
      requests: number
      succeeded: number
      failed: number
      retried: number
      promptTokens: number
      completionTokens: number
    }
  >
}

export type Gateway = {
  stats(): GatewayStats
  close(): Promise<void>
}

type Endpoint = 'chat' | 'completion' | 'embeddings'
const upstreamPath: Record<Endpoint, string> = {
  chat: '/v1/chat/completions',
  completion: '/v1/completions',
  embeddings: '/v1/embeddings',
}
const defaultMaxTokens: Record<Endpoint, number> = { chat: 256, completion: 16, embeddings: 0 }
/** A replica that failed this many requests in a row before answering is rested this long. */
const failuresBeforeRest = 3
const restMs = 10_000

/** An error in OpenAI's shape, so OpenAI clients raise their usual exceptions. */
export class OpenAiError extends Error {
  readonly status: number
  readonly type: string
  readonly param: string | null
  readonly code: string | null
  constructor(
    status: number,
    message: string,
    type: string,
    param: string | null = null,
    code: string | null = null,
  ) {
    super(message)
    this.status = status
    this.type = type
    this.param = param
    this.code = code
  }
  toJSON(): OpenAiErrorReply {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } }
  }
}

class RetryableUpstreamError extends Error {}

const modelNotFound = (requested: string) =>
  new OpenAiError(
    404,
    `the model ${requested} does not exist or is not served here`,
    'invalid_request_error',
    'model',
    'model_not_found',
  )

/** A request option the gateway does not do, refused as OpenAI refuses one: 400, its param, a named code. */
const unsupportedParameter = (param: string, message: string) =>
  new OpenAiError(400, message, 'invalid_request_error', param, 'unsupported_parameter')

/** Options OpenAI has that no gateway replica does: refused before anything is held or forwarded. */
function refuseUnsupported(body: Record<string, unknown>): void {
  const n = body['n']
  if (n !== undefined && n !== null && n !== 1)
    throw unsupportedParameter('n', `n is ${String(n)}; this gateway answers one choice per request (n: 1)`)
  const format = body['response_format']
  if (
    format !== undefined &&
    format !== null &&
    !(typeof format === 'object' && (format as { type?: unknown }).type === 'text')
  )
    throw unsupportedParameter('response_format', 'only response_format {"type": "text"} is supported')
}

function servedModelView({ model, ready }: { model: ModelRecord; ready: number }, prices?: TokenPrices) {
  return {
    id: model.name,
    object: 'model' as const,
    created: Math.floor(model.createdAtMs / 1000),
    owned_by: 'gpumesh',
    tasks: [...model.tasks],
    context_tokens: model.contextTokens,
    max_output_tokens: model.maxOutputTokens,
    replicas: ready,
    pricing: {
      input_per_million_gmt: prices ? formatGmtUnits(prices.inputPerMillionUnits) : '0.000000',
      output_per_million_gmt: prices ? formatGmtUnits(prices.outputPerMillionUnits) : '0.000000',
      policy: prices?.policyVersion ?? '',
    },
  }
}

export function registerInferenceGateway(
  app: App,
  components: GatewayComponents,
  init: GatewayInit,
): Gateway {
  const { store, clock, serving, billing } = components
  const pools = new Map<string, Pool>()
  const poolOf = (relayUrl: string) => {
    let pool = pools.get(relayUrl)
    if (!pool) {
      pool = new Pool(relayUrl, {
        connections: 256,
        keepAliveTimeout: 30_000,
        headersTimeout: init.firstByteTimeoutMs,
      })
      pools.set(relayUrl, pool)
    }
    return pool
  }
  const buckets = new Map<string, { tokens: number; atMs: number }>()
  const stats: GatewayStats['byModel'] = {}
  const statsOf = (model: string) =>
    (stats[model] ??= {
      requests: 0,
      succeeded: 0,
      failed: 0,
      retried: 0,
      promptTokens: 0,
      completionTokens: 0,
    })
  /** Round-robin among equally loaded replicas: the one used longest ago goes first. */
  const lastPickedAt = new Map<string, number>()
  let pickCounter = 0

  // The route-access hook authenticated the key before the body was read; this reads what it resolved.
  const principalOf = (request: FastifyRequest): Promise<Principal> => authenticate(request, store, clock)

  const admit = (apiKeyId: string) => {
    const nowMs = clock.nowMs()
    const perMs = init.requestsPerMinute / 60_000
    const bucket = buckets.get(apiKeyId) ?? { tokens: init.requestsPerMinute, atMs: nowMs }
    bucket.tokens = Math.min(init.requestsPerMinute, bucket.tokens + (nowMs - bucket.atMs) * perMs)
    bucket.atMs = nowMs
    buckets.set(apiKeyId, bucket)
    if (bucket.tokens < 1) {
      const waitS = Math.ceil((1 - bucket.tokens) / perMs / 1000)
      throw Object.assign(
        new OpenAiError(
          429,
          `rate limit: this API key may make ${init.requestsPerMinute} requests a minute; retry in ${waitS} s`,
          'rate_limit_exceeded',
          null,
          'rate_limit_exceeded',
        ),
        { retryAfterS: waitS },
      )
    }
    bucket.tokens -= 1
  }

  const pick = (modelId: string, exclude: Set<string>): Replica | undefined => {
    const nowMs = clock.nowMs()
    const candidates = serving.readyReplicas(modelId).filter((r) => !exclude.has(r.replicaId) && r.relayUrl)
    // A resting replica (it failed several requests in a row) is tried only when no other is left.
    const rested = candidates.filter((r) => r.restingUntilMs <= nowMs)
    const ready = rested.length > 0 ? rested : candidates
    let best: Replica | undefined
    for (const replica of ready) {
      if (
        !best ||
        replica.inFlight < best.inFlight ||
        (replica.inFlight === best.inFlight &&
          (lastPickedAt.get(replica.replicaId) ?? -1) < (lastPickedAt.get(best.replicaId) ?? -1))
      )
        best = replica
    }
    if (best) lastPickedAt.set(best.replicaId, pickCounter++)
    return best
  }

  app.register(async (scope) => {
    scope.setErrorHandler((error, _request, reply) => {
      if (error instanceof OpenAiError) {
        const retryAfter = (error as { retryAfterS?: number }).retryAfterS
        if (retryAfter !== undefined) reply.header('retry-after', String(retryAfter))
        return reply.status(error.status).send(error.toJSON())
      }
      // OpenAI answers an account without credit 429 insufficient_quota; clients raise their quota error on it.
      if (error instanceof InsufficientFundsError)
        return reply
          .status(429)
          .send(
            new OpenAiError(
              429,
              `insufficient quota: ${error.message}`,
              'insufficient_quota',
              null,
              'insufficient_quota',
            ).toJSON(),
          )
      if (error instanceof GpumeshError) {
        const retryAfterS = error.details['retryAfterS']
        if (typeof retryAfterS === 'number') reply.header('retry-after', String(retryAfterS))
        const type =
          error.httpStatus === 401
            ? 'authentication_error'
            : error.httpStatus === 403
              ? 'permission_error'
              : 'invalid_request_error'
        return reply
          .status(error.httpStatus)
          .send(new OpenAiError(error.httpStatus, error.message, type, paramOf(error), error.code).toJSON())
      }
      const validation = (error as { validation?: unknown[] }).validation
      if (validation) {
        const [first] = describeIssues(validation as never)
        const param = first && first.field !== '(body)' ? first.field.replaceAll('/', '.') : null
        return reply
          .status(400)
          .send(
            new OpenAiError(
              400,
              first ? `${param ?? 'body'}: ${first.message}` : 'malformed request body',
              'invalid_request_error',
              param,
              'invalid_value',
            ).toJSON(),
          )
      }
      const status = (error as { statusCode?: number }).statusCode
      if (status && status >= 400 && status < 500)
        return reply
          .status(status)
          .send(new OpenAiError(status, (error as Error).message, 'invalid_request_error').toJSON())
      reply.log.error({ err: error }, 'gateway error')
      return reply.status(500).send(new OpenAiError(500, 'internal error', 'server_error').toJSON())
    })

    scope.get(
      '/v1/models',
      {
        schema: {
          tags: ['inference'],
          summary: 'The models being served now (OpenAI-compatible)',
          response: { 200: ServedModelList },
        },
      },
      async () => ({
        object: 'list' as const,
        data: serving
          .servedModels()
          .filter((entry) => entry.ready > 0)
          .map((entry) => servedModelView(entry, serving.pricesOf(entry.model.id))),
      }),
    )

    scope.get(
      '/v1/models/:model',
      {
        schema: {
          tags: ['inference'],
          summary: 'One model being served now, by name or name:version (OpenAI-compatible)',
          params: ModelParams,
          response: { 200: ServedModel },
        },
      },
      async (request) => {
        const requested = (request.params as ModelParams).model
        const model = serving.resolveModel(requested)
        const entry = model && serving.servedModels().find((served) => served.model.id === model.id)
        if (!entry || entry.ready === 0) throw modelNotFound(requested)
        return servedModelView(entry, serving.pricesOf(entry.model.id))
      },
    )

    const route = (
      path: string,
      endpoint: Endpoint,
      body: typeof ChatCompletionBody | typeof CompletionBody | typeof EmbeddingsBody,
    ) =>
      scope.post(
        path,
        {
          schema: {
            tags: ['inference'],
            summary: `OpenAI-compatible ${path.slice(4)}; paid per token from the caller's wallet`,
            security: [{ apiKey: [] }],
            body,
          },
        },
        (request, reply) => serve(endpoint, request, reply),
      )
    route('/v1/chat/completions', 'chat', ChatCompletionBody)
    route('/v1/completions', 'completion', CompletionBody)
    route('/v1/embeddings', 'embeddings', EmbeddingsBody)
  })

  const serve = async (endpoint: Endpoint, request: FastifyRequest, reply: FastifyReply) => {
    const principal = await principalOf(request)
    requireRole(principal, 'renter')
    admit(principal.apiKeyId)
    const body = request.body as Record<string, unknown> & { model: string; stream?: boolean | null }
    const model = serving.resolveModel(body.model)
    const task = endpoint === 'chat' ? 'chat' : endpoint === 'completion' ? 'completion' : 'embeddings'
    if (!model) throw modelNotFound(body.model)
    if (!model.tasks.includes(task))
      throw new OpenAiError(
        404,
        `${body.model} does not do ${task}`,
        'invalid_request_error',
        'model',
        'model_not_found',
      )
    refuseUnsupported(body)
    const modelKey = modelKeyOf(model)
    const maxTokensField = body['max_completion_tokens'] != null ? 'max_completion_tokens' : 'max_tokens'
    const maxTokens =
      endpoint === 'embeddings'
        ? 0
        : ((body[maxTokensField] as number | null | undefined) ??
          Math.min(defaultMaxTokens[endpoint], model.maxOutputTokens))
    if (maxTokens > model.maxOutputTokens)
      throw new OpenAiError(
        400,
        `${maxTokensField} is ${maxTokens}; ${model.name} writes at most ${model.maxOutputTokens} tokens`,
        'invalid_request_error',
        maxTokensField,
        'invalid_value',
      )
    const prices = serving.pricesOf(model.id)
    if (!prices)
      throw new OpenAiError(
        503,
        `no replica of ${model.name} is ready now; try again shortly`,
        'service_unavailable',
        'model',
        'no_replica',
      )
    const inputs = endpoint === 'embeddings' && Array.isArray(body['input']) ? body['input'].length : 1
    const reservation = await billing.reserve(
      principal.accountId,
      maxChargeFor(prices, model.contextTokens * inputs, maxTokens),
    )
    const stats = statsOf(modelKey)
    stats.requests += 1
    const requestStartedAt = performance.now()
    const record = (outcome: 'succeeded' | 'failed') => {
      components.metrics?.gatewayRequests.inc({ model: modelKey, outcome })
      components.metrics?.gatewaySeconds.observe(
        { model: modelKey },
        (performance.now() - requestStartedAt) / 1000,
      )
    }
    const receiptId = `inf_${mintIdBody()}`
    const stream = endpoint !== 'embeddings' && body.stream === true
    const callerWantsUsage =
      (body['stream_options'] as { include_usage?: boolean } | null | undefined)?.include_usage === true
    const upstreamBody = JSON.stringify({
      ...body,
      model: model.name,
      ...(endpoint === 'embeddings' ? {} : { [maxTokensField]: maxTokens }),
      ...(stream ? { stream_options: { include_usage: true } } : {}),
    })
    const finish = (
      replica: Replica,
      usage: { prompt_tokens?: number; completion_tokens?: number } | undefined,
    ) => {
      // The replica's count, never beyond what the request could have used.
      const promptTokens = Math.min(
        Math.max(0, Math.floor(usage?.prompt_tokens ?? 0)),
        model.contextTokens * inputs,
      )
      const completionTokens = Math.min(Math.max(0, Math.floor(usage?.completion_tokens ?? 0)), maxTokens)
      stats.succeeded += 1
      stats.promptTokens += promptTokens
      stats.completionTokens += completionTokens
      record('succeeded')
      components.metrics?.gatewayTokens.inc({ model: modelKey, kind: 'prompt' }, promptTokens)
      components.metrics?.gatewayTokens.inc({ model: modelKey, kind: 'completion' }, completionTokens)
      billing.complete(reservation, {
        id: receiptId,
        accountId: principal.accountId,
        apiKeyId: principal.apiKeyId,
        modelId: model.id,
        model: modelKey,
        endpoint: upstreamPath[endpoint],
        deviceId: replica.deviceId,
        supplierAccountId: replica.supplierAccountId,
        promptTokens,
        completionTokens,
        inputPerMillionUnits: prices.inputPerMillionUnits,
        outputPerMillionUnits: prices.outputPerMillionUnits,
        amountUnits: chargeForUsage(prices, { promptTokens, completionTokens }),
        requestId: request.id,
        createdAtMs: clock.nowMs(),
      })
    }

    const tried = new Set<string>()
    let lastFailure = 'no replica answered'
    for (let attempt = 0; attempt < init.maxAttempts; attempt += 1) {
      const replica = pick(model.id, tried)
      if (!replica) break
      tried.add(replica.replicaId)
      if (attempt > 0) stats.retried += 1
      replica.inFlight += 1
      try {
        const outcome = await forward(
          replica,
          endpoint,
          upstreamBody,
          stream,
          callerWantsUsage,
          reply,
          receiptId,
          prices,
          modelKey,
        )
        // The caller's own error (the replica refused the request) or a stream cut after its first token:
        // answered already, and not charged.
        if (outcome.kind !== 'ok') {
          billing.cancel(reservation)
          stats.failed += 1
          record('failed')
          return reply
        }
        replica.consecutiveFailures = 0
        finish(replica, outcome.usage)
        return reply
      } catch (error) {
        if (!(error instanceof RetryableUpstreamError)) {
          billing.cancel(reservation)
          stats.failed += 1
          record('failed')
          throw error
        }
        lastFailure = error.message
        replica.consecutiveFailures += 1
        if (replica.consecutiveFailures >= failuresBeforeRest) replica.restingUntilMs = clock.nowMs() + restMs
        request.log.warn(
          { replicaId: replica.replicaId, deviceId: replica.deviceId, error: error.message },
          'replica failed before answering; trying another',
        )
      } finally {
        replica.inFlight -= 1
      }
    }
    billing.cancel(reservation)
    stats.failed += 1
    record('failed')
    throw new OpenAiError(
      503,
      `no replica of ${model.name} could answer: ${lastFailure}`,
      'service_unavailable',
      null,
      'replica_unavailable',
    )
  }

  type ForwardOutcome =
    | { kind: 'ok'; usage: { prompt_tokens?: number; completion_tokens?: number } | undefined }
    | { kind: 'caller_error' }
    | { kind: 'failed_mid_stream' }

  const forward = async (
    replica: Replica,
    endpoint: Endpoint,
    upstreamBody: string,
    stream: boolean,
    callerWantsUsage: boolean,
    reply: FastifyReply,
    receiptId: string,
    prices: TokenPrices,
    modelKey: string,
  ): Promise<ForwardOutcome> => {
    const requestId = reply.request.id
    let response: Awaited<ReturnType<Pool['request']>>
    try {
      response = await poolOf(replica.relayUrl!).request({
        path: upstreamPath[endpoint],
        method: 'POST',
        headers: { authorization: `Bearer ${replica.accessToken}`, 'content-type': 'application/json' },
        body: upstreamBody,
      })
    } catch (error) {
      throw new RetryableUpstreamError(`relay unreachable: ${(error as Error).message}`)
    }
    const { statusCode } = response
    if (statusCode >= 500 || statusCode === 429 || statusCode === 401) {
      const text = await response.body.text().catch(() => '')
      throw new RetryableUpstreamError(`HTTP ${statusCode} ${text.slice(0, 200)}`)
    }
    const priceHeaders = {
      // A hijacked (streamed) reply skips the hook that sets it on every other answer.
      'x-request-id': requestId,
      'x-gpumesh-receipt-id': receiptId,
      'x-gpumesh-model': modelKey,
      'x-gpumesh-device-id': replica.deviceId,
      'x-gpumesh-price-input-per-million-gmt': formatGmtUnits(prices.inputPerMillionUnits),
      'x-gpumesh-price-output-per-million-gmt': formatGmtUnits(prices.outputPerMillionUnits),
    }
    if (statusCode !== 200) {
      // The replica refused the request itself (too long a prompt, a bad option): the caller's error, uncharged.
      const text = await response.body.text()
      reply.status(statusCode).headers({ 'content-type': 'application/json' }).send(text)
      return { kind: 'caller_error' }
    }
    if (!stream) {
      let text: string
      try {
        text = await response.body.text()
      } catch (error) {
        throw new RetryableUpstreamError(`reply cut off: ${(error as Error).message}`)
      }
      let usage: { prompt_tokens?: number; completion_tokens?: number } | undefined
      try {
        usage = (JSON.parse(text) as { usage?: typeof usage }).usage
      } catch {
        throw new RetryableUpstreamError('reply was not JSON')
      }
      reply
        .status(200)
        .headers({ ...priceHeaders, 'content-type': 'application/json' })
        .send(text)
      return { kind: 'ok', usage }
    }

    // Streaming: nothing reaches the caller until the first event does, so a replica that dies before its
    // first token can still be replaced. After that, a failure ends the stream with an error event.
    const iterator = response.body[Symbol.asyncIterator]()
    let buffered = ''
    let usage: { prompt_tokens?: number; completion_tokens?: number } | undefined
    let sawDone = false
    const takeEvents = (): string[] => {
      const events: string[] = []
      let boundary = buffered.indexOf('\n\n')
      while (boundary >= 0) {
        events.push(buffered.slice(0, boundary))
        buffered = buffered.slice(boundary + 2)
        boundary = buffered.indexOf('\n\n')
      }
      return events
    }
    const render = (event: string): string => {
      const data = event.startsWith('data: ') ? event.slice(6) : event
      if (data === '[DONE]') {
        sawDone = true
        return ''
      }
      if (data.includes('"usage"')) {
        // The gateway always asks the replica for usage (it is what the caller pays); a caller who did not ask
        // for it sees the stream OpenAI would send: no usage field, no usage-only chunk.
        const parsed = JSON.parse(data) as { usage?: typeof usage | null; choices?: unknown[] }
        if (parsed.usage) usage = parsed.usage
        if (!callerWantsUsage) {
          if (parsed.usage && (!parsed.choices || parsed.choices.length === 0)) return ''
          return `data: ${JSON.stringify({ ...parsed, usage: undefined })}\n\n`
        }
      }
      return `${event}\n\n`
    }
    let first: string[] = []
    try {
      while (first.length === 0) {
        const next = await iterator.next()
        if (next.done) throw new RetryableUpstreamError('stream ended before its first event')
        buffered += Buffer.from(next.value as Uint8Array).toString('utf8')
        first = takeEvents()
      }
    } catch (error) {
      response.body.destroy()
      if (error instanceof RetryableUpstreamError) throw error
      throw new RetryableUpstreamError(`stream failed before its first token: ${(error as Error).message}`)
    }
    reply.hijack()
    const raw = reply.raw
    raw.writeHead(200, {
      ...priceHeaders,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
    })
    raw.socket?.setNoDelay(true)
    const write = (text: string) => {
      if (text && !raw.destroyed) raw.write(text)
    }
    try {
      for (const event of first) write(render(event))
      for (;;) {
        const next = await iterator.next()
        if (next.done) break
        buffered += Buffer.from(next.value as Uint8Array).toString('utf8')
        for (const event of takeEvents()) write(render(event))
      }
      if (!sawDone || !usage) throw new Error('the replica ended the stream without finishing it')
      write('data: [DONE]\n\n')
      raw.end()
      return { kind: 'ok', usage }
    } catch (error) {
      const failure = new OpenAiError(
        502,
        `the replica serving this request failed mid-answer: ${(error as Error).message}; nothing was charged`,
        'server_error',
        null,
        'replica_failed',
      )
      write(`data: ${JSON.stringify(failure.toJSON())}\n\n`)
      raw.end()
      return { kind: 'failed_mid_stream' }
    }
  }

  return {
    stats: () => ({ byModel: structuredClone(stats) }),
    async close() {
      await Promise.allSettled([...pools.values()].map((pool) => pool.close()))
      pools.clear()
    },
  }
}

/** OpenAI's `param`: the first field an edge check refused, without the request part it was in. */
function paramOf(error: GpumeshError): string | null {
  const issues = error.details['issues']
  if (!Array.isArray(issues)) return null
  const field = (issues[0] as { field?: unknown } | undefined)?.field
  if (typeof field !== 'string' || field === '(body)') return null
  return field.replace(/^(params|querystring|headers)\./, '')
}
