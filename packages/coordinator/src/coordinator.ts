import fastifyStatic from '@fastify/static'
import fastifySwagger from '@fastify/swagger'
import fastifyWebsocket from '@fastify/websocket'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { GpumeshError, parseGmtToUnits, ValidationError, type Clock, type Random } from '@gpumesh/core'
import {
  describeIssues,
  maxWorkerFrameBytes,
  WorkerCloseCode,
  type CoordinatorSettings,
} from '@gpumesh/protocol'
import {
  mergeFlushEntries,
  type DeviceStateChange,
  type HeartbeatFlushEntry,
  type Store,
} from '@gpumesh/store'
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import { OfferFeed } from './offers/offer-feed.ts'
import { OfferIndex } from './offers/offer-index.ts'
import { Presence } from '@gpumesh/presence'
import { registerRoutes } from './routes.ts'
import { defaultBodyLimitBytes, installRouteAccess } from './route-access.ts'
import {
  ApiKeyAuthenticator,
  defaultFailedAuthLimits,
  failedAuthRequests,
  setAuthenticator,
  type FailedAuthLimits,
} from './principal.ts'
import { buildEdgeValidator, refuseUnstorableInput } from './edge-validation.ts'
import { registerSpeedtestRoutes } from './speedtest/routes.ts'
import { coordinatorVersion } from './version.ts'
import { Verifier, defaultVerifierInit } from './verification/verifier.ts'
import { WorkerLinks, type WorkerLinkEvents } from './worker-link.ts'
import type { ClusterController } from './clusters/controller.ts'
import { buildClusterControl, clusterTickMs } from './clusters/wiring.ts'
import { mintIdBody } from './credentials.ts'
import { RttProber } from './rtt/rtt-prober.ts'
import { createCoordinatorMetrics, registerMetricSources, type CoordinatorMetrics } from './metrics.ts'
import { registerClusterRoutes } from './clusters/routes.ts'
import { registerRayJobApi } from './clusters/ray-job-api.ts'
import { RayPackageCache } from './clusters/ray-packages.ts'
import { registerLedgerRoutes } from './ledger/routes.ts'
import { faucetAccountId, localSettlement } from './ledger/settlement.ts'
import { createChainSettlement, type ChainSettlement } from './ledger/chain/chain-settlement.ts'
import { registerChainRoutes } from './ledger/chain/routes.ts'
import { solanaRpc, type ChainRpc } from './ledger/chain/rpc.ts'
import { loadVaultKey } from './ledger/chain/vault-key.ts'
import { ledgerAccounts } from '@gpumesh/ledger'
import { defaultRewardPolicy } from '@gpumesh/rewards'
import { createEpochCloser, type EpochCloser } from './rewards/epoch-closer.ts'
import { registerRewardRoutes } from './rewards/routes.ts'
import { registerExplorerRoutes } from './explorer/routes.ts'
import { registerSecurityHeaders } from './console-headers.ts'
import { directoryArtifactStore, type ArtifactStore } from './models/artifact-store.ts'
import { registerModelStoreRoutes } from './models/routes.ts'
import { s3ArtifactStore } from './models/s3-artifact-store.ts'
import { createModelServing, type ModelServing } from './serving/model-serving.ts'
import { createInferenceBilling } from './serving/inference-billing.ts'
import { registerInferenceGateway } from './serving/gateway.ts'
import { registerServingRoutes } from './serving/routes.ts'
import { defaultChallengePolicy, type ChallengePolicy } from '@gpumesh/verification'
import { randomInt } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'

export { coordinatorVersion } from './version.ts'
export { clusterTickMs } from './clusters/wiring.ts'

export type CoordinatorComponents = {
  readonly store: Store
  readonly clock: Clock
  /** Picks challenge rows and re-verification times; challenge seeds always come from node:crypto. */
  readonly random?: Random
}

