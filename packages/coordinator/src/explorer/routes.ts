import {
  formatMicroUsd,
  formatUtcDay,
  gpuModelById,
  millisecondsPerDay,
  millisecondsPerHour,
  NotFoundError,
  type Clock,
} from '@gpumesh/core'
import { ledgerAccounts } from '@gpumesh/ledger'
import {
  ErrorReply,
  ExplorerDeviceDetail,
  ExplorerDevicePage,
  ExplorerDevicesQuery,
  ExplorerSummary,
  IdParams,
  PriceIndexQuery,
  PriceIndexReply,
} from '@gpumesh/protocol'
import type { Store } from '@gpumesh/store'
import type { FastifyRequest } from 'fastify'
import type { App } from '../routes.ts'
import { authenticate } from '../principal.ts'
import { publicInventoryView } from '../views.ts'
import { epochView, payoutView } from '../rewards/routes.ts'
import { createReplyCache } from './reply-cache.ts'

/** A stored figure as shown: a record from before the edge refused non-finite numbers shows null, not a 500. */
const finiteOrNull = (value: number): number | null => (Number.isFinite(value) ? value : null)

// The public explorer: network totals, the price index and every device's public record. No login; no
// account ids, keys or wallets appear here. Replies are cached for `cacheMs`, so a busy explorer costs the
// store a few queries a minute whatever its traffic. A machine is shown to the public as much as a renter
// needs (GPU model, VRAM, measured figures, region, reliability); its hostname, OS, disks and paths only to its
// own account, on the device detail read with its key, which is never cached.

export type ExplorerRouteComponents = {
  readonly store: Store
  readonly clock: Clock
  readonly cacheMs: number
}

const errors = { 400: ErrorReply, 404: ErrorReply }
const chartDays = 30
const hours = (ms: number) => Math.round((ms / millisecondsPerHour) * 1000) / 1000
const modelName = (modelKey: string) =>
  modelKey === 'cpu' ? 'CPU only' : (gpuModelById(modelKey)?.displayName ?? modelKey)

