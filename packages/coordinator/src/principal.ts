import {
  ForbiddenError,
  NotFoundError,
  RateLimitedError,
  UnauthenticatedError,
  type Clock,
  type Role,
} from '@gpumesh/core'
import type { DeviceRecord, Store } from '@gpumesh/store'
import type { FastifyRequest } from 'fastify'
import { parseApiKey, safeEqualHex, sha256Hex } from './credentials.ts'
import { FailedAuthTally, FailedAuthThrottle, type FailedAuthThrottleInit } from './failed-auth-throttle.ts'

// Who is calling: resolved from `Authorization: Bearer gmk_...` once per request (by the route-access hook,
// before the body is read). A key acts with the roles it was scoped to, always a subset of its account's.

export type Principal = {
  readonly accountId: string
  readonly apiKeyId: string
  readonly apiKeyName: string
  /** The key's roles that its account still holds: what this request may do. */
  readonly roles: readonly Role[]
  /** The account's roles (a key may be narrower). */
  readonly accountRoles: readonly Role[]
}

/** Key use is recorded at most this often per key, so reads do not turn into writes. */
export const apiKeyTouchIntervalMs = 60_000

export type FailedAuthLimits = {
  /** Wrong keys per source address (`request.ip`). */
  readonly perSource: FailedAuthThrottleInit
  /** Wrong secrets per key id, from any source. */
  readonly perKeyId: FailedAuthThrottleInit
}

export const defaultFailedAuthLimits: FailedAuthLimits = {
  perSource: { burst: 30, windowMs: 60_000, maxSubjects: 100_000 },
  perKeyId: { burst: 10, windowMs: 60_000, maxSubjects: 100_000 },
}

/**
 * Compared against when the key id is unknown, so an unknown id and a known id with a wrong secret do the
 * same work: the answer's timing does not tell which key ids exist.
 */
const absentKeySecretSha256 = sha256Hex('no such API key')

/** Requests refused for their credentials: their "request completed" line is left out of the log. */
export const failedAuthRequests = new WeakSet<FastifyRequest>()

const resolvedPrincipals = new WeakMap<FastifyRequest, Principal>()

export class ApiKeyAuthenticator {
  readonly #store: Store
  readonly #clock: Clock
  readonly #perSource: FailedAuthThrottle
  readonly #perKeyId: FailedAuthThrottle
  readonly tally = new FailedAuthTally()

  constructor(
    components: { store: Store; clock: Clock },
    limits: FailedAuthLimits = defaultFailedAuthLimits,
  ) {
    this.#store = components.store
    this.#clock = components.clock
    this.#perSource = new FailedAuthThrottle(limits.perSource)
    this.#perKeyId = new FailedAuthThrottle(limits.perKeyId)
  }

  async authenticate(request: FastifyRequest): Promise<Principal> {
    const resolved = resolvedPrincipals.get(request)
    if (resolved) return resolved
    const header = request.headers.authorization
    // No key at all is not a guess: it is answered, never counted.
    if (!header)
      throw new UnauthenticatedError('missing Authorization header: send "Authorization: Bearer <api key>"')
    const source = request.ip
    this.#refuseIfThrottled(request, this.#perSource, source, 'source address')
    const match = /^Bearer\s+(\S+)$/i.exec(header)
    const parsed = match?.[1] ? parseApiKey(match[1]) : undefined
    if (!parsed) this.#fail(request, 'malformed', 'malformed API key: expected "Bearer gmk_..."')
    this.#refuseIfThrottled(request, this.#perKeyId, parsed.id, 'API key')
    const key = await this.#store.getApiKey(parsed.id)
    const secretMatches = safeEqualHex(key?.secretSha256 ?? absentKeySecretSha256, parsed.secretSha256)
    if (!key || !secretMatches) this.#fail(request, 'unknown_key', 'unknown API key', parsed.id)
    if (key.revokedAtMs !== null) this.#fail(request, 'revoked', 'this API key was revoked', key.id)
    const account = await this.#store.getAccount(key.accountId)
    if (!account) this.#fail(request, 'unknown_key', 'unknown API key', key.id)
    await this.#store.touchApiKey(key.id, this.#clock.nowMs(), apiKeyTouchIntervalMs)
    const principal = {
      accountId: account.id,
      apiKeyId: key.id,
      apiKeyName: key.name,
      roles: key.roles.filter((role) => account.roles.includes(role)),
      accountRoles: account.roles,
    }
    resolvedPrincipals.set(request, principal)
    return principal
  }

