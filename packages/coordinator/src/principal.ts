import { ForbiddenError, NotFoundError, UnauthenticatedError, type Clock, type Role } from '@gpumesh/core'
import type { DeviceRecord, Store } from '@gpumesh/store'
import type { FastifyRequest } from 'fastify'
import { parseApiKey, safeEqualHex } from './credentials.ts'

// Who is calling: resolved from `Authorization: Bearer gmk_...` once per request. A key acts with the roles
// it was scoped to, which are always a subset of its account's roles.

export type Principal = {
  readonly accountId: string
  readonly apiKeyId: string
  readonly apiKeyName: string
  readonly roles: readonly Role[]
}

/** Key use is recorded at most this often per key, so reads do not turn into writes. */
export const apiKeyTouchIntervalMs = 60_000

export async function authenticate(request: FastifyRequest, store: Store, clock: Clock): Promise<Principal> {
  const header = request.headers.authorization
  if (!header)
    throw new UnauthenticatedError('missing Authorization header: send "Authorization: Bearer <api key>"')
  const match = /^Bearer\s+(\S+)$/i.exec(header)
  const parsed = match?.[1] ? parseApiKey(match[1]) : undefined
  if (!parsed) throw new UnauthenticatedError('malformed API key: expected "Bearer gmk_..."')
  const key = await store.getApiKey(parsed.id)
  if (!key || !safeEqualHex(key.secretSha256, parsed.secretSha256)) {
    request.log.warn({ apiKeyId: parsed.id }, 'refused unknown API key')
    throw new UnauthenticatedError('unknown API key')
  }
  if (key.revokedAtMs !== null) {
    request.log.warn({ apiKeyId: key.id }, 'refused revoked API key')
    throw new UnauthenticatedError('this API key was revoked')
  }
  const account = await store.getAccount(key.accountId)
  if (!account) throw new UnauthenticatedError('unknown API key')
  await store.touchApiKey(key.id, clock.nowMs(), apiKeyTouchIntervalMs)
  return {
    accountId: account.id,
    apiKeyId: key.id,
    apiKeyName: key.name,
    roles: key.roles.filter((role) => account.roles.includes(role)),
  }
}

export function requireRole(principal: Principal, role: Role): void {
  if (!principal.roles.includes(role)) {
    throw new ForbiddenError(
      `this needs the ${role} role; this API key has: ${principal.roles.join(', ') || 'none'}`,
      {
        requiredRole: role,
      },
    )
  }
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
