import type { BandwidthTier } from '@gpumesh/core'
import type { EpochDeviceRecord } from '@gpumesh/rewards'
import type { SqlDriver } from './driver.ts'

// Reward epochs in the database: the measured records an epoch is computed from, and the stored plan (the
// epoch and its payouts) that the ledger transfers are made from. The computation itself is @gpumesh/rewards.

/** What was measured about a device over an epoch (the rewards computation's input), and its hostname. */
export type RewardEpochInputRecord = EpochDeviceRecord & { readonly hostname: string }

export type RewardPoolRecord = {
  readonly pool: 'gpu' | 'cpu'
  readonly shareBp: string
  readonly emissionUnits: string
  readonly paidUnits: string
  readonly totalScore: string
  readonly devicesPaid: number
}

export type RewardEpochRecord = {
  readonly epoch: number
  readonly startsAtMs: number
  readonly endsAtMs: number
  readonly policyVersion: string
  readonly emissionUnits: bigint
  readonly paidUnits: bigint
  readonly devicesConsidered: number
  readonly devicesEligible: number
  readonly devicesPaid: number
  readonly pools: readonly RewardPoolRecord[]
  readonly computedAtMs: number
  readonly paidAtMs: number | null
}

export type RewardFactorsRecord = {
  readonly hiredPpm: number
  readonly uptimePpm: number
  readonly bandwidthTier: string | null
  readonly bandwidthMilli: number
  readonly gpus: readonly {
    readonly modelKey: string
    readonly count: number
    readonly multiplierMilli: number
  }[]
  readonly hardwareMilli: number
  readonly hiredMilli: number
}

export type RewardPayoutRecord = {
  readonly epoch: number
  readonly deviceId: string
  readonly hostname: string
  readonly accountId: string
  readonly pool: 'gpu' | 'cpu'
  readonly eligible: boolean
  readonly ineligibleReasonCode: string | null
  readonly ineligibleReason: string | null
  readonly factors: RewardFactorsRecord
  readonly score: bigint
  readonly poolTotalScore: bigint
  readonly amountUnits: bigint
  readonly transferId: string | null
}

export type PaidAmount = {
  readonly deviceId: string
  readonly accountId: string
  readonly amountUnits: bigint
}

export type RewardStore = {
  /** What was measured about every device that could have been online in [startMs, endMs). */
  epochInputs(
    startMs: number,
    endMs: number,
    closeAtMs: number,
    verificationValidMs: number,
  ): Promise<RewardEpochInputRecord[]>
  /** Σ emission of every stored epoch. */
  totalEmitted(): Promise<bigint>
  /** Stores an epoch's plan, epoch and payouts in one transaction; false when it was already stored. */
  saveEpochPlan(epoch: RewardEpochRecord, payouts: readonly RewardPayoutRecord[]): Promise<boolean>
  markEpochPaid(epoch: number, paidAtMs: number): Promise<void>
  getEpoch(epoch: number): Promise<RewardEpochRecord | undefined>
  /** The newest stored epoch, if any. */
  latestEpoch(): Promise<RewardEpochRecord | undefined>
  listEpochs(limit: number, beforeEpoch?: number): Promise<RewardEpochRecord[]>
  /** Stored epochs whose transfers are not all known to be committed. */
  listUnpaidEpochs(): Promise<RewardEpochRecord[]>
  listEpochPayouts(epoch: number, limit: number, offset: number): Promise<RewardPayoutRecord[]>
  /** Who is paid what in an epoch (amounts above zero), for making its transfers. */
  listPaidAmounts(epoch: number): Promise<PaidAmount[]>
  listDevicePayouts(deviceId: string, limit: number): Promise<RewardPayoutRecord[]>
}

type EpochRow = {
  epoch: bigint
  starts_at_ms: bigint
  ends_at_ms: bigint
  policy_version: string
  emission_units: bigint
  paid_units: bigint
  devices_considered: number
  devices_eligible: number
  devices_paid: number
  pools: RewardPoolRecord[]
  computed_at_ms: bigint
  paid_at_ms: bigint | null
}
type PayoutRow = {
  epoch: bigint
  device_id: string
  hostname: string
  account_id: string
  pool: 'gpu' | 'cpu'
  eligible: boolean
  ineligible_reason_code: string | null
  ineligible_reason: string | null
  hired_ppm: number
  uptime_ppm: number
  bandwidth_tier: string | null
  bandwidth_milli: number
  hardware_milli: bigint
  hired_milli: number
  gpus: string
  score: string
  pool_total_score: string
  amount_units: bigint
  transfer_id: string | null
}

