import { millisecondsPerDay } from '@gpumesh/core'
import type { SqlDriver } from './driver.ts'

// The public explorer's reads: network-wide aggregates in a few set-based statements each. The coordinator
// caches the answers, so these run a few times a minute, not once per page view.

export type SupplyCountRecord = { enrolled: number; connected: number; verified: number; hired: number }

export type NetworkSupply = {
  readonly devices: SupplyCountRecord
  readonly gpus: SupplyCountRecord
  readonly byModel: readonly { readonly modelKey: string; readonly gpus: SupplyCountRecord }[]
  readonly byCountry: readonly { readonly country: string; readonly devices: number; readonly gpus: number }[]
}

export type ComputeServed = {
  readonly totalNodeMs: number
  readonly totalGpuMs: number
  readonly daily: readonly { readonly dayStartMs: number; readonly nodeMs: number; readonly gpuMs: number }[]
}

export type ClusterCounts = {
  readonly running: number
  readonly total: number
  readonly bySize: readonly { readonly nodes: number; readonly clusters: number }[]
}

export type NetworkMoney = {
  readonly earningsCreditedUnits: bigint
  readonly rewardsPaidUnits: bigint
  readonly rewardsEmittedUnits: bigint
  readonly epochsClosed: number
  readonly feesUnits: bigint
}

export type PriceIndexSample = {
  readonly modelKey: string
  readonly atMs: number
  readonly medianMicroUsd: bigint
  readonly offers: number
}

export type ExplorerDeviceFilter = {
  readonly modelKey?: string
  readonly country?: string
  readonly state?: 'online' | 'offline'
  readonly limit: number
  readonly offset: number
}

export type ExplorerDeviceRecord = {
  readonly id: string
  readonly hostname: string
  readonly state: string
  readonly verificationState: string
  readonly hired: boolean
  readonly country: string | null
  readonly region: string | null
  readonly gpuModelKey: string | null
  readonly gpuCount: number
  readonly bandwidthTier: string | null
  readonly measuredFp32Tflops: number | null
  readonly reliability: number | null
}

export type ExplorerStore = {
  supply(): Promise<NetworkSupply>
  computeServed(nowMs: number, days: number): Promise<ComputeServed>
  clusterCounts(): Promise<ClusterCounts>
  money(): Promise<NetworkMoney>
  insertPriceSamples(samples: readonly PriceIndexSample[]): Promise<void>
  listPriceSamples(sinceMs: number): Promise<PriceIndexSample[]>
  listDevices(filter: ExplorerDeviceFilter): Promise<{ total: number; devices: ExplorerDeviceRecord[] }>
  getDevice(id: string): Promise<ExplorerDeviceRecord | undefined>
  /** Online time per UTC day from the hour buckets, oldest first. */
  uptimeByDay(deviceId: string, sinceMs: number): Promise<{ dayStartMs: number; onlineMs: number }[]>
}

const emptyCounts = (): SupplyCountRecord => ({ enrolled: 0, connected: 0, verified: 0, hired: 0 })

type SupplyRow = {
  key: string
  online: boolean
  verified: boolean
  hired: boolean
  devices: bigint
  gpus: bigint
}
type DeviceRow = {
  id: string
  hostname: string
  state: string
  verification_state: string
  hired: boolean
  country: string | null
  region: string | null
  gpu_model_key: string | null
  gpu_count: bigint
  bandwidth_tier: string | null
  measured_fp32_tflops: number | null
  reliability: number | null
}

const deviceRowColumns = `d.id, d.hostname, d.state, d.verification_state,
  EXISTS (SELECT 1 FROM device_reservations r WHERE r.device_id = d.id) AS hired, d.country, d.region,
  (SELECT min(g.model_key) FROM device_gpus g WHERE g.device_id = d.id) AS gpu_model_key,
  (SELECT count(*) FROM device_gpus g WHERE g.device_id = d.id) AS gpu_count,
  d.bandwidth_tier, d.measured_fp32_tflops, d.reliability`