export type CoordinatorInit = CoordinatorSettings & {
  /** Offer index refresh from the store's change feed. */
  readonly offerIndexRefreshMs?: number
  /** Full re-read of the offer index, catching late-committed changes. */
  readonly offerIndexResyncMs?: number
  readonly reliabilityRefreshMs?: number
  /** How often demand per model and the hour are measured again for automatic prices. */
  readonly marketRefreshMs?: number
  /** Overrides of the proof-of-compute policy (tests use small matrices and short deadlines). */
  readonly challengePolicy?: Partial<ChallengePolicy>
  /** Set false in tests that drive `tick()` by hand. */
  readonly runBackgroundLoops?: boolean
  readonly logger?: boolean | object
  /** The process's own pino logger (the CLI's, so every gpumesh process logs one shape); wins over `logger`. */
  readonly loggerInstance?: FastifyBaseLogger
  /** Where model artifacts are kept; absent: `<dataDir>/artifacts`. */
  readonly artifactStore?: ArtifactStore
  /** The chain's RPC seam instead of a JSON-RPC endpoint at `chain.rpcUrl` (tests: LiteSVM). */
  readonly chainRpc?: ChainRpc
  /** How long a client may take to send a whole request, headers and body (default `defaultHttpRequestTimeoutMs`). */
  readonly httpRequestTimeoutMs?: number
  /** A built web console (index.html and its assets), served at `/`; absent: the coordinator serves only the API. */
  readonly consoleDir?: string
  /** Failed authentications allowed per source address and per key id before 429 (`defaultFailedAuthLimits`). */
  readonly failedAuthLimits?: FailedAuthLimits
  /** How often failed authentications are logged, as one summary line (default 60 s). */
  readonly failedAuthLogIntervalMs?: number
}

export type Coordinator = {
  readonly app: FastifyInstance
  readonly index: OfferIndex
  readonly presence: Presence
  readonly clusters: ClusterController
  readonly rtt: RttProber
  /** Closes reward epochs; its loop runs with the background loops, tests call it by hand. */
  readonly rewards: EpochCloser
  /** Model replicas on idle devices; tests drive its tick by hand. */
  readonly serving: ModelServing
  /** What GET /metrics serves (Prometheus's text format). */
  readonly metrics: CoordinatorMetrics
  /** Charges finished inference requests now. */
  settleInference(): Promise<void>
  /** Records a price index sample per model now. */
  samplePriceIndex(): Promise<void>
  /** Starts listening; returns the base URL. */
  listen(): Promise<string>
  /** One pass of every background duty: expire silent workers, flush heartbeats, refresh the index, reconcile clusters. */
  tick(): Promise<void>
  stop(): Promise<void>
}

export const reliabilityWindowMs = 30 * 86_400_000
/** A device is "new" (no reliability figure) until it has this much history in the window. */
export const reliabilityMinHistoryMs = 3_600_000

/** Descriptors kept back from worker sockets for the API, the store, logs and child processes. */
export const descriptorReserve = 1_000

/** The open-files soft limit less the reserve; effectively unbounded where the limit cannot be read. */
export function defaultMaxWorkerConnections(): number {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((candidate) => candidate.startsWith('Max open files'))
    const soft = Number(line?.split(/\s{2,}/)[1])
    return Number.isFinite(soft) ? Math.max(100, soft - descriptorReserve) : Number.MAX_SAFE_INTEGER
  } catch {
    return Number.MAX_SAFE_INTEGER
  }
}

/** Unpredictable picks for challenge rows: a prover must not guess which rows will be opened. */
const cryptoRandom: Random = { next: () => randomInt(0, 2 ** 47) / 2 ** 47 }
/**
 * A request's headers and body must arrive within this, or the connection is closed (408): slow-body clients
 * cannot hold connections open. Long enough for the largest upload (a 2 GiB artifact) at about 18 MB/s; a
 * reply may take longer (long polls), since only the request's arrival is timed.
 */
export const defaultHttpRequestTimeoutMs = 120_000
/** Headers alone must arrive within this (Node's default is 60 s). */
export const httpHeadersTimeoutMs = 10_000
/** How often the cluster controller looks at every active cluster (reports also wake it at once). */
/** Devices written per heartbeat-flush statement. */
export const heartbeatFlushChunkSize = 2_000
/** State changes kept for retry while the store is unreachable. */
export const maxPendingStateChanges = 100_000

