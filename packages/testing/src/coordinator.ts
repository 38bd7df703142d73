import { buildCoordinator, mintApiKey, type Coordinator, type CoordinatorInit } from '@gpumesh/coordinator'
import type { Clock } from '@gpumesh/core'
import type { Store } from '@gpumesh/store'

export const systemClock: Clock = {
  nowMs: () => Date.now(),
  sleepMs: (durationMs) => new Promise((resolve) => setTimeout(resolve, durationMs)),
}

/** Settings for a coordinator under test: loopback, any free port, fast timers, quiet logs. */
export function testCoordinatorInit(overrides: Partial<CoordinatorInit> = {}): CoordinatorInit {
  return {
    host: '127.0.0.1',
    port: 0,
    dataDir: '.gpumesh/unused',
    heartbeatIntervalMs: 200,
    missedHeartbeatsBeforeOffline: 3,
    restartGraceMs: 10_000,
    heartbeatFlushIntervalMs: 100,
    offerIndexRefreshMs: 50,
    // proof-of-compute is switched on by the tests about it
    verificationEnabled: false,
    reverifyIntervalMs: 3_600_000,
    challengeCpuMatrixSize: 64,
    challengeFixedOverheadMs: 5_000,
    clusterProvisionTimeoutMs: 120_000,
    rttProbeIntervalMs: 0,
    faucetMaxClaimGmt: '1000',
    faucetClaimPeriodMs: 86_400_000,
    // Every test client is 127.0.0.1; the faucet tests switch the per-source limit on.
    faucetClaimsPerSourcePerPeriod: 0,
    faucetFundsWithdrawable: false,
    // The tests about billing switch it on and fund their renters.
    clusterBillingEnabled: false,
    gmtPerUsd: '1',
    platformFeeBasisPoints: 1_000,
    billingIntervalMs: 60_000,
    clusterNodeJoinTimeoutMs: 60_000,
    // The tests about rewards switch them on and drive epochs by hand or with short epochs.
    rewardsEnabled: false,
    rewardEpochMs: 3_600_000,
    rewardEmissionCapGmt: '300000000',
    rewardFirstMonthGmt: '5000000',
    rewardMonthlyRetainBp: 9_880,
    rewardGpuPoolShareBp: 9_000,
    rewardCloseDelayMs: 0,
    rewardSpotCheckFraction: 0,
    explorerCacheMs: 0,
    priceIndexSampleMs: 900_000,
    inferenceEnabled: true,
    inferenceSettleMs: 100,
    inferenceRequestsPerMinute: 600,
    inferenceHoldGmt: '5',
    modelServingPlanMs: 200,
    replicaDrainMs: 5_000,
    logLevel: 'silent',
    ...overrides,
  }
}

export async function startTestCoordinator(
  store: Store,
  overrides: Partial<CoordinatorInit> = {},
  clock: Clock = systemClock,
): Promise<Coordinator> {
  return buildCoordinator({ store, clock }, testCoordinatorInit(overrides))
}

/** Polls until `check` returns a value (not undefined/false) or the deadline passes. */
export async function eventually<T>(
  check: () => Promise<T | undefined | false> | T | undefined | false,
  what: string,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let lastError: unknown
  for (;;) {
    try {
      const value = await check()
      if (value !== undefined && value !== false) return value
    } catch (error) {
      lastError = error
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${lastError ? `: ${String(lastError)}` : ''}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

export type ApiReply = { readonly status: number; readonly body: any }

/**
 * JSON over HTTP to a coordinator, with an optional API key. The address is read on every call, so a test
 * can restart the coordinator on another port.
 */
export function apiCaller(
  baseUrl: () => string,
): (method: string, path: string, key?: string, body?: unknown) => Promise<ApiReply> {
  return async (method, path, key, body) => {
    const response = await fetch(`${baseUrl()}${path}`, {
      method,
      headers: {
        ...(key ? { authorization: `Bearer ${key}` } : {}),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    })
    const text = await response.text()
    return { status: response.status, body: text ? JSON.parse(text) : undefined }
  }
}

/** An operator account and its API key, written straight into the store (as a coordinator's first start does). */
export async function insertOperatorKey(store: Store, accountId = 'acc_operator'): Promise<string> {
  const key = mintApiKey()
  await store.createAccount({ id: accountId, name: 'operator', roles: ['operator'], createdAtMs: 0 })
  await store.insertApiKey({
    id: key.id,
    accountId,
    name: 'test',
    roles: ['operator'],
    secretSha256: key.secretSha256,
    createdAtMs: 0,
    lastUsedAtMs: null,
    revokedAtMs: null,
  })
  return key.presented
}
