import { formatGmtUnits, NotFoundError, type Clock } from '@gpumesh/core'
import { formatShare } from '@gpumesh/rewards'
import {
  DeviceRewardList,
  EpochParams,
  EpochPayoutsQuery,
  ErrorReply,
  IdParams,
  RewardEpochDetail,
  RewardEpochList,
  RewardEpochsQuery,
  type RewardEpochView,
  type RewardPayoutView,
} from '@gpumesh/protocol'
import type { RewardEpochRecord, RewardPayoutRecord, Store } from '@gpumesh/store'
import type { App } from '../routes.ts'
import { createReplyCache } from '../explorer/reply-cache.ts'

// Epoch rewards are public, like a chain's: every payout and the measured factors behind it, so anyone can
// recompute a supplier's reward with docs/rewards.md.

export type RewardRouteComponents = {
  readonly store: Store
  readonly clock: Clock
  /** Replies are public and the same for everyone: reused this long (see explorer/reply-cache.ts). */
  readonly cacheMs: number
}

const errors = { 400: ErrorReply, 404: ErrorReply }
const devicePayoutsShown = 500

export function epochView(epoch: RewardEpochRecord): RewardEpochView {
  return {
    epoch: epoch.epoch,
    startsAtMs: epoch.startsAtMs,
    endsAtMs: epoch.endsAtMs,
    closedAtMs: epoch.paidAtMs ?? epoch.computedAtMs,
    emissionUnits: epoch.emissionUnits.toString(),
    emissionGmt: formatGmtUnits(epoch.emissionUnits),
    paidUnits: epoch.paidUnits.toString(),
    paidGmt: formatGmtUnits(epoch.paidUnits),
    devicesConsidered: epoch.devicesConsidered,
    devicesEligible: epoch.devicesEligible,
    devicesPaid: epoch.devicesPaid,
    policyVersion: epoch.policyVersion,
    pools: epoch.pools.map((pool) => ({
      pool: pool.pool,
      shareBp: Number(pool.shareBp),
      emissionUnits: pool.emissionUnits,
      paidUnits: pool.paidUnits,
      totalScore: pool.totalScore,
      devicesPaid: pool.devicesPaid,
    })),
  }
}

export function payoutView(payout: RewardPayoutRecord): RewardPayoutView {
  return {
    epoch: payout.epoch,
    deviceId: payout.deviceId,
    pool: payout.pool,
    eligible: payout.eligible,
    ineligibleReasonCode: payout.ineligibleReasonCode,
    ineligibleReason: payout.ineligibleReason,
    factors: { ...payout.factors, gpus: [...payout.factors.gpus] },
    score: payout.score.toString(),
    share: formatShare(payout.score, payout.poolTotalScore),
    amountUnits: payout.amountUnits.toString(),
    amountGmt: formatGmtUnits(payout.amountUnits),
    transferId: payout.transferId,
  }
}

export function registerRewardRoutes(app: App, { store, clock, cacheMs }: RewardRouteComponents): void {
  const cache = createReplyCache(clock, cacheMs)
  app.get(
    '/v1/rewards/epochs',
    {
      schema: {
        tags: ['rewards'],
        summary: 'Closed reward epochs, newest first: emission, amount paid, devices paid per pool',
        querystring: RewardEpochsQuery,
        response: { 200: RewardEpochList, ...errors },
      },
    },
    (request) =>
      cache.get(request.url, async () => ({
        epochs: (await store.rewards.listEpochs(request.query.limit, request.query.before)).map(epochView),
      })),
  )

  app.get(
    '/v1/rewards/epochs/:epoch',
    {
      schema: {
        tags: ['rewards'],
        summary: 'One epoch and its payouts (largest first), each with the factors it was computed from',
        params: EpochParams,
        querystring: EpochPayoutsQuery,
        response: { 200: RewardEpochDetail, ...errors },
      },
    },
    (request) =>
      cache.get(request.url, async () => {
        const epoch = await store.rewards.getEpoch(request.params.epoch)
        if (!epoch) throw new NotFoundError(`epoch ${request.params.epoch} is not closed`, { field: 'epoch' })
        const payouts = await store.rewards.listEpochPayouts(
          epoch.epoch,
          request.query.limit,
          request.query.offset,
        )
        return { epoch: epochView(epoch), payouts: payouts.map(payoutView) }
      }),
  )

  app.get(
    '/v1/rewards/devices/:id',
    {
      schema: {
        tags: ['rewards'],
        summary: "A device's reward in each closed epoch it was considered in, newest first",
        params: IdParams,
        response: { 200: DeviceRewardList, ...errors },
      },
    },
    (request) =>
      cache.get(request.url, async () => {
        const device = await store.getDevice(request.params.id)
        if (!device) throw new NotFoundError(`no device ${request.params.id}`, { field: 'id' })
        const payouts = await store.rewards.listDevicePayouts(device.id, devicePayoutsShown)
        return { deviceId: device.id, payouts: payouts.map(payoutView) }
      }),
  )
}
