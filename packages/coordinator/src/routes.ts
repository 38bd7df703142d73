import {
  ForbiddenError,
  formatMicroUsd,
  IdPrefix,
  NotFoundError,
  parseUsdToMicro,
  type DevicePricing,
  EnrollmentTokenError,
  type Clock,
  type Role,
} from '@gpumesh/core'
import {
  ApiKeyList,
  ChallengeList,
  ClusterPlan,
  ClusterRequestBody,
  CreateAccountBody,
  CreateAccountReply,
  CreateApiKeyBody,
  CreatedApiKey,
  CreatedEnrollmentToken,
  CreateEnrollmentTokenBody,
  defaultEnrollmentTokenTtlSeconds,
  DeviceEventList,
  DeviceList,
  DevicePricingBody,
  DeviceQuoteQuery,
  DeviceQuoteReply,
  DeviceUptimeReply,
  DeviceView,
  EnrollBody,
  enrollmentSigningPayload,
  EnrollmentTokenList,
  EnrollReply,
  ErrorReply,
  HealthReply,
  IdParams,
  MeReply,
  OffersPage,
  OffersQuery,
  QuoteQuery,
  ApiKeyView,
} from '@gpumesh/protocol'
import type { DeviceRecord, Store } from '@gpumesh/store'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type {
  FastifyBaseLogger,
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
} from 'fastify'
import Type from 'typebox'
import { mintApiKey, mintEnrollmentToken, mintId, parseEnrollmentToken } from './credentials.ts'
import type { OfferIndex } from './offers/offer-index.ts'
import { authenticate, ownDevice as findOwnDevice, requireRole, type Principal } from './principal.ts'
import { accountView, apiKeyView, deviceView, enrollmentTokenView } from './views.ts'
import { uptimeBucketMs } from '@gpumesh/presence'
import { factorViews, planCluster, type PlanMarket } from '@gpumesh/clusters'
import { coordinatorVersion } from './version.ts'
import { verifyEd25519 } from './signatures.ts'
import type { WorkerLinks } from './worker-link.ts'

export type App = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  FastifyBaseLogger,
  TypeBoxTypeProvider
>

export type RouteComponents = {
  readonly store: Store
  readonly clock: Clock
  readonly index: OfferIndex
  readonly links: WorkerLinks
  readonly market: PlanMarket
  /** Brings the offer index up to date with the store. */
  pullOffers(): Promise<void>
  publicUrl(): string
}

const errors = { 400: ErrorReply, 401: ErrorReply, 403: ErrorReply, 404: ErrorReply }
const secured = [{ apiKey: [] }]
const maxDeviceEvents = 200
const maxUptimeHistoryMs = 90 * 86_400_000