const toDevice = (row: DeviceRow): ExplorerDeviceRecord => ({
  id: row.id,
  hostname: row.hostname,
  state: row.state,
  verificationState: row.verification_state,
  hired: row.hired,
  country: row.country,
  region: row.region,
  gpuModelKey: row.gpu_model_key,
  gpuCount: Number(row.gpu_count),
  bandwidthTier: row.bandwidth_tier,
  measuredFp32Tflops: row.measured_fp32_tflops,
  reliability: row.reliability,
})

export function createExplorerStore(driver: SqlDriver): ExplorerStore {
  return {
    async supply() {
      // Per device and GPU model: online, verified, hired, and how many GPUs. Blocked devices are not part of
      // the network's supply. One pass over devices, GPUs grouped once, reservations joined once.
      const rows = await driver.query<SupplyRow & { country: string }>(
        `WITH gpus AS (SELECT device_id, model_key, count(*) AS n FROM device_gpus GROUP BY device_id, model_key)
         SELECT coalesce(g.model_key, 'cpu') AS key, coalesce(d.country, 'unknown') AS country,
           d.state = 'online' AS online,
           d.state = 'online' AND d.verification_state = 'verified' AS verified,
           d.state = 'online' AND r.device_id IS NOT NULL AS hired,
           count(DISTINCT d.id) AS devices, coalesce(sum(g.n), 0)::bigint AS gpus
         FROM devices d
         LEFT JOIN gpus g ON g.device_id = d.id
         LEFT JOIN device_reservations r ON r.device_id = d.id
         WHERE d.state <> 'blocked'
         GROUP BY 1, 2, 3, 4, 5`,
      )
      const devicesPerState = await driver.query<SupplyRow>(
        `SELECT '' AS key, d.state = 'online' AS online,
           d.state = 'online' AND d.verification_state = 'verified' AS verified,
           d.state = 'online' AND r.device_id IS NOT NULL AS hired, count(*) AS devices, 0::bigint AS gpus
         FROM devices d LEFT JOIN device_reservations r ON r.device_id = d.id
         WHERE d.state <> 'blocked' GROUP BY 2, 3, 4`,
      )
      const devices = emptyCounts()
      const gpus = emptyCounts()
      const models = new Map<string, SupplyCountRecord>()
      const countries = new Map<string, { devices: number; gpus: number }>()
      const add = (counts: SupplyCountRecord, row: SupplyRow, amount: number) => {
        counts.enrolled += amount
        if (row.online) counts.connected += amount
        if (row.verified) counts.verified += amount
        if (row.hired) counts.hired += amount
      }
      for (const row of devicesPerState) add(devices, row, Number(row.devices))
      for (const row of rows) {
        // A device without GPUs is counted under "cpu" as one unit; GPUs are counted one by one.
        const amount = row.key === 'cpu' ? Number(row.devices) : Number(row.gpus)
        const counts = models.get(row.key) ?? emptyCounts()
        add(counts, row, amount)
        models.set(row.key, counts)
        if (row.key !== 'cpu') add(gpus, row, amount)
        if (row.online) {
          const country = countries.get(row.country) ?? { devices: 0, gpus: 0 }
          country.gpus += Number(row.gpus)
          countries.set(row.country, country)
        }
      }
      const devicesByCountry = await driver.query<{ country: string; devices: bigint }>(
        `SELECT coalesce(country, 'unknown') AS country, count(*) AS devices FROM devices
         WHERE state = 'online' GROUP BY 1`,
      )
      for (const row of devicesByCountry) {
        const country = countries.get(row.country) ?? { devices: 0, gpus: 0 }
        country.devices = Number(row.devices)
        countries.set(row.country, country)
      }
      return {
        devices,
        gpus,
        byModel: [...models.entries()]
          .map(([modelKey, counts]) => ({ modelKey, gpus: counts }))
          .sort((a, b) => b.gpus.enrolled - a.gpus.enrolled || (a.modelKey < b.modelKey ? -1 : 1)),
        byCountry: [...countries.entries()]
          .map(([country, counts]) => ({ country, ...counts }))
          .sort((a, b) => b.devices - a.devices || (a.country < b.country ? -1 : 1)),
      }
    },

    async computeServed(nowMs, days) {
      const fromMs =
        Math.floor(nowMs / millisecondsPerDay) * millisecondsPerDay - (days - 1) * millisecondsPerDay
      // Each served node counts its GPUs (a node without GPUs counts as one).
      const gpuCount = `greatest(1, coalesce(g.n, 0))`
      const withGpus = `LEFT JOIN (SELECT device_id, count(*) AS n FROM device_gpus GROUP BY device_id) g ON g.device_id = s.device_id`
      const totals = await driver.query<{ node_ms: string | null; gpu_ms: string | null }>(
        `SELECT sum(coalesce(s.ended_at_ms, $1) - s.started_at_ms)::text AS node_ms,
           sum((coalesce(s.ended_at_ms, $1) - s.started_at_ms) * ${gpuCount})::text AS gpu_ms
         FROM cluster_node_service s ${withGpus}`,
        [nowMs],
      )
      const daily = await driver.query<{ day: bigint; node_ms: string; gpu_ms: string }>(
        `SELECT day.start AS day,
           coalesce(sum(least(coalesce(s.ended_at_ms, $1), day.start + ${millisecondsPerDay}) - greatest(s.started_at_ms, day.start))
             FILTER (WHERE s.device_id IS NOT NULL), 0)::text AS node_ms,
           coalesce(sum((least(coalesce(s.ended_at_ms, $1), day.start + ${millisecondsPerDay}) - greatest(s.started_at_ms, day.start)) * ${gpuCount})
             FILTER (WHERE s.device_id IS NOT NULL), 0)::text AS gpu_ms
         FROM generate_series($2::bigint, $1::bigint, ${millisecondsPerDay}::bigint) AS day(start)
         LEFT JOIN cluster_node_service s
           ON s.started_at_ms < day.start + ${millisecondsPerDay} AND coalesce(s.ended_at_ms, $1) > day.start
         ${withGpus}
         GROUP BY day.start ORDER BY day.start`,
        [nowMs, fromMs],
      )
      return {
        totalNodeMs: Number(totals[0]?.node_ms ?? 0),
        totalGpuMs: Number(totals[0]?.gpu_ms ?? 0),
        daily: daily.map((row) => ({
          dayStartMs: Number(row.day),
          nodeMs: Number(row.node_ms),
          gpuMs: Number(row.gpu_ms),
        })),
      }
    },

    async clusterCounts() {
      const rows = await driver.query<{ nodes: number; running: bigint; total: bigint }>(
        `SELECT node_count AS nodes, count(*) FILTER (WHERE state = 'ready') AS running, count(*) AS total
         FROM clusters GROUP BY node_count ORDER BY node_count`,
      )
      return {
        running: rows.reduce((sum, row) => sum + Number(row.running), 0),
        total: rows.reduce((sum, row) => sum + Number(row.total), 0),
        bySize: rows
          .filter((row) => row.running > 0n)
          .map((row) => ({ nodes: row.nodes, clusters: Number(row.running) })),
      }
    },

    async money() {
      const rows = await driver.query<{
        earnings: string | null
        fees: string | null
        paid: string | null
        emitted: string | null
        epochs: bigint
      }>(
        `SELECT (SELECT sum(credits_posted)::text FROM ledger_accounts WHERE kind = 'earnings') AS earnings,
           (SELECT sum(credits_posted)::text FROM ledger_accounts WHERE kind = 'fee') AS fees,
           (SELECT sum(paid_units)::text FROM reward_epochs WHERE paid_at_ms IS NOT NULL) AS paid,
           (SELECT sum(emission_units)::text FROM reward_epochs) AS emitted,
           (SELECT count(*) FROM reward_epochs) AS epochs`,
      )
      const row = rows[0]
      return {
        earningsCreditedUnits: BigInt(row?.earnings ?? '0'),
        feesUnits: BigInt(row?.fees ?? '0'),
        rewardsPaidUnits: BigInt(row?.paid ?? '0'),
        rewardsEmittedUnits: BigInt(row?.emitted ?? '0'),
        epochsClosed: Number(row?.epochs ?? 0n),
      }
    },

    async insertPriceSamples(samples) {
      if (samples.length === 0) return
      await driver.execute(
        `INSERT INTO price_index_samples (model_key, at_ms, median_micro_usd, offers)
         SELECT r.model_key, r.at_ms, r.median_micro_usd::bigint, r.offers
         FROM jsonb_to_recordset($1::jsonb) AS r(model_key text, at_ms bigint, median_micro_usd text, offers integer)
         ON CONFLICT (model_key, at_ms) DO NOTHING`,
        [
          JSON.stringify(
            samples.map((sample) => ({
              model_key: sample.modelKey,
              at_ms: sample.atMs,
              median_micro_usd: sample.medianMicroUsd.toString(),
              offers: sample.offers,
            })),
          ),
        ],
      )
    },

    async listPriceSamples(sinceMs) {
      const rows = await driver.query<{
        model_key: string
        at_ms: bigint
        median_micro_usd: bigint
        offers: number
      }>('SELECT * FROM price_index_samples WHERE at_ms >= $1 ORDER BY model_key, at_ms', [sinceMs])
      return rows.map((row) => ({
        modelKey: row.model_key,
        atMs: Number(row.at_ms),
        medianMicroUsd: row.median_micro_usd,
        offers: row.offers,
      }))
    },

    async listDevices(filter) {
      const conditions = [`d.state <> 'blocked'`]
      const params: (string | number)[] = []
      if (filter.modelKey === 'cpu') {
        conditions.push('NOT EXISTS (SELECT 1 FROM device_gpus g WHERE g.device_id = d.id)')
      } else if (filter.modelKey) {
        params.push(filter.modelKey)
        conditions.push(
          `EXISTS (SELECT 1 FROM device_gpus g WHERE g.device_id = d.id AND g.model_key = $${params.length})`,
        )
      }
      if (filter.country) {
        params.push(filter.country.toUpperCase())
        conditions.push(`d.country = $${params.length}`)
      }
      if (filter.state) {
        params.push(filter.state)
        conditions.push(`d.state = $${params.length}`)
      }
      const where = conditions.join(' AND ')
      const total = await driver.query<{ total: bigint }>(
        `SELECT count(*) AS total FROM devices d WHERE ${where}`,
        params,
      )
      const rows = await driver.query<DeviceRow>(
        `SELECT ${deviceRowColumns} FROM devices d WHERE ${where}
         ORDER BY (d.state = 'online') DESC, d.id LIMIT $${params.length + 1} OFFSET $${params.length + 2}`,
        [...params, filter.limit, filter.offset],
      )
      return { total: Number(total[0]?.total ?? 0n), devices: rows.map(toDevice) }
    },

    async getDevice(id) {
      const rows = await driver.query<DeviceRow>(
        `SELECT ${deviceRowColumns} FROM devices d WHERE d.id = $1`,
        [id],
      )
      return rows[0] && toDevice(rows[0])
    },

    async uptimeByDay(deviceId, sinceMs) {
      const rows = await driver.query<{ day: bigint; online_ms: string }>(
        `SELECT (bucket_start_ms / ${millisecondsPerDay}) * ${millisecondsPerDay} AS day, sum(online_ms)::text AS online_ms
         FROM device_uptime_buckets WHERE device_id = $1 AND bucket_start_ms >= $2 GROUP BY 1 ORDER BY 1`,
        [deviceId, sinceMs],
      )
      return rows.map((row) => ({ dayStartMs: Number(row.day), onlineMs: Number(row.online_ms) }))
    },
  }
}