const toEpoch = (row: EpochRow): RewardEpochRecord => ({
  epoch: Number(row.epoch),
  startsAtMs: Number(row.starts_at_ms),
  endsAtMs: Number(row.ends_at_ms),
  policyVersion: row.policy_version,
  emissionUnits: row.emission_units,
  paidUnits: row.paid_units,
  devicesConsidered: row.devices_considered,
  devicesEligible: row.devices_eligible,
  devicesPaid: row.devices_paid,
  pools: row.pools,
  computedAtMs: Number(row.computed_at_ms),
  paidAtMs: row.paid_at_ms === null ? null : Number(row.paid_at_ms),
})
const toPayout = (row: PayoutRow): RewardPayoutRecord => ({
  epoch: Number(row.epoch),
  deviceId: row.device_id,
  hostname: row.hostname,
  accountId: row.account_id,
  pool: row.pool,
  eligible: row.eligible,
  ineligibleReasonCode: row.ineligible_reason_code,
  ineligibleReason: row.ineligible_reason,
  factors: {
    hiredPpm: row.hired_ppm,
    uptimePpm: row.uptime_ppm,
    bandwidthTier: row.bandwidth_tier,
    bandwidthMilli: row.bandwidth_milli,
    gpus: row.gpus
      .split(' ')
      .filter(Boolean)
      .map((entry) => {
        const [modelKey = '', count = '0', multiplierMilli = '0'] = entry.split(':')
        return { modelKey, count: Number(count), multiplierMilli: Number(multiplierMilli) }
      }),
    hardwareMilli: Number(row.hardware_milli),
    hiredMilli: row.hired_milli,
  },
  // NUMERIC arrives as text from both drivers: scores can pass 2^63.
  score: BigInt(row.score),
  poolTotalScore: BigInt(row.pool_total_score),
  amountUnits: row.amount_units,
  transferId: row.transfer_id,
})

const payoutColumns = `p.epoch, p.device_id, d.hostname, p.account_id, p.pool, p.eligible, p.ineligible_reason_code,
  p.ineligible_reason, p.hired_ppm, p.uptime_ppm, p.bandwidth_tier, p.bandwidth_milli, p.hardware_milli, p.hired_milli,
  p.gpus, p.score::text AS score, p.pool_total_score::text AS pool_total_score, p.amount_units,
  p.transfer_id`

/** Rows per INSERT: 100,000 payouts are a few statements, not 100,000. */
const insertChunkRows = 10_000

