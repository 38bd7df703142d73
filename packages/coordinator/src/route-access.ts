import { invariant, type Role } from '@gpumesh/core'
import { maxArtifactBytes, maxRayPackageBytes } from '@gpumesh/protocol'
import type { FastifyInstance, FastifyRequest, RouteOptions } from 'fastify'
import { requireAnyRole, type ApiKeyAuthenticator } from './principal.ts'

// Who may call each route, declared in one table. An onRequest hook enforces it before the body is read: a
// request without a valid key is answered 401 (or 429) without its body being parsed, and a key lacking the
// route's role 403, so a stranger's 10 MiB body costs no JSON parsing. Every route of the API must have a
// line here; the route-access test fails for one that has none.

export type RouteAccess =
  /** Anyone; the handler may still look at an optional key (POST /v1/accounts for operator accounts). */
  | { readonly kind: 'public' }
  /** Signed by a device key (request headers, or the socket's `auth` message): the route checks it itself. */
  | { readonly kind: 'device-signed' }
  /** A valid API key holding at least one of `roles`. */
  | { readonly kind: 'key'; readonly roles: readonly Role[] }

const everyRole: readonly Role[] = ['renter', 'supplier', 'operator']

const publicAccess: RouteAccess = { kind: 'public' }
const deviceSigned: RouteAccess = { kind: 'device-signed' }
const keyWith = (...roles: Role[]): RouteAccess => ({ kind: 'key', roles })
/** Account-level routes (the key itself, the wallet): any key of any role. */
const anyKey = keyWith(...everyRole)
const renter = keyWith('renter')
const operator = keyWith('operator')
/** A supplier's own devices and earnings; operators see every device. */
const supplier = keyWith('supplier', 'operator')

/** Bodies above this are refused with 413 before they are read (Fastify `bodyLimit`), unless a route says more. */
export const defaultBodyLimitBytes = 16 * 1024
/** Prompts and Ray job submissions (entrypoint, runtime_env) were served under this limit before. */
const largeJsonBodyBytes = 256 * 1024

export type RouteRule = {
  readonly access: RouteAccess
  /** Only where the route needs more than `defaultBodyLimitBytes` and does not set its own `bodyLimit`. */
  readonly bodyLimitBytes?: number
}

const rayApi = '/v1/clusters/:clusterId/ray/api'