export function registerRoutes(app: App, components: RouteComponents): void {
  const { store, clock, index, links } = components
  const principalOf = (request: FastifyRequest): Promise<Principal> => authenticate(request, store, clock)

  app.get('/v1/health', { schema: { tags: ['meta'], response: { 200: HealthReply } } }, async () => ({
    status: 'ok' as const,
    version: coordinatorVersion,
    store: store.kind,
    connectedWorkers: links.connectedCount,
  }))

  app.get('/v1/openapi.json', { schema: { hide: true } }, async () => app.swagger())

  app.post(
    '/v1/accounts',
    {
      schema: {
        tags: ['accounts'],
        summary: 'Create an account (renter and/or supplier) and its first API key',
        body: CreateAccountBody,
        response: { 201: CreateAccountReply, ...errors },
      },
    },
    async (request, reply) => {
      const { name, roles } = request.body
      if (roles.includes('operator')) {
        const principal = await principalOf(request).catch(() => undefined)
        if (!principal?.roles.includes('operator')) {
          throw new ForbiddenError('only an operator can create operator accounts', { field: 'roles' })
        }
      }
      const account = { id: mintId(IdPrefix.account), name, roles, createdAtMs: clock.nowMs() }
      await store.createAccount(account)
      const apiKey = await createApiKey(store, clock, account.id, 'default', roles)
      return reply.status(201).send({ account: accountView(account), apiKey })
    },
  )

  app.get(
    '/v1/me',
    { schema: { tags: ['accounts'], security: secured, response: { 200: MeReply, ...errors } } },
    async (request) => {
      const principal = await principalOf(request)
      const account = await store.getAccount(principal.accountId)
      if (!account) throw new NotFoundError('account not found')
      return {
        account: accountView(account),
        apiKey: { id: principal.apiKeyId, name: principal.apiKeyName, roles: [...principal.roles] },
      }
    },
  )

  app.post(
    '/v1/api-keys',
    {
      schema: {
        tags: ['accounts'],
        summary: 'Create an API key; the secret is in this reply only',
        security: secured,
        body: CreateApiKeyBody,
        response: { 201: CreatedApiKey, ...errors },
      },
    },
    async (request, reply) => {
      const principal = await principalOf(request)
      const roles = request.body.roles ?? principal.roles
      // A key can only hand out roles it holds itself, so a narrow key cannot mint a broader one.
      const missing = roles.filter((role) => !principal.roles.includes(role))
      if (missing.length > 0)
        throw new ForbiddenError(`this API key cannot grant: ${missing.join(', ')}`, { field: 'roles' })
      return reply
        .status(201)
        .send(await createApiKey(store, clock, principal.accountId, request.body.name, roles))
    },
  )

  app.get(
    '/v1/api-keys',
    { schema: { tags: ['accounts'], security: secured, response: { 200: ApiKeyList, ...errors } } },
    async (request) => {
      const principal = await principalOf(request)
      return { apiKeys: (await store.listApiKeys(principal.accountId)).map(apiKeyView) }
    },
  )

  app.delete(
    '/v1/api-keys/:id',
    {
      schema: {
        tags: ['accounts'],
        security: secured,
        params: IdParams,
        response: { 200: ApiKeyView, ...errors },
      },
    },
    async (request) => {
      const principal = await principalOf(request)
      const target = await store.getApiKey(request.params.id)
      if (!target || target.accountId !== principal.accountId)
        throw new NotFoundError(`no API key ${request.params.id}`)
      // Like creating one: a narrow key cannot take away a key that can do more than it can.
      const beyond = target.roles.filter(
        (role) => principal.accountRoles.includes(role) && !principal.roles.includes(role),
      )
      if (beyond.length > 0)
        throw new ForbiddenError(
          `this API key cannot revoke a key with the role${beyond.length > 1 ? 's' : ''} ${beyond.join(', ')}; it has: ${principal.roles.join(', ') || 'none'}`,
          { requiredRoles: beyond, keyRoles: [...principal.roles] },
        )
      const revoked = await store.revokeApiKey(principal.accountId, request.params.id, clock.nowMs())
      const key = revoked ? await store.getApiKey(request.params.id) : undefined
      if (!key) throw new NotFoundError(`no API key ${request.params.id}`)
      return apiKeyView(key)
    },
  )

  app.post(
    '/v1/enrollment-tokens',
    {
      schema: {
        tags: ['suppliers'],
        summary: 'Create a one-time token that enrolls one machine',
        security: secured,
        body: CreateEnrollmentTokenBody,
        response: { 201: CreatedEnrollmentToken, ...errors },
      },
    },
    async (request, reply) => {
      const principal = await principalOf(request)
      requireRole(principal, 'supplier')
      const minted = mintEnrollmentToken()
      const nowMs = clock.nowMs()
      const record = {
        id: minted.id,
        accountId: principal.accountId,
        label: request.body.label ?? null,
        secretSha256: minted.secretSha256,
        createdAtMs: nowMs,
        expiresAtMs: nowMs + (request.body.ttlSeconds ?? defaultEnrollmentTokenTtlSeconds) * 1000,
        usedAtMs: null,
        usedByPublicKey: null,
        deviceId: null,
      }
      await store.insertEnrollmentToken(record)
      return reply.status(201).send({
        ...enrollmentTokenView(record),
        token: minted.presented,
        command: `gpumesh worker start --coordinator ${components.publicUrl()} --token ${minted.presented}`,
      })
    },
  )

  app.get(
    '/v1/enrollment-tokens',
    { schema: { tags: ['suppliers'], security: secured, response: { 200: EnrollmentTokenList, ...errors } } },
    async (request) => {
      const principal = await principalOf(request)
      requireRole(principal, 'supplier')
      return {
        enrollmentTokens: (await store.listEnrollmentTokens(principal.accountId)).map(enrollmentTokenView),
      }
    },
  )

  app.post(
    '/v1/worker/enroll',
    {
      schema: {
        tags: ['workers'],
        summary: 'Called by the worker agent: trade a one-time token and a public key for a device id',
        body: EnrollBody,
        response: { 200: EnrollReply, ...errors },
      },
    },
    async (request) => {
      const { token, publicKey, signature } = request.body
      const parsed = parseEnrollmentToken(token)
      if (!parsed)
        throw new EnrollmentTokenError('malformed enrollment token: expected gme_...', { field: 'token' })
      if (!verifyEd25519(publicKey, enrollmentSigningPayload(token), signature)) {
        request.log.warn(
          { tokenId: parsed.id },
          'refused enrollment: signature does not match the public key',
        )
        throw new EnrollmentTokenError('signature does not match the public key', { field: 'signature' })
      }
      const outcome = await store.enroll({
        tokenId: parsed.id,
        tokenSecretSha256: parsed.secretSha256,
        publicKey,
        newDeviceId: mintId(IdPrefix.device),
        nowMs: clock.nowMs(),
      })
      if (!outcome.ok) {
        request.log.warn({ tokenId: parsed.id, reason: outcome.reason }, 'refused enrollment')
        throw new EnrollmentTokenError(enrollRefusals[outcome.reason], { reason: outcome.reason })
      }
      return { deviceId: outcome.deviceId, accountId: outcome.accountId, reenrolled: outcome.reenrolled }
    },
  )

  const ownDevice = (request: FastifyRequest, deviceId: string) =>
    findOwnDevice(request, store, clock, deviceId)

  app.get(
    '/v1/devices',
    {
      schema: {
        tags: ['suppliers'],
        summary: 'My devices',
        security: secured,
        response: { 200: DeviceList, ...errors },
      },
    },
    async (request) => {
      const principal = await principalOf(request)
      return { devices: (await store.listDevices(principal.accountId)).map(deviceView) }
    },
  )

  app.get(
    '/v1/devices/:id',
    {
      schema: {
        tags: ['suppliers'],
        security: secured,
        params: IdParams,
        response: { 200: DeviceView, ...errors },
      },
    },
    async (request) => deviceView(await ownDevice(request, request.params.id)),
  )

  app.get(
    '/v1/devices/:id/events',
    {
      schema: {
        tags: ['suppliers'],
        summary: 'State changes of a device with their reasons, newest first',
        security: secured,
        params: IdParams,
        response: { 200: DeviceEventList, ...errors },
      },
    },
    async (request) => {
      const device = await ownDevice(request, request.params.id)
      return { events: await store.listDeviceEvents(device.id, maxDeviceEvents) }
    },
  )

  app.get(
    '/v1/devices/:id/verifications',
    {
      schema: {
        tags: ['suppliers'],
        summary: 'Proof-of-compute challenges of a device with their outcome and reason, newest first',
        security: secured,
        params: IdParams,
        response: { 200: ChallengeList, ...errors },
      },
    },
    async (request) => {
      const device = await ownDevice(request, request.params.id)
      const challenges = await store.listChallenges(device.id, maxDeviceEvents)
      return {
        challenges: challenges.map((challenge) => ({
          id: challenge.id,
          issuedAtMs: challenge.issuedAtMs,
          matrixSize: challenge.matrixSize,
          outcome: challenge.outcome,
          reasonCode: challenge.reasonCode,
          reason: challenge.reason,
          commitDeadlineAtMs: challenge.commitDeadlineAtMs,
          committedAtMs: challenge.committedAtMs,
          finishedAtMs: challenge.finishedAtMs,
          backend: challenge.backend,
          effectiveTflops: challenge.effectiveTflops,
        })),
      }
    },
  )

  app.get(
    '/v1/devices/:id/uptime',
    {
      schema: {
        tags: ['suppliers'],
        summary: 'Recorded online time per hour bucket',
        security: secured,
        params: IdParams,
        querystring: Type.Object(
          { days: Type.Optional(Type.Integer({ minimum: 1, maximum: 90 })) },
          { additionalProperties: false },
        ),
        response: { 200: DeviceUptimeReply, ...errors },
      },
    },
    async (request) => {
      const device = await ownDevice(request, request.params.id)
      const sinceMs = clock.nowMs() - Math.min(maxUptimeHistoryMs, (request.query.days ?? 30) * 86_400_000)
      return { bucketMs: uptimeBucketMs, buckets: await store.listUptimeBuckets(device.id, sinceMs) }
    },
  )

  app.post(
    '/v1/clusters/dry-run',
    {
      schema: {
        tags: ['clusters'],
        summary: 'Can this cluster be placed, on which nodes and at what price; if not, what blocks it',
        security: secured,
        body: ClusterRequestBody,
        response: { 200: ClusterPlan, ...errors },
      },
    },
    async (request) => {
      const principal = await principalOf(request)
      requireRole(principal, 'renter')
      return planCluster(index.placementSnapshot(), request.body, components.market)
    },
  )

  app.get(
    '/v1/quotes',
    {
      schema: {
        tags: ['pricing'],
        summary: 'Price a cluster request: its nodes, the total, and every factor of each price (public)',
        querystring: QuoteQuery,
        response: { 200: ClusterPlan, ...errors },
      },
    },
    async (request) => planCluster(index.placementSnapshot(), request.query, components.market),
  )

  const deviceQuote = (device: DeviceRecord, hours: number): DeviceQuoteReply => {
    const quote = index.quoteOf(device.id, hours)
    const automatic = index.quoteOf(device.id, hours, {
      mode: 'auto',
      askingPriceMicroUsd: device.pricingMode === 'auto' ? device.askingPriceMicroUsd : null,
    })
    return {
      deviceId: device.id,
      pricingMode: device.pricingMode,
      askingPricePerGpuHourUsd:
        device.askingPriceMicroUsd === null ? null : formatMicroUsd(device.askingPriceMicroUsd),
      commitmentHours: hours,
      pricePerGpuHourUsd: quote?.priced ? formatMicroUsd(quote.pricePerGpuHourMicroUsd) : null,
      unpricedReason: !quote
        ? 'the device has not reported its hardware and location yet'
        : quote.priced
          ? null
          : quote.reason,
      factors: quote ? factorViews(quote) : [],
      automatic: {
        pricePerGpuHourUsd: automatic?.priced ? formatMicroUsd(automatic.pricePerGpuHourMicroUsd) : null,
        factors: automatic ? factorViews(automatic) : [],
      },
      policyVersion: index.pricingPolicy.version,
    }
  }

  app.get(
    '/v1/devices/:id/quote',
    {
      schema: {
        tags: ['pricing'],
        summary:
          "One of my devices: the price renters are quoted and how it is made, beside automatic pricing's",
        security: secured,
        params: IdParams,
        querystring: DeviceQuoteQuery,
        response: { 200: DeviceQuoteReply, ...errors },
      },
    },
    async (request) => deviceQuote(await ownDevice(request, request.params.id), request.query.hours ?? 1),
  )

  app.put(
    '/v1/devices/:id/pricing',
    {
      schema: {
        tags: ['pricing'],
        summary: 'Set how one of my devices is priced: a fixed price, or automatic with an optional minimum',
        security: secured,
        params: IdParams,
        body: DevicePricingBody,
        response: { 200: DeviceQuoteReply, ...errors },
      },
    },
    async (request) => {
      const device = await ownDevice(request, request.params.id)
      const body = request.body
      const price = (text: string | null | undefined) => (text ? parseUsdToMicro(text) : null)
      const pricing: DevicePricing =
        body.mode === 'fixed'
          ? { mode: 'fixed', askingPriceMicroUsd: price(body.pricePerGpuHourUsd) }
          : { mode: 'auto', askingPriceMicroUsd: price(body.minimumPricePerGpuHourUsd) }
      await store.setDevicePricing(device.id, pricing)
      await components.pullOffers()
      return deviceQuote((await store.getDevice(device.id))!, 1)
    },
  )

  app.get(
    '/v1/offers',
    {
      schema: {
        tags: ['marketplace'],
        summary: 'Search machines on offer; answered from memory, never a database scan',
        querystring: OffersQuery,
        response: { 200: OffersPage, ...errors },
      },
    },
    async (request) => index.search(request.query),
  )
}

const enrollRefusals = {
  unknown_token: 'unknown enrollment token',
  expired: 'this enrollment token has expired; create a new one',
  already_used: 'this enrollment token was already used by another machine; create a new one',
  key_of_other_account: "this machine's key is enrolled to another account",
} as const

async function createApiKey(
  store: Store,
  clock: Clock,
  accountId: string,
  name: string,
  roles: readonly Role[],
) {
  const minted = mintApiKey()
  await store.insertApiKey({
    id: minted.id,
    accountId,
    name,
    roles,
    secretSha256: minted.secretSha256,
    createdAtMs: clock.nowMs(),
    lastUsedAtMs: null,
    revokedAtMs: null,
  })
  return { id: minted.id, name, roles: [...roles], key: minted.presented }
}