export function createRewardStore(driver: SqlDriver): RewardStore {
  return {
    async epochInputs(startMs, endMs, closeAtMs, verificationValidMs) {
      // Every device that was enrolled before the epoch ended and seen after it started, or online now, with
      // its GPU models (grouped once: a subquery per device took 2 s for 100,000 devices).
      const devices = await driver.query<{
        id: string
        account_id: string
        hostname: string
        state: string
        state_changed_at_ms: bigint
        bandwidth_tier: BandwidthTier | null
        gpu_model_keys: string[] | null
      }>(
        `WITH gpus AS (SELECT device_id, array_agg(model_key ORDER BY gpu_index) AS keys FROM device_gpus GROUP BY device_id)
         SELECT d.id, d.account_id, d.hostname, d.state, d.state_changed_at_ms, d.bandwidth_tier, g.keys AS gpu_model_keys
         FROM devices d LEFT JOIN gpus g ON g.device_id = d.id
         WHERE d.enrolled_at_ms < $2 AND (d.state = 'online' OR d.last_seen_at_ms >= $1 OR d.state_changed_at_ms >= $1)
         ORDER BY d.id`,
        [startMs, endMs],
      )
      // The state each device was in when the epoch started. A device whose state last changed before then is
      // still in it (every change sets state_changed_at_ms with its event); only the others are looked up.
      const before = await driver.query<{ device_id: string; state: string }>(
        `SELECT d.id AS device_id, prev.state FROM devices d
         CROSS JOIN LATERAL (SELECT e.state FROM device_events e WHERE e.device_id = d.id AND e.at_ms < $1
                             ORDER BY e.id DESC LIMIT 1) prev
         WHERE d.state_changed_at_ms >= $1 AND d.enrolled_at_ms < $2`,
        [startMs, endMs],
      )
      const changes = await driver.query<{ device_id: string; state: string; at_ms: bigint }>(
        `SELECT device_id, state, at_ms FROM device_events WHERE at_ms >= $1 AND at_ms < $2 ORDER BY device_id, id`,
        [startMs, endMs],
      )
      const hired = await driver.query<{
        device_id: string
        started_at_ms: bigint
        ended_at_ms: bigint | null
      }>(
        `SELECT device_id, started_at_ms, ended_at_ms FROM cluster_node_service
         WHERE started_at_ms < $2 AND (ended_at_ms IS NULL OR ended_at_ms > $1)`,
        [startMs, endMs],
      )
      const passed = await driver.query<{ device_id: string; at_ms: bigint }>(
        `SELECT device_id, max(finished_at_ms) AS at_ms FROM verification_challenges
         WHERE outcome = 'passed' AND finished_at_ms <= $1 AND finished_at_ms > $2 GROUP BY device_id`,
        [endMs, endMs - verificationValidMs],
      )
      const failed = await driver.query<{ device_id: string; at_ms: bigint; reason: string }>(
        `SELECT DISTINCT ON (device_id) device_id, finished_at_ms AS at_ms, reason FROM verification_challenges
         WHERE outcome = 'failed' AND coalesce(reason_code, '') <> 'disconnected'
           AND finished_at_ms >= $1 AND finished_at_ms <= $2
         ORDER BY device_id, finished_at_ms DESC`,
        [startMs, closeAtMs],
      )

      const changedSince = new Map(before.map((row) => [row.device_id, row.state]))
      const stateAtStartOf = (device: (typeof devices)[number]) =>
        Number(device.state_changed_at_ms) < startMs ? device.state : changedSince.get(device.id)
      const changesOf = groupBy(changes, (row) => row.device_id)
      const hiredOf = groupBy(hired, (row) => row.device_id)
      const passedAt = new Map(passed.map((row) => [row.device_id, Number(row.at_ms)]))
      const failedOf = new Map(failed.map((row) => [row.device_id, row]))
      return devices.map((device) => {
        const onlineIntervals: [number, number][] = []
        let onlineSince = stateAtStartOf(device) === 'online' ? startMs : null
        for (const change of changesOf.get(device.id) ?? []) {
          const atMs = Number(change.at_ms)
          if (change.state === 'online') onlineSince ??= atMs
          else if (onlineSince !== null) {
            onlineIntervals.push([onlineSince, atMs])
            onlineSince = null
          }
        }
        // Still online at the epoch's end: online until then (the close runs after it).
        if (onlineSince !== null) onlineIntervals.push([onlineSince, endMs])
        const failure = failedOf.get(device.id)
        return {
          deviceId: device.id,
          accountId: device.account_id,
          hostname: device.hostname,
          blocked: device.state === 'blocked',
          lastPassedVerificationAtMs: passedAt.get(device.id) ?? null,
          failedSpotCheck: failure ? { atMs: Number(failure.at_ms), reason: failure.reason } : null,
          onlineIntervals,
          hiredIntervals: (hiredOf.get(device.id) ?? []).map((period): [number, number] => [
            Number(period.started_at_ms),
            period.ended_at_ms === null ? endMs : Number(period.ended_at_ms),
          ]),
          bandwidthTier: device.bandwidth_tier,
          gpuModelKeys: device.gpu_model_keys ?? [],
        }
      })
    },

    async totalEmitted() {
      const rows = await driver.query<{ total: string | null }>(
        'SELECT sum(emission_units)::text AS total FROM reward_epochs',
      )
      return BigInt(rows[0]?.total ?? '0')
    },

    async saveEpochPlan(epoch, payouts) {
      return driver.transaction(async (tx) => {
        const inserted = await tx.execute(
          `INSERT INTO reward_epochs (epoch, starts_at_ms, ends_at_ms, policy_version, emission_units, paid_units,
             devices_considered, devices_eligible, devices_paid, pools, computed_at_ms, paid_at_ms)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL) ON CONFLICT (epoch) DO NOTHING`,
          [
            epoch.epoch,
            epoch.startsAtMs,
            epoch.endsAtMs,
            epoch.policyVersion,
            epoch.emissionUnits,
            epoch.paidUnits,
            epoch.devicesConsidered,
            epoch.devicesEligible,
            epoch.devicesPaid,
            JSON.stringify(epoch.pools),
            epoch.computedAtMs,
          ],
        )
        if (inserted === 0) return false
        for (let offset = 0; offset < payouts.length; offset += insertChunkRows) {
          const chunk = payouts.slice(offset, offset + insertChunkRows)
          // One array per column, unnested: several times faster than a row per VALUES tuple or a JSON document.
          await tx.execute(
            `INSERT INTO reward_payouts (epoch, device_id, account_id, pool, eligible, ineligible_reason_code,
               ineligible_reason, hired_ppm, uptime_ppm, bandwidth_tier, bandwidth_milli, hardware_milli, hired_milli, gpus,
               score, pool_total_score, amount_units, transfer_id)
             SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::boolean[], $6::text[], $7::text[],
               $8::integer[], $9::integer[], $10::text[], $11::integer[], $12::bigint[], $13::integer[], $14::text[],
               $15::numeric[], $16::numeric[], $17::bigint[], $18::text[])`,
            [
              epoch.epoch,
              chunk.map((payout) => payout.deviceId),
              chunk.map((payout) => payout.accountId),
              chunk.map((payout) => payout.pool),
              chunk.map((payout) => payout.eligible),
              chunk.map((payout) => payout.ineligibleReasonCode),
              chunk.map((payout) => payout.ineligibleReason),
              chunk.map((payout) => payout.factors.hiredPpm),
              chunk.map((payout) => payout.factors.uptimePpm),
              chunk.map((payout) => payout.factors.bandwidthTier),
              chunk.map((payout) => payout.factors.bandwidthMilli),
              chunk.map((payout) => payout.factors.hardwareMilli),
              chunk.map((payout) => payout.factors.hiredMilli),
              chunk.map((payout) =>
                payout.factors.gpus
                  .map((gpu) => `${gpu.modelKey}:${gpu.count}:${gpu.multiplierMilli}`)
                  .join(' '),
              ),
              chunk.map((payout) => payout.score.toString()),
              chunk.map((payout) => payout.poolTotalScore.toString()),
              chunk.map((payout) => payout.amountUnits.toString()),
              chunk.map((payout) => payout.transferId),
            ],
          )
        }
        return true
      })
    },

    async markEpochPaid(epoch, paidAtMs) {
      await driver.execute(
        'UPDATE reward_epochs SET paid_at_ms = $2 WHERE epoch = $1 AND paid_at_ms IS NULL',
        [epoch, paidAtMs],
      )
    },

    async getEpoch(epoch) {
      const rows = await driver.query<EpochRow>('SELECT * FROM reward_epochs WHERE epoch = $1', [epoch])
      return rows[0] && toEpoch(rows[0])
    },

    async latestEpoch() {
      const rows = await driver.query<EpochRow>('SELECT * FROM reward_epochs ORDER BY epoch DESC LIMIT 1')
      return rows[0] && toEpoch(rows[0])
    },

    async listEpochs(limit, beforeEpoch) {
      const rows = await driver.query<EpochRow>(
        `SELECT * FROM reward_epochs WHERE ($2::bigint IS NULL OR epoch < $2) ORDER BY epoch DESC LIMIT $1`,
        [limit, beforeEpoch ?? null],
      )
      return rows.map(toEpoch)
    },

    async listUnpaidEpochs() {
      const rows = await driver.query<EpochRow>(
        'SELECT * FROM reward_epochs WHERE paid_at_ms IS NULL ORDER BY epoch',
      )
      return rows.map(toEpoch)
    },

    async listEpochPayouts(epoch, limit, offset) {
      const rows = await driver.query<PayoutRow>(
        `SELECT ${payoutColumns} FROM reward_payouts p JOIN devices d ON d.id = p.device_id
         WHERE p.epoch = $1 ORDER BY p.amount_units DESC, p.device_id LIMIT $2 OFFSET $3`,
        [epoch, limit, offset],
      )
      return rows.map(toPayout)
    },

    async listPaidAmounts(epoch) {
      const rows = await driver.query<{ device_id: string; account_id: string; amount_units: bigint }>(
        `SELECT device_id, account_id, amount_units FROM reward_payouts
         WHERE epoch = $1 AND amount_units > 0 ORDER BY device_id`,
        [epoch],
      )
      return rows.map((row) => ({
        deviceId: row.device_id,
        accountId: row.account_id,
        amountUnits: row.amount_units,
      }))
    },

    async listDevicePayouts(deviceId, limit) {
      const rows = await driver.query<PayoutRow>(
        `SELECT ${payoutColumns} FROM reward_payouts p JOIN devices d ON d.id = p.device_id
         WHERE p.device_id = $1 ORDER BY p.epoch DESC LIMIT $2`,
        [deviceId, limit],
      )
      return rows.map(toPayout)
    },
  }
}

function groupBy<T>(rows: readonly T[], keyOf: (row: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>()
  for (const row of rows) {
    const key = keyOf(row)
    const group = groups.get(key)
    if (group) group.push(row)
    else groups.set(key, [row])
  }
  return groups
}