  /** Forgets sources and key ids whose tries are all back (they behave as never seen). */
  prune(): void {
    const nowMs = this.#clock.nowMs()
    this.#perSource.prune(nowMs)
    this.#perKeyId.prune(nowMs)
  }

  #refuseIfThrottled(request: FastifyRequest, throttle: FailedAuthThrottle, subject: string, what: string) {
    const nowMs = this.#clock.nowMs()
    const waitMs = throttle.retryAfterMs(subject, nowMs)
    if (waitMs === 0) return
    const retryAfterS = Math.ceil(waitMs / 1000)
    failedAuthRequests.add(request)
    this.tally.record({ reason: 'throttled', source: request.ip }, nowMs)
    throw new RateLimitedError(
      `too many failed authentications from this ${what}; retry in ${retryAfterS} s`,
      { retryAfterS },
    )
  }

  #fail(request: FastifyRequest, reason: string, message: string, keyId?: string): never {
    const nowMs = this.#clock.nowMs()
    this.#perSource.recordFailure(request.ip, nowMs)
    if (keyId !== undefined) this.#perKeyId.recordFailure(keyId, nowMs)
    this.tally.record({ reason, source: request.ip, ...(keyId === undefined ? {} : { keyId }) }, nowMs)
    failedAuthRequests.add(request)
    throw new UnauthenticatedError(message)
  }
}

const authenticators = new WeakMap<Store, ApiKeyAuthenticator>()

/** The authenticator of the coordinator serving `store` (one made with the defaults if none was set). */
export function authenticatorOf(store: Store, clock: Clock): ApiKeyAuthenticator {
  let authenticator = authenticators.get(store)
  if (!authenticator) {
    authenticator = new ApiKeyAuthenticator({ store, clock })
    authenticators.set(store, authenticator)
  }
  return authenticator
}

export function setAuthenticator(store: Store, authenticator: ApiKeyAuthenticator): void {
  authenticators.set(store, authenticator)
}

export function authenticate(request: FastifyRequest, store: Store, clock: Clock): Promise<Principal> {
  return authenticatorOf(store, clock).authenticate(request)
}

/** Whether the key holds any of `roles`; otherwise a 403 naming the roles needed. */
export function requireAnyRole(principal: Principal, roles: readonly Role[]): void {
  if (roles.some((role) => principal.roles.includes(role))) return
  const needed = roles.length === 1 ? `the ${roles[0]} role` : `one of the roles ${roles.join(', ')}`
  throw new ForbiddenError(
    `this needs ${needed}; this API key has: ${principal.roles.join(', ') || 'none'}`,
    {
      requiredRoles: [...roles],
      ...(roles.length === 1 ? { requiredRole: roles[0] } : {}),
      keyRoles: [...principal.roles],
    },
  )
}

export function requireRole(principal: Principal, role: Role): void {
  requireAnyRole(principal, [role])
}

/**
 * The caller's own device (any device, for operators). Another account's device is reported exactly like a
 * missing one, so device ids cannot be probed.
 */
export async function ownDevice(
  request: FastifyRequest,
  store: Store,
  clock: Clock,
  deviceId: string,
): Promise<DeviceRecord> {
  const principal = await authenticate(request, store, clock)
  const device = await store.getDevice(deviceId)
  if (!device || (device.accountId !== principal.accountId && !principal.roles.includes('operator')))
    throw new NotFoundError(`no device ${deviceId}`)
  return device
}