export function registerExplorerRoutes(app: App, { store, clock, cacheMs }: ExplorerRouteComponents): void {
  const cache = createReplyCache(clock, cacheMs)
  const cached = <T>(request: { url: string }, compute: () => Promise<T>) => cache.get(request.url, compute)

  app.get(
    '/v1/explorer/summary',
    {
      schema: {
        tags: ['explorer'],
        summary:
          'Network totals: devices and GPUs connected, verified and hired; compute served; clusters; rewards; earnings',
        response: { 200: ExplorerSummary, ...errors },
      },
    },
    (request) =>
      cached(request, async () => {
        const nowMs = clock.nowMs()
        const supply = await store.explorer.supply()
        const served = await store.explorer.computeServed(nowMs, chartDays)
        const clusters = await store.explorer.clusterCounts()
        const money = await store.explorer.money()
        const latest = await store.rewards.latestEpoch()
        return {
          generatedAtMs: nowMs,
          devices: supply.devices,
          gpus: supply.gpus,
          byModel: supply.byModel.map((model) => ({ ...model, name: modelName(model.modelKey) })),
          byCountry: [...supply.byCountry],
          computeHours: {
            totalNodeHours: hours(served.totalNodeMs),
            totalGpuHours: hours(served.totalGpuMs),
            daily: served.daily.map((day) => ({
              day: formatUtcDay(day.dayStartMs),
              nodeHours: hours(day.nodeMs),
              gpuHours: hours(day.gpuMs),
            })),
          },
          clusters: { running: clusters.running, total: clusters.total, bySize: [...clusters.bySize] },
          rewards: {
            epochsClosed: money.epochsClosed,
            emittedUnits: money.rewardsEmittedUnits.toString(),
            paidUnits: money.rewardsPaidUnits.toString(),
            latest: latest ? epochView(latest) : null,
          },
          ledger: {
            // Earnings accounts are credited by rentals and rewards only, so rentals are the rest.
            rentalEarningsUnits: (money.earningsCreditedUnits - money.rewardsPaidUnits).toString(),
            rewardEarningsUnits: money.rewardsPaidUnits.toString(),
            feesUnits: money.feesUnits.toString(),
          },
        }
      }),
  )

  app.get(
    '/v1/explorer/prices',
    {
      schema: {
        tags: ['explorer'],
        summary: "The price index: each GPU model's median price per GPU-hour over time",
        querystring: PriceIndexQuery,
        response: { 200: PriceIndexReply, ...errors },
      },
    },
    (request) =>
      cached(request, async () => {
        const nowMs = clock.nowMs()
        const samples = await store.explorer.listPriceSamples(nowMs - request.query.days * millisecondsPerDay)
        const models = new Map<string, PriceIndexReply['models'][number]>()
        for (const sample of samples) {
          let model = models.get(sample.modelKey)
          if (!model) {
            model = { modelKey: sample.modelKey, name: modelName(sample.modelKey), points: [] }
            models.set(sample.modelKey, model)
          }
          model.points.push({
            atMs: sample.atMs,
            medianUsdPerGpuHour: formatMicroUsd(sample.medianMicroUsd),
            offers: sample.offers,
          })
        }
        return { generatedAtMs: nowMs, models: [...models.values()] }
      }),
  )

  app.get(
    '/v1/explorer/devices',
    {
      schema: {
        tags: ['explorer'],
        summary: 'Devices on the network (online first), filtered by GPU model, country and state',
        querystring: ExplorerDevicesQuery,
        response: { 200: ExplorerDevicePage, ...errors },
      },
    },
    (request) =>
      cached(request, async () => {
        const { modelKey, country, state, limit, offset } = request.query
        const page = await store.explorer.listDevices({
          ...(modelKey ? { modelKey } : {}),
          ...(country ? { country } : {}),
          ...(state ? { state } : {}),
          limit,
          offset,
        })
        return {
          generatedAtMs: clock.nowMs(),
          total: page.total,
          devices: page.devices.map((row) => ({ ...row, hostname: null })),
        }
      }),
  )

  app.get(
    '/v1/explorer/devices/:id',
    {
      schema: {
        tags: ['explorer'],
        summary:
          "A device's public record: hardware, speedtest, verification history, 30-day uptime, earnings and rewards",
        params: IdParams,
        response: { 200: ExplorerDeviceDetail, ...errors },
      },
    },
    async (request) => {
      const reader = await readerAccountId(request)
      const detail = () => deviceDetail(request.params.id, reader)
      return reader === undefined ? cached(request, detail) : detail()
    },
  )

  /** The account whose key the request carries, if it carries one (a wrong key is refused, 401). */
  async function readerAccountId(request: FastifyRequest): Promise<string | undefined> {
    if (request.headers.authorization === undefined) return undefined
    return (await authenticate(request, store, clock)).accountId
  }

  async function deviceDetail(deviceId: string, readerAccountId: string | undefined) {
    const nowMs = clock.nowMs()
    const row = await store.explorer.getDevice(deviceId)
    const device = row && (await store.getDevice(row.id))
    if (!row || !device) throw new NotFoundError(`no device ${deviceId}`, { field: 'id' })
    const owner = readerAccountId === device.accountId
    const todayStartMs = Math.floor(nowMs / millisecondsPerDay) * millisecondsPerDay
    const sinceMs = todayStartMs - (chartDays - 1) * millisecondsPerDay
    const [speedtest] = await store.listSpeedtestResults(device.id, 1)
    const challenges = await store.listChallenges(device.id, 20)
    const uptime = new Map(
      (await store.explorer.uptimeByDay(device.id, sinceMs)).map((day) => [day.dayStartMs, day.onlineMs]),
    )
    const credits = await store.ledger.creditsByReferenceAndDay(
      ledgerAccounts.earnings(device.accountId).id,
      sinceMs,
    )
    const payouts = await store.rewards.listDevicePayouts(device.id, 48)
    return {
      generatedAtMs: nowMs,
      device: { ...row, hostname: owner ? row.hostname : null },
      enrolledAtMs: device.enrolledAtMs,
      lastSeenAtMs: device.lastSeenAtMs,
      view: owner ? ('owner' as const) : ('public' as const),
      inventory: owner || !device.inventory ? device.inventory : publicInventoryView(device.inventory),
      speedtest: speedtest
        ? {
            measuredAtMs: speedtest.measuredAtMs,
            latencyMs: finiteOrNull(speedtest.latencyMs),
            downloadMbps: finiteOrNull(speedtest.downloadMbps),
            uploadMbps: finiteOrNull(speedtest.uploadMbps),
            bandwidthTier: speedtest.bandwidthTier,
          }
        : null,
      verifications: challenges.map((challenge) => ({
        issuedAtMs: challenge.issuedAtMs,
        outcome: challenge.outcome,
        reasonCode: challenge.reasonCode,
        reason: challenge.reason,
        effectiveTflops: challenge.effectiveTflops,
        backend: challenge.backend,
      })),
      uptimeDaily: Array.from({ length: chartDays }, (_, index) => {
        const dayStartMs = sinceMs + index * millisecondsPerDay
        // Today counts only the part of the day that has passed.
        const dayLengthMs = Math.min(millisecondsPerDay, Math.max(1, nowMs - dayStartMs))
        return {
          day: formatUtcDay(dayStartMs),
          onlineRatio: Math.min(1, Math.round(((uptime.get(dayStartMs) ?? 0) / dayLengthMs) * 1000) / 1000),
        }
      }),
      earningsDaily: credits
        .filter((line) => line.reference === device.id)
        .map((line) => ({
          day: formatUtcDay(line.dayStartMs),
          source: line.code,
          units: line.amount.toString(),
        }))
        .reverse(),
      rewards: payouts.map(payoutView),
    }
  }
}