export async function buildCoordinator(
  components: CoordinatorComponents,
  init: CoordinatorInit,
): Promise<Coordinator> {
  const { store, clock } = components
  const offlineAfterMs = init.heartbeatIntervalMs * init.missedHeartbeatsBeforeOffline
  const presence = new Presence({ offlineAfterMs, restartGraceMs: init.restartGraceMs })
  const metrics = createCoordinatorMetrics()
  const index = new OfferIndex()
  const feed = new OfferFeed(store, index)

  const httpRequestTimeoutMs = init.httpRequestTimeoutMs ?? defaultHttpRequestTimeoutMs
  const app = Fastify({
    ...(init.loggerInstance
      ? { loggerInstance: init.loggerInstance }
      : { logger: init.logger ?? (init.logLevel === 'silent' ? false : { level: init.logLevel }) }),
    // Per route in route-access.ts; this is what a route gets that declares no more.
    bodyLimit: defaultBodyLimitBytes,
    // A refused key leaves no "request completed" line: failures are logged as one summary per interval.
    logController: new LogController({ disableRequestLogging: (request) => failedAuthRequests.has(request) }),
    // One id per request, minted here (never the caller's): sent back as x-request-id, logged as reqId and
    // kept on an inference receipt, so the three can be matched.
    genReqId: () => `req_${mintIdBody()}`,
    requestTimeout: httpRequestTimeoutMs,
    http: {
      headersTimeout: Math.min(httpHeadersTimeoutMs, httpRequestTimeoutMs),
      // Node checks the timeouts this often (30 s by default), so a short timeout is enforced promptly.
      connectionsCheckingInterval: Math.min(30_000, Math.max(100, httpRequestTimeoutMs / 4)),
    },
    schemaController: { compilersFactory: { buildValidator: buildEdgeValidator } },
  }).withTypeProvider<TypeBoxTypeProvider>()
  const authenticator = new ApiKeyAuthenticator(
    { store, clock },
    init.failedAuthLimits ?? defaultFailedAuthLimits,
  )
  setAuthenticator(store, authenticator)
  installRouteAccess(app, authenticator)
  app.addHook('preValidation', refuseUnstorableInput)

  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id)
  })
  app.setErrorHandler((error, request, reply) => {
    if (error instanceof GpumeshError) {
      const retryAfterS = error.details['retryAfterS']
      if (typeof retryAfterS === 'number') reply.header('retry-after', String(retryAfterS))
      return reply.status(error.httpStatus).send(error.toJSON())
    }
    const validation = (error as { validation?: unknown[]; validationContext?: string }).validation
    if (validation) {
      const context = (error as { validationContext?: string }).validationContext ?? 'body'
      const issues = describeIssues(validation as never).map((issue) => ({
        ...issue,
        field:
          issue.field === '(body)'
            ? `(${context})`
            : `${context === 'body' ? '' : `${context}.`}${issue.field}`,
      }))
      return reply.status(400).send(new ValidationError(issues, context).toJSON())
    }
    const status = (error as { statusCode?: number }).statusCode
    if (status && status >= 400 && status < 500) {
      return reply.status(status).send({
        code: (error as { code?: string }).code ?? 'GPUMESH_ERR_BAD_REQUEST',
        message: (error as Error).message,
      })
    }
    request.log.error({ err: error }, 'unhandled error')
    return reply
      .status(500)
      .send({ code: 'GPUMESH_ERR_INTERNAL', message: 'internal error; see the coordinator log' })
  })
  registerSecurityHeaders(app)
  const consoleIndex = init.consoleDir ? join(init.consoleDir, 'index.html') : undefined
  const servesConsole = consoleIndex !== undefined && existsSync(consoleIndex)
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0] ?? '/'
    // The console routes in the browser: a deep link such as /clusters/cl_1 gets the app, which then
    // reads the path. API paths and non-GET requests keep the JSON 404.
    if (servesConsole && request.method === 'GET' && !path.startsWith('/v1/')) {
      return reply.type('text/html').header('cache-control', 'no-cache').sendFile('index.html')
    }
    return reply.status(404).send({
      code: 'GPUMESH_ERR_NOT_FOUND',
      message: `no route ${request.method} ${path}`,
    })
  })
  if (servesConsole && init.consoleDir) {
    await app.register(fastifyStatic, {
      root: resolve(init.consoleDir),
      prefix: '/',
      wildcard: true,
      index: 'index.html',
    })
  }

  await app.register(fastifySwagger, {
    openapi: {
      info: { title: 'gpumesh coordinator API', version: coordinatorVersion },
      components: { securitySchemes: { apiKey: { type: 'http', scheme: 'bearer' } } },
    },
  })
  await app.register(fastifyWebsocket, { options: { maxPayload: maxWorkerFrameBytes } })

  const closers: (() => Promise<void>)[] = []
  let pendingChanges: DeviceStateChange[] = []
  let pendingFlush: HeartbeatFlushEntry[] = []
  const log = app.log

  // Connects and disconnects are rare next to heartbeats: they are written at once so the marketplace and
  // the supplier see them without waiting for a flush. A failed write is retried by the next flush.
  const recordStateChanges = async (changes: readonly DeviceStateChange[]) => {
    try {
      await store.applyDeviceStateChanges(changes)
    } catch (error) {
      log.error({ err: error }, 'could not record device state changes; will retry')
      pendingChanges.push(...changes)
      // Changes carry their time and the store keeps the newest, so dropping the oldest loses least.
      if (pendingChanges.length > maxPendingStateChanges) {
        log.error(
          { dropped: pendingChanges.length - maxPendingStateChanges },
          'state change retry list full; dropping the oldest',
        )
        pendingChanges = pendingChanges.slice(-maxPendingStateChanges)
      }
    }
  }

  const verifier = new Verifier(
    {
      store,
      clock,
      random: components.random ?? cryptoRandom,
      logger: log,
      send: (deviceId, message) => links.send(deviceId, message),
      metrics,
    },
    {
      ...defaultVerifierInit,
      reverifyIntervalMs: init.reverifyIntervalMs,
      policy: {
        ...defaultChallengePolicy,
        cpuMatrixSize: init.challengeCpuMatrixSize,
        fixedOverheadMs: init.challengeFixedOverheadMs,
        ...init.challengePolicy,
      },
    },
  )
  const verificationEvents: WorkerLinkEvents = {
    onReport: (deviceId) => verifier.onReport(deviceId),
    onChallengeMessage: (deviceId, message) => verifier.onMessage(deviceId, message),
    onChallengeMalformed: (deviceId, detail) => verifier.onMalformed(deviceId, detail),
    onDisconnected: (deviceId, closeCode) => verifier.onDisconnected(deviceId, closeCode),
  }
  const clusterEvents: WorkerLinkEvents = {
    onClusterReport: (deviceId, message) => clusters.onReport(deviceId, message),
    onRttReport: async (deviceId, message) => rtt.onRttReport(deviceId, message),
    onModelReplicaReport: (deviceId, message) => serving.onReplicaReport(deviceId, message),
    onCapabilities: async (deviceId, message) => {
      await feed.pull()
      serving.onCapabilities(deviceId, message.capabilities)
      await clusters.onCapabilities(deviceId, message.capabilities)
    },
  }

  const links: WorkerLinks = new WorkerLinks({
    store,
    clock,
    presence,
    logger: log,
    heartbeatIntervalMs: init.heartbeatIntervalMs,
    recordStateChanges,
    onHeartbeat: () => metrics.heartbeats.inc(),
    events: {
      ...(init.verificationEnabled ? verificationEvents : {}),
      ...clusterEvents,
      onReport: async (deviceId, message) => {
        rtt.onReport(deviceId, message)
        await serving.onReport(deviceId, message)
        if (init.verificationEnabled) await verifier.onReport(deviceId)
      },
      onDisconnected: async (deviceId, closeCode) => {
        serving.onDisconnected(deviceId)
        if (init.verificationEnabled) await verifier.onDisconnected(deviceId, closeCode)
      },
    },
  })
  const rtt = new RttProber({ clock, random: components.random ?? cryptoRandom, index, links, presence })
  index.useRoundTrips(
    (a, b) => rtt.roundTripMs(a, b),
    (deviceId) => rtt.isMeasured(deviceId),
  )
  const gmtUnitsPerUsd = parseGmtToUnits(init.gmtPerUsd) ?? 1_000_000n
  const { controller: clusters, market } = buildClusterControl(
    {
      store,
      clock,
      index,
      links,
      presence,
      logger: log,
      pullOffers: async () => {
        await feed.pull()
      },
      metrics,
      onDevicesReserved: (deviceIds, reason) => {
        for (const deviceId of deviceIds) serving.evict(deviceId, reason)
      },
    },
    {
      offlineAfterMs,
      gmtUnitsPerUsd,
      billingEnabled: init.clusterBillingEnabled,
      feeBasisPoints: init.platformFeeBasisPoints,
      billingIntervalMs: init.billingIntervalMs,
      provisionTimeoutMs: init.clusterProvisionTimeoutMs,
      nodeJoinTimeoutMs: init.clusterNodeJoinTimeoutMs,
    },
  )

  registerRoutes(app, {
    store,
    clock,
    index,
    links,
    market,
    pullOffers: async () => {
      await feed.pull()
    },
    publicUrl: () => init.publicUrl ?? baseUrl,
  })
  registerClusterRoutes(app, { store, clock, clusters })
  registerRayJobApi(app, { store, clock, clusters, packages: new RayPackageCache() })
  // GMT on chain when configured (docs/chain.md): the vault key is read once, here, from the operator's file.
  const chain: ChainSettlement | undefined = init.chain
    ? await createChainSettlement(
        {
          store,
          clock,
          rpc: init.chainRpc ?? solanaRpc({ url: init.chain.rpcUrl, commitment: init.chain.commitment }),
        },
        {
          mint: init.chain.mint,
          vault: await loadVaultKey(init.chain.vaultKeyFile),
          commitment: init.chain.commitment,
        },
      )
    : undefined
  registerChainRoutes(app, { store, clock, chain })
  registerLedgerRoutes(app, {
    store,
    clock,
    settlement: chain ?? localSettlement(store),
    ...(chain ? { chain } : {}),
    faucetMaxClaimUnits: parseGmtToUnits(init.faucetMaxClaimGmt) ?? 0n,
    faucetLimits: {
      periodMs: init.faucetClaimPeriodMs,
      claimsPerSourcePerPeriod: init.faucetClaimsPerSourcePerPeriod,
    },
    faucetFundsWithdrawable: init.faucetFundsWithdrawable,
    metrics,
  })
  await registerSpeedtestRoutes(app, { store, clock })
  registerRewardRoutes(app, { store, clock, cacheMs: init.explorerCacheMs })
  registerExplorerRoutes(app, { store, clock, cacheMs: init.explorerCacheMs })
  registerModelStoreRoutes(app, {
    store,
    clock,
    artifacts:
      init.artifactStore ??
      (init.artifactBucket
        ? s3ArtifactStore(init.artifactBucket)
        : directoryArtifactStore(join(init.dataDir, 'artifacts'))),
  })
  const serving: ModelServing = createModelServing(
    { store, clock, index, presence, links, log, gmtUnitsPerUsd },
    {
      drainMs: init.replicaDrainMs,
      targetInFlightPerReplica: 4,
      startTimeoutMs: 10 * 60_000,
      requireVerified: init.verificationEnabled,
    },
  )
  const inferenceBilling = createInferenceBilling(
    { store, clock, log },
    {
      feeBasisPoints: init.platformFeeBasisPoints,
      holdUnits: parseGmtToUnits(init.inferenceHoldGmt) ?? 5_000_000n,
      holdTimeoutMs: 3_600_000,
      idleReleaseMs: 5 * 60_000,
    },
  )
  if (init.inferenceEnabled) {
    const gateway = registerInferenceGateway(
      app,
      { store, clock, serving, billing: inferenceBilling, metrics },
      { requestsPerMinute: init.inferenceRequestsPerMinute, maxAttempts: 3, firstByteTimeoutMs: 120_000 },
    )
    registerServingRoutes(app, { store, clock, serving, billing: inferenceBilling, gateway })
    closers.push(() => gateway.close())
  }
  const rewards = createEpochCloser(
    {
      store,
      clock,
      log,
      spotCheck: init.verificationEnabled ? (fraction) => verifier.spotCheck(fraction) : undefined,
    },
    {
      policy: {
        ...defaultRewardPolicy,
        epochLengthMs: init.rewardEpochMs,
        emission: {
          ...defaultRewardPolicy.emission,
          capUnits: parseGmtToUnits(init.rewardEmissionCapGmt) ?? defaultRewardPolicy.emission.capUnits,
          firstMonthUnits:
            parseGmtToUnits(init.rewardFirstMonthGmt) ?? defaultRewardPolicy.emission.firstMonthUnits,
          monthlyRetainBp: BigInt(init.rewardMonthlyRetainBp),
        },
        poolShareBp: {
          gpu: BigInt(init.rewardGpuPoolShareBp),
          cpu: 10_000n - BigInt(init.rewardGpuPoolShareBp),
        },
      },
      closeDelayMs: init.rewardCloseDelayMs,
      spotCheckFraction: init.rewardSpotCheckFraction,
    },
  )
  registerMetricSources(metrics, {
    connectedWorkers: () => links.connectedCount,
    clustersByState: () => clusters.clustersByState(),
    replicasByPhase: () => serving.replicasByPhase(),
    ledgerTransferSeq: () => store.ledger.lastTransferSeq(),
  })
  app.get('/metrics', { schema: { hide: true } }, async (_request, reply) =>
    reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()),
  )

  const samplePriceIndex = async () => {
    const atMs = clock.nowMs()
    await store.explorer.insertPriceSamples(index.priceIndex().map((sample) => ({ ...sample, atMs })))
  }

  const maxWorkerConnections = init.maxWorkerConnections ?? defaultMaxWorkerConnections()
  app.get(
    '/v1/worker/connect',
    {
      websocket: true,
      schema: { hide: true },
      // Refused before the upgrade: a full process answers 503 and keeps descriptors for its API and store.
      preValidation: async (_request, reply) => {
        if (links.openSocketCount >= maxWorkerConnections) {
          return reply
            .code(503)
            .header('retry-after', '30')
            .send({
              code: 'GPUMESH_ERR_AT_CAPACITY',
              message: `this coordinator holds its maximum of ${maxWorkerConnections} workers`,
            })
        }
      },
    },
    (socket, request) => {
      links.accept(socket, request.ip)
    },
  )

  let baseUrl = `http://${init.host}:${init.port}`
  const timers: NodeJS.Timeout[] = []
  let stopped = false
  let ticking: Promise<void> = Promise.resolve()

  const expireSilent = async () => {
    const expired = presence.expire(clock.nowMs())
    if (expired.length === 0) return
    // Recorded before the sockets close, so whoever sees the close also sees the reason.
    await recordStateChanges(expired.map((entry) => entry.change))
    for (const { deviceId, sessionId, change } of expired) {
      links.close(deviceId, sessionId, WorkerCloseCode.goingAway, change.reason)
    }
  }
  // One flush at a time (the timer, tick() and stop() all call it): two interleaved flushes could write the
  // same pending entries twice.
  let flushing: Promise<void> | undefined
  const flush = (): Promise<void> => {
    flushing ??= flushOnce().finally(() => (flushing = undefined))
    return flushing
  }
  const flushOnce = async () => {
    if (pendingChanges.length > 0) {
      const retry = pendingChanges
      pendingChanges = []
      await recordStateChanges(retry)
    }
    // Merged per device, so a store outage keeps one entry per device however long it lasts.
    pendingFlush = mergeFlushEntries([...pendingFlush, ...presence.drainFlush()])
    // Written in chunks, yielding between them: the embedded PGlite runs on this thread, and one statement
    // for 20,000 devices stalled everything else for half a second. A chunk that was written is dropped
    // from the retry list at once, so a later failure can never write its uptime twice.
    while (pendingFlush.length > 0) {
      const chunk = pendingFlush.slice(0, heartbeatFlushChunkSize)
      try {
        await store.flushHeartbeats(chunk)
      } catch (error) {
        log.error(
          { err: error, entries: pendingFlush.length },
          'heartbeat flush failed; keeping entries for the next one',
        )
        // Our own devices' last-seen times are stale in the store now: a sweep would take them offline.
        return
      }
      pendingFlush = pendingFlush.slice(chunk.length)
      if (pendingFlush.length > 0) await new Promise((resolve) => setImmediate(resolve))
    }
    // Devices held by a coordinator process that died: nobody else will ever expire them.
    const cutoffMs = clock.nowMs() - offlineAfterMs - 2 * init.heartbeatFlushIntervalMs
    await store.sweepSilentDevices(cutoffMs, clock.nowMs(), 'no heartbeat recorded by any coordinator')
  }

  const tick = () => {
    ticking = ticking.then(async () => {
      await expireSilent()
      await flush()
      await feed.pull()
      await updateMarket()
      await clusters.tick()
    })
    return ticking
  }

  const dutiesRunning = new Set<Promise<unknown>>()
  const every = (periodMs: number, duty: () => Promise<unknown>, name: string) => {
    let running = false
    timers.push(
      setInterval(() => {
        if (running || stopped) return
        running = true
        const run = duty()
          .catch((error: unknown) => log.error({ err: error }, `${name} failed`))
          .finally(() => {
            running = false
            dutiesRunning.delete(run)
          })
        dutiesRunning.add(run)
      }, periodMs),
    )
  }

  const logFailedAuth = async () => {
    authenticator.prune()
    const summary = authenticator.tally.drain(clock.nowMs())
    if (summary) log.warn(summary, 'refused API keys')
  }

  const updateMarket = async () => {
    index.updateMarket(new Date(clock.nowMs()).getUTCHours())
  }
  // Figures left by an earlier run are brought up to now before anything shows them: one figure everywhere.
  await store.refreshReliability(clock.nowMs(), reliabilityWindowMs, reliabilityMinHistoryMs)
  await feed.resync()
  await updateMarket()
  await clusters.start()
  await serving.start()
  await store.ledger.createAccounts(
    [
      ledgerAccounts.settlement(),
      ledgerAccounts.fee(),
      ledgerAccounts.rewards(),
      { id: faucetAccountId, kind: 'rewards', ownerId: null, allowNegative: false },
    ],
    clock.nowMs(),
  )
  if (chain) {
    await chain.open()
    // What a crash left between sending and confirming is settled before anything new is sent.
    await chain.resume()
  }
  if (init.runBackgroundLoops !== false) {
    if (chain && init.chain) every(init.chain.resumeIntervalMs, () => chain.resume(), 'chain settlement')
    every(Math.min(1000, init.heartbeatIntervalMs), expireSilent, 'liveness check')
    if (init.verificationEnabled) every(250, () => verifier.tick(), 'proof-of-compute')
    every(init.heartbeatFlushIntervalMs, flush, 'heartbeat flush')
    every(clusterTickMs, () => clusters.tick(), 'cluster controller')
    // Holds past their timeout release their funds within a second.
    every(1_000, () => store.ledger.expirePending(clock.nowMs()), 'ledger hold expiry')
    if (init.rttProbeIntervalMs > 0)
      every(init.rttProbeIntervalMs, async () => rtt.probeAll(), 'round-trip probes')
    every(init.offerIndexRefreshMs ?? 250, () => feed.pull(), 'offer index refresh')
    every(init.marketRefreshMs ?? 60_000, updateMarket, 'market prices')
    every(init.failedAuthLogIntervalMs ?? 60_000, logFailedAuth, 'failed authentication summary')
    every(init.priceIndexSampleMs, samplePriceIndex, 'price index sample')
    if (init.inferenceEnabled) {
      every(init.modelServingPlanMs, () => serving.tick(), 'model replica placement')
      every(init.inferenceSettleMs, () => inferenceBilling.settle(), 'inference settlement')
    }
    if (init.rewardsEnabled)
      every(Math.min(5_000, init.rewardEpochMs / 4), () => rewards.tick(), 'reward epochs')
    // Only PostgreSQL can commit a change sequence number below one already read (concurrent transactions);
    // the embedded PGlite has one connection and commits in order, so its feed never misses a change.
    if (store.kind === 'postgres') {
      every(init.offerIndexResyncMs ?? 60_000, () => feed.resync(), 'offer index resync')
    }
    every(
      init.reliabilityRefreshMs ?? 60_000,
      () => store.refreshReliability(clock.nowMs(), reliabilityWindowMs, reliabilityMinHistoryMs),
      'reliability refresh',
    )
  }

  return {
    app,
    index,
    presence,
    async listen() {
      const address = await app.listen({ host: init.host, port: init.port })
      baseUrl = address.replace('[::1]', 'localhost')
      return baseUrl
    },
    tick,
    clusters,
    rtt,
    rewards,
    serving,
    metrics,
    settleInference: () => inferenceBilling.settle(),
    samplePriceIndex,
    async stop() {
      if (stopped) return
      stopped = true
      for (const timer of timers) clearInterval(timer)
      await ticking.catch(() => undefined)
      await Promise.allSettled([...dutiesRunning])
      // Sessions end here, before their sockets close, so the store is written while it is still open.
      await recordStateChanges(presence.disconnectAll(clock.nowMs(), 'coordinator shutting down'))
      links.closeAll(WorkerCloseCode.goingAway, 'coordinator shutting down')
      await links.drain()
      // Finished requests are charged and every hold released before the store closes.
      await inferenceBilling
        .stop()
        .catch((error: unknown) => log.error({ err: error }, 'final inference settlement failed'))
      for (const close of closers) await close()
      await app.close()
      await logFailedAuth()
      // What was absorbed in memory is written before the store closes: no heartbeat is lost on shutdown.
      await flush().catch((error: unknown) => log.error({ err: error }, 'final flush failed'))
    },
  }
}