/** `METHOD /path` (Fastify's path syntax) → its rule. HEAD routes follow their GET. */
export const routeRules: Readonly<Record<string, RouteRule>> = {
  'GET /v1/health': { access: publicAccess },
  'GET /v1/openapi.json': { access: publicAccess },
  'GET /metrics': { access: publicAccess },
  'GET /': { access: publicAccess },
  'GET /*': { access: publicAccess },
  'GET /v1/worker/connect': { access: deviceSigned },

  'POST /v1/accounts': { access: publicAccess },
  'GET /v1/me': { access: anyKey },
  'POST /v1/api-keys': { access: anyKey },
  'GET /v1/api-keys': { access: anyKey },
  'DELETE /v1/api-keys/:id': { access: anyKey },

  'POST /v1/enrollment-tokens': { access: keyWith('supplier') },
  'GET /v1/enrollment-tokens': { access: keyWith('supplier') },
  'POST /v1/worker/enroll': { access: publicAccess },
  'GET /v1/devices': { access: supplier },
  'GET /v1/devices/:id': { access: supplier },
  'GET /v1/devices/:id/events': { access: supplier },
  'GET /v1/devices/:id/verifications': { access: supplier },
  'GET /v1/devices/:id/uptime': { access: supplier },
  'GET /v1/devices/:id/quote': { access: supplier },
  'PUT /v1/devices/:id/pricing': { access: supplier },
  'GET /v1/devices/:id/speedtests': { access: supplier },
  'GET /v1/devices/:id/serving': { access: supplier },
  'PUT /v1/devices/:id/serving': { access: supplier },

  'GET /v1/quotes': { access: publicAccess },
  'GET /v1/offers': { access: publicAccess },
  'POST /v1/clusters/dry-run': { access: renter },
  'POST /v1/clusters': { access: renter },
  'GET /v1/clusters': { access: renter },
  'GET /v1/clusters/:clusterId': { access: renter },
  'POST /v1/clusters/:clusterId/terminate': { access: renter },
  'POST /v1/clusters/:clusterId/extend': { access: renter },
  'GET /v1/clusters/:clusterId/events': { access: renter },
  'POST /v1/clusters/:clusterId/clients': { access: renter },
  'GET /v1/clusters/:clusterId/clients': { access: renter },
  'POST /v1/clusters/:clusterId/clients/remove': { access: renter },
  // Its body limit (a working directory of up to 8 MiB, base64) is set by the route itself.
  'POST /v1/clusters/:clusterId/jobs': { access: renter },
  'GET /v1/clusters/:clusterId/jobs': { access: renter },
  'GET /v1/clusters/:clusterId/jobs/:jobId': { access: renter },
  'GET /v1/clusters/:clusterId/jobs/:jobId/logs': { access: renter },
  'POST /v1/clusters/:clusterId/jobs/:jobId/stop': { access: renter },

  [`GET ${rayApi}/version`]: { access: renter },
  [`POST ${rayApi}/jobs/`]: { access: renter, bodyLimitBytes: largeJsonBodyBytes },
  [`GET ${rayApi}/jobs/`]: { access: renter },
  [`POST ${rayApi}/jobs`]: { access: renter, bodyLimitBytes: largeJsonBodyBytes },
  [`GET ${rayApi}/jobs`]: { access: renter },
  [`GET ${rayApi}/jobs/:jobId`]: { access: renter },
  [`DELETE ${rayApi}/jobs/:jobId`]: { access: renter },
  [`GET ${rayApi}/jobs/:jobId/logs`]: { access: renter },
  [`GET ${rayApi}/jobs/:jobId/logs/tail`]: { access: renter },
  [`POST ${rayApi}/jobs/:jobId/stop`]: { access: renter },
  [`GET ${rayApi}/packages/:protocol/:packageName`]: { access: renter },
  [`PUT ${rayApi}/packages/:protocol/:packageName`]: { access: renter, bodyLimitBytes: maxRayPackageBytes },

  // Wallet routes are any account's; who may claim from the faucet or withdraw is the routes' own rule.
  'GET /v1/wallet': { access: anyKey },
  'GET /v1/wallet/history': { access: anyKey },
  'GET /v1/wallet/deposit-address': { access: anyKey },
  'POST /v1/wallet/deposits': { access: anyKey },
  'POST /v1/wallet/withdraw': { access: anyKey },
  'POST /v1/wallet/faucet': { access: anyKey },
  'GET /v1/earnings': { access: supplier },
  'GET /v1/earnings/transfers': { access: supplier },
  'POST /v1/earnings/collect': { access: supplier },
  'POST /v1/operator/credits': { access: operator },
  'POST /v1/operator/faucet': { access: operator },
  'GET /v1/ledger/accounts/:id': { access: operator },
  'GET /v1/ledger/verify': { access: operator },
  'GET /v1/ledger/verify-chain': { access: operator },

  'GET /v1/worker/speedtest/ping': { access: deviceSigned },
  'GET /v1/worker/speedtest/download': { access: deviceSigned },
  // The upload is counted by its own streaming parser, with its own limit.
  'POST /v1/worker/speedtest/upload': { access: deviceSigned },
  'POST /v1/worker/speedtest/results': { access: deviceSigned, bodyLimitBytes: 64 * 1024 },

  'GET /v1/rewards/epochs': { access: publicAccess },
  'GET /v1/rewards/epochs/:epoch': { access: publicAccess },
  'GET /v1/rewards/devices/:id': { access: publicAccess },
  'GET /v1/explorer/summary': { access: publicAccess },
  'GET /v1/explorer/prices': { access: publicAccess },
  'GET /v1/explorer/devices': { access: publicAccess },
  'GET /v1/explorer/devices/:id': { access: publicAccess },
  'GET /v1/explorer/inference': { access: publicAccess },

  // A manifest lists up to 64 artifacts.
  'POST /v1/store/models': { access: operator, bodyLimitBytes: 64 * 1024 },
  'GET /v1/store/models': { access: publicAccess },
  'GET /v1/store/models/:name/:version': { access: publicAccess },
  'DELETE /v1/store/models/:name/:version': { access: operator },
  'PUT /v1/store/models/:name/:version/serving': { access: operator },
  'PUT /v1/store/artifacts/:sha256': { access: operator, bodyLimitBytes: maxArtifactBytes },
  'GET /v1/store/artifacts/:sha256': { access: publicAccess },
  'GET /v1/operator/artifact-refusals': { access: operator },

  'GET /v1/models': { access: publicAccess },
  'GET /v1/inference/stats': { access: publicAccess },
  'GET /v1/inference/receipts': { access: renter },
  'GET /v1/inference/receipts/:id': { access: renter },
  'POST /v1/chat/completions': { access: renter, bodyLimitBytes: largeJsonBodyBytes },
  'POST /v1/completions': { access: renter, bodyLimitBytes: largeJsonBodyBytes },
  'POST /v1/embeddings': { access: renter, bodyLimitBytes: largeJsonBodyBytes },
}

/** What a route without a line in the table gets: a valid key of any role (closed, not open, by default). */
export const undeclaredRouteAccess: RouteAccess = anyKey

export function routeRuleOf(method: string, url: string): RouteRule | undefined {
  return routeRules[`${method === 'HEAD' ? 'GET' : method} ${url}`]
}

const undeclaredRoutes = new WeakMap<FastifyInstance, readonly string[]>()

/** Routes registered on `app` that have no line in `routeRules` (they get `undeclaredRouteAccess`). */
export function routesWithoutAccessRule(app: FastifyInstance): readonly string[] {
  return undeclaredRoutes.get(app) ?? []
}

declare module 'fastify' {
  interface FastifyContextConfig {
    access?: RouteAccess
  }
}

/**
 * Installs the table on `app`: call before any route is registered. Each route gets its access in its config
 * and its body limit; one onRequest hook, run before parsing, enforces the access.
 */
export function installRouteAccess(app: FastifyInstance, authenticator: ApiKeyAuthenticator): void {
  const undeclared: string[] = []
  undeclaredRoutes.set(app, undeclared)
  app.addHook('onRoute', (route: RouteOptions) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method]
    const rules = methods.map((method) => routeRuleOf(method, route.url))
    for (const [at, method] of methods.entries()) if (!rules[at]) undeclared.push(`${method} ${route.url}`)
    const rule = rules[0]
    invariant(
      rules.every((other) => other?.access === rule?.access),
      `route ${route.url}: its methods are declared with different access`,
    )
    route.config = { ...route.config, access: rule?.access ?? undeclaredRouteAccess }
    if (rule?.bodyLimitBytes !== undefined && route.bodyLimit === undefined)
      route.bodyLimit = rule.bodyLimitBytes
  })
  app.addHook('onRequest', async (request: FastifyRequest) => {
    if (request.is404) return
    const access = request.routeOptions.config.access ?? undeclaredRouteAccess
    if (access.kind !== 'key') return
    requireAnyRole(await authenticator.authenticate(request), access.roles)
  })
}
