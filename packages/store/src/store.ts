import { createModelRegistry, type ModelRegistry } from './model-store.ts'
import { createInferenceStore, type InferenceStore } from './inference-store.ts'
import { createRewardStore, type RewardStore } from './reward-store.ts'
import { createChainStore, type ChainStore } from './chain-store.ts'
import { createExplorerStore, type ExplorerStore } from './explorer-store.ts'
import type {
  BandwidthTier,
  DevicePricing,
  DeviceState,
  PricingMode,
  Role,
  StateReasonCode,
  VerificationState,
} from '@gpumesh/core'
import type { HardwareInventory, WorkerCapabilities } from '@gpumesh/protocol'
import type { SqlDriver, SqlExecutor } from './driver.ts'
import { migrate } from './migrate.ts'
import { createLedgerStore, type LedgerStore } from './ledger-store.ts'
import { retryWhen } from './retry.ts'
import type {
  ClusterDesired,
  ClusterEventRecord,
  ClusterJobPatch,
  ClusterJobRecord,
  ClusterNodePatch,
  ClusterNodePhase,
  ClusterNodeRecord,
  ClusterNodeServicePeriod,
  ClusterBillingPatch,
  ClusterNodeRole,
  ClusterPatch,
  ClusterRecord,
  ClusterState,
  JobLogChunk,
  JobStatus,
  NewCluster,
  NewClusterEvent,
  NewClusterOutcome,
  ClusterClientRecord,
} from '@gpumesh/clusters/records'
import { firstClientAddressIndex, maxClusterClients } from '@gpumesh/clusters/records'
import {
  mergeFlushEntries,
  type DeviceStateChange,
  type HeartbeatFlushEntry,
  type UptimeBucket,
} from '@gpumesh/presence/records'
import type {
  AccountRecord,
  ApiKeyRecord,
  DeviceEventRecord,
  DeviceRecord,
  DeviceReport,
  EnrollmentTokenRecord,
  EnrollOutcome,
  EnrollRequest,
  GpuUuidConflict,
  ChallengeRecord,
  GangReservation,
  GangReservationOutcome,
  SpeedtestRecord,
  VerificationOutcome,
} from './records.ts'

// The coordinator's only door to the database. Every query here is plain PostgreSQL that PGlite runs too.

export interface Store {
  readonly kind: SqlDriver['kind']
  /** The double-entry ledger, on the same database. */
  readonly ledger: LedgerStore
  readonly rewards: RewardStore
  readonly explorer: ExplorerStore
  readonly models: ModelRegistry
  readonly inference: InferenceStore
  /** The chain settlement adapter's bookkeeping (deposit addresses, signed transactions). */
  readonly chain: ChainStore
  createAccount(account: AccountRecord): Promise<void>
  getAccount(id: string): Promise<AccountRecord | undefined>
  countAccountsWithRole(role: Role): Promise<number>

  insertApiKey(key: ApiKeyRecord): Promise<void>
  getApiKey(id: string): Promise<ApiKeyRecord | undefined>
  listApiKeys(accountId: string): Promise<ApiKeyRecord[]>
  /** False when the key does not exist or belongs to another account. Revoking twice keeps the first time. */
  revokeApiKey(accountId: string, keyId: string, nowMs: number): Promise<boolean>
  /** Records use coarsely: at most one write per key per `minIntervalMs`. */
  touchApiKey(keyId: string, nowMs: number, minIntervalMs: number): Promise<void>

  insertEnrollmentToken(token: EnrollmentTokenRecord): Promise<void>
  listEnrollmentTokens(accountId: string): Promise<EnrollmentTokenRecord[]>
  enroll(request: EnrollRequest): Promise<EnrollOutcome>

  getDevice(id: string): Promise<DeviceRecord | undefined>
  listDevices(accountId: string): Promise<DeviceRecord[]>
  /** Devices changed after `afterSeq`, oldest change first: how each process keeps its search index fresh. */
  listDevicesChangedSince(afterSeq: bigint, limit: number): Promise<DeviceRecord[]>
  applyDeviceStateChanges(changes: readonly DeviceStateChange[]): Promise<void>
  saveDeviceReport(deviceId: string, report: DeviceReport): Promise<void>
  /** What the device's self-test found (or the coordinator learned: a suspended capability); false when unknown. */
  /** Null: not known (a new session has not reported yet). */
  setDeviceCapabilities(deviceId: string, capabilities: WorkerCapabilities | null): Promise<boolean>
  /** The supplier's pricing for a device, set through the API; false when there is no such device. */
  setDevicePricing(deviceId: string, pricing: DevicePricing): Promise<boolean>
  flushHeartbeats(entries: readonly HeartbeatFlushEntry[]): Promise<void>
  /** Online devices not seen since `cutoffMs` (their coordinator process died): marks them offline. */
  sweepSilentDevices(cutoffMs: number, nowMs: number, reason: string): Promise<string[]>
  /**
   * Recomputes reliability from uptime buckets over [nowMs - windowMs, nowMs]: the share of the device's time
   * in that window (since enrollment, if later) it was online. NULL ("new") while that time is under
   * `minHistoryMs`. Returns how many devices changed.
   */
  refreshReliability(nowMs: number, windowMs: number, minHistoryMs: number): Promise<number>
  listDeviceEvents(deviceId: string, limit: number): Promise<DeviceEventRecord[]>
  listUptimeBuckets(deviceId: string, sinceMs: number): Promise<UptimeBucket[]>
  setDeviceVerification(deviceId: string, state: VerificationState, reason: string): Promise<void>
  setDeviceBandwidthTier(deviceId: string, tier: BandwidthTier | null): Promise<void>

  /** Online devices other than `deviceId` that report one of its GPU UUIDs. */
  findGpuUuidConflicts(deviceId: string): Promise<GpuUuidConflict[]>
  insertChallenge(challenge: ChallengeRecord): Promise<void>
  updateChallenge(challenge: ChallengeRecord): Promise<void>
  listChallenges(deviceId: string, limit: number): Promise<ChallengeRecord[]>
  recordVerificationOutcome(deviceId: string, outcome: VerificationOutcome): Promise<void>
  /** All of a cluster's devices or none: a gang is never split, a device never held twice. */
  reserveGang(reservation: GangReservation): Promise<GangReservationOutcome>
  releaseReservations(clusterId: string): Promise<string[]>
  listReservedDeviceIds(): Promise<string[]>
  insertSpeedtestResult(result: SpeedtestRecord): Promise<void>
  listSpeedtestResults(deviceId: string, limit: number): Promise<SpeedtestRecord[]>

  /**
   * Writes the cluster (state 'pending', desired 'running'), its nodes (phase 'reserved', node_index 0..n-1 in
   * deviceIds order, role 'head' for index 0 else 'worker'), their device reservations and the lowest free
   * subnet index, in one transaction: all or nothing. Throws when a device id is listed twice.
   */
  createCluster(input: NewCluster): Promise<NewClusterOutcome>
  getCluster(id: string): Promise<ClusterRecord | undefined>
  /** An account's clusters, newest first. */
  listClusters(accountId: string, limit: number): Promise<ClusterRecord[]>
  /** Clusters whose state is not terminated or failed, oldest first. */
  listActiveClusters(): Promise<ClusterRecord[]>
  /**
   * Applies the patch and sets updated_at_ms. A cluster whose state becomes terminated or failed frees, in the
   * same transaction, its subnet and every reservation it holds, and its nodes not yet lost or released become
   * released at `nowMs`. Throws for an unknown id.
   */
  updateCluster(id: string, patch: ClusterPatch, nowMs: number): Promise<ClusterRecord>
  /** Ordered by node_index. */
  listClusterNodes(clusterId: string): Promise<ClusterNodeRecord[]>
  /**
   * A node that is lost or released keeps its phase and phase reason (a late report cannot bring it back
   * without its reservation); leave with releaseClusterNode. Throws for an unknown node.
   */
  /**
   * A node entering ray_joined opens a service period at nowMs; leaving it closes the open one, in the same
   * transaction.
   */
  updateClusterNode(
    clusterId: string,
    deviceId: string,
    patch: ClusterNodePatch,
    nowMs: number,
  ): Promise<void>
  /** The periods each node of the cluster was serving, oldest first. */
  listClusterNodeService(clusterId: string): Promise<ClusterNodeServicePeriod[]>
  /**
   * Reserves the device for the cluster and adds it as a node with node_index = max(existing)+1, phase
   * 'reserved', in one transaction. Undefined, and nothing written, when the device is already held by any
   * cluster, is already a node (any phase) of this cluster, or the cluster has ended. Throws for an unknown
   * cluster.
   */
  addClusterNode(input: {
    clusterId: string
    accountId: string
    deviceId: string
    role: ClusterNodeRole
    nowMs: number
    /** What the renter pays for this node per hour; absent: 0. */
    pricePerHourMicroUsd?: bigint
  }): Promise<ClusterNodeRecord | undefined>
  /**
   * Sets the node's phase, phase reason and left_at_ms, closes its open service period, and deletes its device
   * reservation if this cluster holds it, in one transaction. Idempotent: a node already lost or released
   * keeps its first values. `servedUntilMs` (at most nowMs) ends the service period earlier: when the node's
   * worker went silent, not when that was noticed.
   */
  releaseClusterNode(
    clusterId: string,
    deviceId: string,
    phase: 'lost' | 'released',
    reason: string,
    nowMs: number,
    servedUntilMs?: number,
  ): Promise<void>
  /** Nodes on this device in clusters not terminated or failed, whose phase is not lost or released. */
  /**
   * Joins a renter's machine to the cluster's mesh at the lowest free client address; the same key again
   * returns its existing record. Undefined when the cluster has ended or every client address is taken.
   */
  addClusterClient(input: {
    clusterId: string
    publicKey: string
    name: string
    nowMs: number
  }): Promise<ClusterClientRecord | undefined>
  /** Clients not removed, by address. */
  listClusterClients(clusterId: string): Promise<ClusterClientRecord[]>
  /** False when there was no such client. */
  removeClusterClient(clusterId: string, publicKey: string, nowMs: number): Promise<boolean>
  listActiveClusterNodesOnDevice(deviceId: string): Promise<ClusterNodeRecord[]>
  /** Records the cluster's current hold and the intervals charged (after the ledger has them). */
  updateClusterBilling(clusterId: string, patch: ClusterBillingPatch): Promise<ClusterRecord>
  /** Within one cluster, seq order is commit order: a reader that saw seq s never later finds one below s. */
  appendClusterEvents(events: readonly NewClusterEvent[]): Promise<void>
  /** Events with seq > afterSeq, oldest first. */
  listClusterEvents(clusterId: string, afterSeq: bigint, limit: number): Promise<ClusterEventRecord[]>
  insertJob(job: ClusterJobRecord): Promise<void>
  getJob(jobId: string): Promise<ClusterJobRecord | undefined>
  /** Newest first. */
  listJobs(clusterId: string, limit: number): Promise<ClusterJobRecord[]>
  /**
   * A job in a terminal status (succeeded, failed, stopped) never changes status again: a patch that would is
   * a stale report and changes nothing. Returns the record after the update; undefined for an unknown id.
   */
  updateJob(jobId: string, patch: ClusterJobPatch): Promise<ClusterJobRecord | undefined>
  /** Appends one chunk with seq = previous max + 1 (starting at 1), atomically; returns its seq. */
  appendJobLog(jobId: string, text: string): Promise<number>
  /** Chunks with seq > afterSeq, oldest first. */
  readJobLog(jobId: string, afterSeq: number, limit: number): Promise<JobLogChunk[]>
  /** Removes a job in a terminal status and its log; false when it is unknown or still active. */
  deleteJob(jobId: string): Promise<boolean>

  close(): Promise<void>
}

export type StoreComponents = { readonly driver: SqlDriver }

/** Runs pending migrations, then returns the store. */
export async function createStore(components: StoreComponents): Promise<Store> {
  await migrate(components.driver)
  return new SqlStore(components.driver)
}

type AccountRow = { id: string; name: string; roles: Role[]; created_at_ms: bigint }
type ApiKeyRow = {
  id: string
  account_id: string
  name: string
  roles: Role[]
  secret_sha256: string
  created_at_ms: bigint
  last_used_at_ms: bigint | null
  revoked_at_ms: bigint | null
}
type EnrollmentTokenRow = {
  id: string
  account_id: string
  label: string | null
  secret_sha256: string
  created_at_ms: bigint
  expires_at_ms: bigint
  used_at_ms: bigint | null
  used_by_public_key: string | null
  device_id: string | null
}
type DeviceRow = {
  id: string
  account_id: string
  public_key: string
  hostname: string
  state: DeviceState
  state_reason_code: StateReasonCode
  state_reason: string
  state_changed_at_ms: bigint
  verification_state: VerificationState
  verification_reason: string
  region: string | null
  country: string | null
  asking_price_micro_usd: bigint | null
  pricing_mode: PricingMode
  bandwidth_tier: BandwidthTier | null
  inventory: HardwareInventory | null
  enrolled_at_ms: bigint
  last_seen_at_ms: bigint | null
  uptime_ms_total: bigint
  reliability: number | null
  change_seq: bigint
  verification_failures: number
  next_verification_at_ms: bigint
  measured_fp32_tflops: number | null
  reserved_by_cluster_id: string | null
  capabilities: WorkerCapabilities | null
}

/** Selected FROM devices (unaliased): the reservation comes along, so every DeviceRecord says who holds it. */
const deviceColumns = `id, account_id, public_key, hostname, state, state_reason_code, state_reason, state_changed_at_ms,
  verification_state, verification_reason, region, country, asking_price_micro_usd, pricing_mode, bandwidth_tier, inventory,
  enrolled_at_ms, last_seen_at_ms, uptime_ms_total, reliability, change_seq, verification_failures,
  next_verification_at_ms, measured_fp32_tflops, capabilities,
  (SELECT r.cluster_id FROM device_reservations r WHERE r.device_id = devices.id) AS reserved_by_cluster_id`

class SqlStore implements Store {
  readonly kind: SqlDriver['kind']
  readonly ledger: LedgerStore
  readonly rewards: RewardStore
  readonly explorer: ExplorerStore
  readonly models: ModelRegistry
  readonly inference: InferenceStore
  readonly chain: ChainStore
  readonly #driver: SqlDriver

  constructor(driver: SqlDriver) {
    this.#driver = driver
    this.kind = driver.kind
    this.ledger = createLedgerStore(driver)
    this.rewards = createRewardStore(driver)
    this.explorer = createExplorerStore(driver)
    this.models = createModelRegistry(driver)
    this.inference = createInferenceStore(driver, this.ledger)
    this.chain = createChainStore(driver, this.ledger)
  }

  async createAccount(account: AccountRecord): Promise<void> {
    await this.#driver.execute(
      'INSERT INTO accounts (id, name, roles, created_at_ms) VALUES ($1, $2, $3, $4)',
      [account.id, account.name, account.roles, account.createdAtMs],
    )
  }

  async getAccount(id: string): Promise<AccountRecord | undefined> {
    const rows = await this.#driver.query<AccountRow>('SELECT * FROM accounts WHERE id = $1', [id])
    return rows[0] && toAccount(rows[0])
  }

  async countAccountsWithRole(role: Role): Promise<number> {
    const rows = await this.#driver.query<{ count: bigint }>(
      'SELECT count(*)::bigint AS count FROM accounts WHERE $1 = ANY (roles)',
      [role],
    )
    return Number(rows[0]?.count ?? 0n)
  }

  async insertApiKey(key: ApiKeyRecord): Promise<void> {
    await this.#driver.execute(
      `INSERT INTO api_keys (id, account_id, name, roles, secret_sha256, created_at_ms, last_used_at_ms, revoked_at_ms)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
      [
        key.id,
        key.accountId,
        key.name,
        key.roles,
        key.secretSha256,
        key.createdAtMs,
        key.lastUsedAtMs,
        key.revokedAtMs,
      ],
    )
  }

  async getApiKey(id: string): Promise<ApiKeyRecord | undefined> {
    const rows = await this.#driver.query<ApiKeyRow>('SELECT * FROM api_keys WHERE id = $1', [id])
    return rows[0] && toApiKey(rows[0])
  }

  async listApiKeys(accountId: string): Promise<ApiKeyRecord[]> {
    const rows = await this.#driver.query<ApiKeyRow>(
      'SELECT * FROM api_keys WHERE account_id = $1 ORDER BY created_at_ms, id',
      [accountId],
    )
    return rows.map(toApiKey)
  }

  async revokeApiKey(accountId: string, keyId: string, nowMs: number): Promise<boolean> {
    const rows = await this.#driver.query<{ id: string }>(
      `UPDATE api_keys SET revoked_at_ms = COALESCE(revoked_at_ms, $3)
       WHERE id = $1 AND account_id = $2 RETURNING id`,
      [keyId, accountId, nowMs],
    )
    return rows.length > 0
  }

  async touchApiKey(keyId: string, nowMs: number, minIntervalMs: number): Promise<void> {
    await this.#driver.execute(
      `UPDATE api_keys SET last_used_at_ms = $2
       WHERE id = $1 AND (last_used_at_ms IS NULL OR last_used_at_ms < $3)`,
      [keyId, nowMs, nowMs - minIntervalMs],
    )
  }

  async insertEnrollmentToken(token: EnrollmentTokenRecord): Promise<void> {
    await this.#driver.execute(
      `INSERT INTO enrollment_tokens (id, account_id, label, secret_sha256, created_at_ms, expires_at_ms)
       VALUES ($1, $2, $3, $4, $5, $6)`,
      [token.id, token.accountId, token.label, token.secretSha256, token.createdAtMs, token.expiresAtMs],
    )
  }

  async listEnrollmentTokens(accountId: string): Promise<EnrollmentTokenRecord[]> {
    const rows = await this.#driver.query<EnrollmentTokenRow>(
      'SELECT * FROM enrollment_tokens WHERE account_id = $1 ORDER BY created_at_ms DESC, id',
      [accountId],
    )
    return rows.map(toEnrollmentToken)
  }

  enroll(request: EnrollRequest): Promise<EnrollOutcome> {
    return this.#driver.transaction(async (tx) => {
      // One enrollment per key at a time: two tokens presented at once with a new key would otherwise both
      // find no device and both insert one (PostgreSQL: a unique violation, a 500).
      await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', ['enroll:' + request.publicKey])
      const tokens = await tx.query<EnrollmentTokenRow>(
        'SELECT * FROM enrollment_tokens WHERE id = $1 AND secret_sha256 = $2 FOR UPDATE',
        [request.tokenId, request.tokenSecretSha256],
      )
      const token = tokens[0]
      if (!token) return { ok: false, reason: 'unknown_token' }
      // The same worker retrying after a lost reply gets the same answer; anyone else is refused.
      if (token.used_at_ms !== null) {
        if (token.used_by_public_key === request.publicKey && token.device_id !== null) {
          return { ok: true, deviceId: token.device_id, accountId: token.account_id, reenrolled: true }
        }
        return { ok: false, reason: 'already_used' }
      }
      if (Number(token.expires_at_ms) <= request.nowMs) return { ok: false, reason: 'expired' }

      const existing = await tx.query<{ id: string; account_id: string }>(
        'SELECT id, account_id FROM devices WHERE public_key = $1 FOR UPDATE',
        [request.publicKey],
      )
      const known = existing[0]
      if (known && known.account_id !== token.account_id) return { ok: false, reason: 'key_of_other_account' }
      // A known key needs no token: it gets its device back and the token stays unused, so one machine
      // presenting several tokens (at once or in turn) uses one.
      if (known) return { ok: true, deviceId: known.id, accountId: token.account_id, reenrolled: true }
      const deviceId = request.newDeviceId
      await tx.execute(
        `INSERT INTO devices (id, account_id, public_key, hostname, state, state_reason_code, state_reason,
           state_changed_at_ms, enrolled_at_ms)
         VALUES ($1, $2, $3, '', 'offline', 'enrolled', 'enrolled; waiting for the worker to connect', $4, $4)`,
        [deviceId, token.account_id, request.publicKey, request.nowMs],
      )
      await insertEvent(tx, {
        deviceId,
        state: 'offline',
        reasonCode: 'enrolled',
        reason: 'enrolled; waiting for the worker to connect',
        atMs: request.nowMs,
      })
      await tx.execute(
        'UPDATE enrollment_tokens SET used_at_ms = $2, used_by_public_key = $3, device_id = $4 WHERE id = $1',
        [token.id, request.nowMs, request.publicKey, deviceId],
      )
      return { ok: true, deviceId, accountId: token.account_id, reenrolled: false }
    })
  }

  async getDevice(id: string): Promise<DeviceRecord | undefined> {
    const rows = await this.#driver.query<DeviceRow>(`SELECT ${deviceColumns} FROM devices WHERE id = $1`, [
      id,
    ])
    return rows[0] && toDevice(rows[0])
  }

  async listDevices(accountId: string): Promise<DeviceRecord[]> {
    const rows = await this.#driver.query<DeviceRow>(
      `SELECT ${deviceColumns} FROM devices WHERE account_id = $1 ORDER BY enrolled_at_ms, id`,
      [accountId],
    )
    return rows.map(toDevice)
  }

  async listDevicesChangedSince(afterSeq: bigint, limit: number): Promise<DeviceRecord[]> {
    const rows = await this.#driver.query<DeviceRow>(
      `SELECT ${deviceColumns} FROM devices WHERE change_seq > $1 ORDER BY change_seq LIMIT $2`,
      [afterSeq, limit],
    )
    return rows.map(toDevice)
  }

  async applyDeviceStateChanges(changes: readonly DeviceStateChange[]): Promise<void> {
    if (changes.length === 0) return
    const ordered = [...changes].sort((a, b) => a.atMs - b.atMs)
    await this.#driver.transaction(async (tx) => {
      for (const change of ordered) {
        // A change older than the one recorded (a retried write, another process's stale session) loses.
        // Going online also records the time seen, so a sweep running meanwhile cannot flip it back.
        const applied = await tx.execute(
          `UPDATE devices SET state = $2, state_reason_code = $3, state_reason = $4, state_changed_at_ms = $5,
             last_seen_at_ms = CASE WHEN $2 = 'online' THEN GREATEST(COALESCE(last_seen_at_ms, 0), $5) ELSE last_seen_at_ms END,
             change_seq = nextval('device_change_seq')
           WHERE id = $1 AND state_changed_at_ms <= $5`,
          [change.deviceId, change.state, change.reasonCode, change.reason, change.atMs],
        )
        if (applied > 0) await insertEvent(tx, change)
      }
    })
  }

  async setDevicePricing(deviceId: string, pricing: DevicePricing): Promise<boolean> {
    const updated = await this.#driver.execute(
      `UPDATE devices SET asking_price_micro_usd = $2, pricing_mode = $3, change_seq = nextval('device_change_seq')
       WHERE id = $1`,
      [deviceId, pricing.askingPriceMicroUsd, pricing.mode],
    )
    return updated > 0
  }

  async setDeviceCapabilities(deviceId: string, capabilities: WorkerCapabilities | null): Promise<boolean> {
    const updated = await this.#driver.execute(
      `UPDATE devices SET capabilities = $2, change_seq = nextval('device_change_seq') WHERE id = $1`,
      [deviceId, capabilities],
    )
    return updated > 0
  }

  async saveDeviceReport(deviceId: string, report: DeviceReport): Promise<void> {
    const gpus = report.inventory.gpus
    await this.#driver.transaction(async (tx) => {
      await tx.execute(
        `UPDATE devices SET hostname = $2, inventory = $3, region = $4, country = $5,
           asking_price_micro_usd = CASE WHEN $7::text IS NULL THEN asking_price_micro_usd ELSE $6 END,
           pricing_mode = COALESCE($7, pricing_mode),
           capabilities = COALESCE($8, capabilities),
           change_seq = nextval('device_change_seq')
         WHERE id = $1`,
        [
          deviceId,
          report.hostname,
          report.inventory,
          report.region,
          report.country,
          report.pricing?.askingPriceMicroUsd ?? null,
          report.pricing?.mode ?? null,
          report.capabilities ?? null,
        ],
      )
      await tx.execute('DELETE FROM device_gpus WHERE device_id = $1', [deviceId])
      if (gpus.length > 0) {
        await tx.execute(
          `INSERT INTO device_gpus (device_id, uuid, gpu_index, model_key, vram_mib)
           SELECT $1, uuid, gpu_index, model_key, vram_mib
           FROM unnest($2::text[], $3::int[], $4::text[], $5::int[]) AS g(uuid, gpu_index, model_key, vram_mib)
           ON CONFLICT DO NOTHING`,
          [
            deviceId,
            gpus.map((gpu) => gpu.uuid),
            gpus.map((gpu) => gpu.index),
            gpus.map((gpu) => gpu.modelKey),
            gpus.map((gpu) => gpu.vramMib),
          ],
        )
      }
    })
  }

  async flushHeartbeats(flushEntries: readonly HeartbeatFlushEntry[]): Promise<void> {
    let entries = flushEntries
    if (entries.length === 0) return
    // UPDATE ... FROM unnest applies one source row per target row: duplicates must be summed first.
    entries = mergeFlushEntries(entries)
    const bucketDeviceIds: string[] = []
    const bucketStarts: number[] = []
    const bucketOnline: number[] = []
    const uptimeAdded = new Map<string, number>()
    for (const entry of entries) {
      let added = 0
      for (const bucket of entry.uptimeBuckets) {
        bucketDeviceIds.push(entry.deviceId)
        bucketStarts.push(bucket.bucketStartMs)
        bucketOnline.push(bucket.onlineMs)
        added += bucket.onlineMs
      }
      uptimeAdded.set(entry.deviceId, added)
    }
    await this.#driver.transaction(async (tx) => {
      // Sorted ids keep lock order stable across concurrent flushes from several processes.
      const sorted = [...entries].sort((a, b) =>
        a.deviceId < b.deviceId ? -1 : a.deviceId > b.deviceId ? 1 : 0,
      )
      await tx.execute(
        `UPDATE devices AS d SET last_seen_at_ms = GREATEST(COALESCE(d.last_seen_at_ms, 0), u.last_seen),
           uptime_ms_total = d.uptime_ms_total + u.added
         FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS u(id, last_seen, added)
         WHERE d.id = u.id`,
        [
          sorted.map((entry) => entry.deviceId),
          sorted.map((entry) => entry.lastSeenAtMs),
          sorted.map((entry) => uptimeAdded.get(entry.deviceId) ?? 0),
        ],
      )
      if (bucketDeviceIds.length > 0) {
        await tx.execute(
          `INSERT INTO device_uptime_buckets (device_id, bucket_start_ms, online_ms)
           SELECT device_id, bucket_start_ms, sum(online_ms)
           FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS u(device_id, bucket_start_ms, online_ms)
           GROUP BY device_id, bucket_start_ms
           ORDER BY device_id, bucket_start_ms
           ON CONFLICT (device_id, bucket_start_ms)
           DO UPDATE SET online_ms = device_uptime_buckets.online_ms + EXCLUDED.online_ms`,
          [bucketDeviceIds, bucketStarts, bucketOnline],
        )
      }
    })
  }

  async sweepSilentDevices(cutoffMs: number, nowMs: number, reason: string): Promise<string[]> {
    return this.#driver.transaction(async (tx) => {
      const rows = await tx.query<{ id: string }>(
        `UPDATE devices SET state = 'offline', state_reason_code = 'missed_heartbeats', state_reason = $3,
           state_changed_at_ms = $2, change_seq = nextval('device_change_seq')
         WHERE state = 'online' AND COALESCE(last_seen_at_ms, 0) < $1
         RETURNING id`,
        [cutoffMs, nowMs, reason],
      )
      for (const row of rows) {
        await insertEvent(tx, {
          deviceId: row.id,
          state: 'offline',
          reasonCode: 'missed_heartbeats',
          reason,
          atMs: nowMs,
        })
      }
      return rows.map((row) => row.id)
    })
  }

  async refreshReliability(nowMs: number, windowMs: number, minHistoryMs: number): Promise<number> {
    // It updates many devices in one statement while heartbeat flushes and connects lock some of them:
    // on a deadlock the server aborts one side, and this side simply runs again.
    return retryOnDeadlock(() => this.#refreshReliabilityOnce(nowMs, windowMs, minHistoryMs))
  }

  async #refreshReliabilityOnce(nowMs: number, windowMs: number, minHistoryMs: number): Promise<number> {
    const windowStartMs = nowMs - windowMs
    // Only a visible change bumps change_seq, so search indexes are not flooded with tiny drifts.
    return this.#driver.execute(
      `WITH measured AS (
         SELECT d.id,
           CASE WHEN $1 - GREATEST(d.enrolled_at_ms, $2) < $3 THEN NULL ELSE
             LEAST(1.0, COALESCE((SELECT sum(b.online_ms) FROM device_uptime_buckets b
                                  WHERE b.device_id = d.id AND b.bucket_start_ms >= $2), 0)::double precision
               / GREATEST(1, $1 - GREATEST(d.enrolled_at_ms, $2))::double precision)
           END AS value
         FROM devices d
       )
       UPDATE devices AS d SET reliability = m.value, change_seq = nextval('device_change_seq')
       FROM measured m
       WHERE d.id = m.id AND (
         (d.reliability IS NULL) <> (m.value IS NULL) OR abs(d.reliability - m.value) >= 0.0005)`,
      [nowMs, windowStartMs, minHistoryMs],
    )
  }

  async listDeviceEvents(deviceId: string, limit: number): Promise<DeviceEventRecord[]> {
    const rows = await this.#driver.query<{
      at_ms: bigint
      state: DeviceState
      reason_code: StateReasonCode
      reason: string
    }>(
      'SELECT at_ms, state, reason_code, reason FROM device_events WHERE device_id = $1 ORDER BY id DESC LIMIT $2',
      [deviceId, limit],
    )
    return rows.map((row) => ({
      atMs: Number(row.at_ms),
      state: row.state,
      reasonCode: row.reason_code,
      reason: row.reason,
    }))
  }

  async listUptimeBuckets(deviceId: string, sinceMs: number): Promise<UptimeBucket[]> {
    const rows = await this.#driver.query<{ bucket_start_ms: bigint; online_ms: bigint }>(
      `SELECT bucket_start_ms, online_ms FROM device_uptime_buckets
       WHERE device_id = $1 AND bucket_start_ms >= $2 ORDER BY bucket_start_ms`,
      [deviceId, sinceMs],
    )
    return rows.map((row) => ({
      bucketStartMs: Number(row.bucket_start_ms),
      onlineMs: Number(row.online_ms),
    }))
  }

  async setDeviceVerification(deviceId: string, state: VerificationState, reason: string): Promise<void> {
    await this.#driver.execute(
      `UPDATE devices SET verification_state = $2, verification_reason = $3, change_seq = nextval('device_change_seq')
       WHERE id = $1`,
      [deviceId, state, reason],
    )
  }

  async setDeviceBandwidthTier(deviceId: string, tier: BandwidthTier | null): Promise<void> {
    await this.#driver.execute(
      `UPDATE devices SET bandwidth_tier = $2, change_seq = nextval('device_change_seq') WHERE id = $1`,
      [deviceId, tier],
    )
  }

  async findGpuUuidConflicts(deviceId: string): Promise<GpuUuidConflict[]> {
    return this.#driver.query<GpuUuidConflict>(
      `SELECT other.uuid, other.device_id AS "deviceId"
       FROM device_gpus mine
       JOIN device_gpus other ON other.uuid = mine.uuid AND other.device_id <> mine.device_id
       JOIN devices d ON d.id = other.device_id AND d.state = 'online'
       WHERE mine.device_id = $1
       ORDER BY other.uuid, other.device_id`,
      [deviceId],
    )
  }

  async insertChallenge(challenge: ChallengeRecord): Promise<void> {
    await this.#driver.execute(
      `INSERT INTO verification_challenges (id, device_id, issued_at_ms, matrix_size, seed_hex, commit_deadline_at_ms,
         outcome, reason_code, reason, merkle_root_hex, committed_at_ms, finished_at_ms, backend, effective_tflops)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
      challengeParams(challenge),
    )
  }

  async updateChallenge(challenge: ChallengeRecord): Promise<void> {
    await this.#driver.execute(
      `UPDATE verification_challenges SET outcome = $2, reason_code = $3, reason = $4, merkle_root_hex = $5,
         committed_at_ms = $6, finished_at_ms = $7, backend = $8, effective_tflops = $9
       WHERE id = $1`,
      [challenge.id, ...challengeOutcomeParams(challenge)],
    )
  }

  async listChallenges(deviceId: string, limit: number): Promise<ChallengeRecord[]> {
    const rows = await this.#driver.query<ChallengeRow>(
      'SELECT * FROM verification_challenges WHERE device_id = $1 ORDER BY issued_at_ms DESC, id LIMIT $2',
      [deviceId, limit],
    )
    return rows.map(toChallenge)
  }

  async recordVerificationOutcome(deviceId: string, outcome: VerificationOutcome): Promise<void> {
    await this.#driver.execute(
      `UPDATE devices SET verification_state = $2, verification_reason = $3, verification_failures = $4,
         next_verification_at_ms = $5, measured_fp32_tflops = COALESCE($6, measured_fp32_tflops),
         change_seq = nextval('device_change_seq')
       WHERE id = $1`,
      [
        deviceId,
        outcome.state,
        outcome.reason,
        outcome.failures,
        outcome.nextVerificationAtMs,
        outcome.measuredFp32Tflops ?? null,
      ],
    )
  }

  async reserveGang(reservation: GangReservation): Promise<GangReservationOutcome> {
    const deviceIds = [...new Set(reservation.deviceIds)].sort()
    // Sorted inserts take row locks in one order, so deadlocks should not happen; if the server still
    // reports one, the gang is retried whole.
    return retryOnDeadlock(() => this.#reserveGangOnce(reservation, deviceIds))
  }

  async #reserveGangOnce(
    reservation: GangReservation,
    deviceIds: readonly string[],
  ): Promise<GangReservationOutcome> {
    const conflicted = new GangConflict()
    try {
      await this.#driver.transaction(async (tx) => {
        const inserted = await insertReservations(
          tx,
          deviceIds,
          reservation.clusterId,
          reservation.accountId,
          reservation.nowMs,
        )
        if (inserted.length < deviceIds.length) {
          const got = new Set(inserted)
          conflicted.deviceIds = deviceIds.filter((id) => !got.has(id))
          // Rolling back releases the ones this gang did get: all or nothing.
          throw conflicted
        }
        await bumpDeviceChangeSeq(tx, deviceIds)
      })
    } catch (error) {
      if (error === conflicted) return { ok: false, alreadyReserved: conflicted.deviceIds }
      throw error
    }
    return { ok: true }
  }

  async releaseReservations(clusterId: string): Promise<string[]> {
    return retryOnDeadlock(() => this.#driver.transaction((tx) => deleteClusterReservations(tx, clusterId)))
  }

  async listReservedDeviceIds(): Promise<string[]> {
    const rows = await this.#driver.query<{ device_id: string }>(
      'SELECT device_id FROM device_reservations ORDER BY device_id',
    )
    return rows.map((row) => row.device_id)
  }

  async insertSpeedtestResult(result: SpeedtestRecord): Promise<void> {
    await this.#driver.transaction(async (tx) => {
      await tx.execute(
        `INSERT INTO speedtest_results (id, device_id, measured_at_ms, latency_ms, jitter_ms, download_mbps, upload_mbps,
           bandwidth_tier, compute)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
        [
          result.id,
          result.deviceId,
          result.measuredAtMs,
          result.latencyMs,
          result.jitterMs,
          result.downloadMbps,
          result.uploadMbps,
          result.bandwidthTier,
          result.compute,
        ],
      )
      await tx.execute(
        `UPDATE devices SET bandwidth_tier = $2, change_seq = nextval('device_change_seq') WHERE id = $1`,
        [result.deviceId, result.bandwidthTier],
      )
    })
  }

  async listSpeedtestResults(deviceId: string, limit: number): Promise<SpeedtestRecord[]> {
    const rows = await this.#driver.query<{
      id: string
      device_id: string
      measured_at_ms: bigint
      latency_ms: number
      jitter_ms: number
      download_mbps: number
      upload_mbps: number
      bandwidth_tier: BandwidthTier | null
      compute: Record<string, unknown> | null
    }>('SELECT * FROM speedtest_results WHERE device_id = $1 ORDER BY measured_at_ms DESC, id LIMIT $2', [
      deviceId,
      limit,
    ])
    return rows.map((row) => ({
      id: row.id,
      deviceId: row.device_id,
      measuredAtMs: Number(row.measured_at_ms),
      latencyMs: row.latency_ms,
      jitterMs: row.jitter_ms,
      downloadMbps: row.download_mbps,
      uploadMbps: row.upload_mbps,
      bandwidthTier: row.bandwidth_tier,
      compute: row.compute,
    }))
  }

  async createCluster(input: NewCluster): Promise<NewClusterOutcome> {
    if (new Set(input.deviceIds).size !== input.deviceIds.length) {
      throw new Error(`createCluster ${input.cluster.id}: a device is listed twice`)
    }
    // Another process may take the lowest free subnet between this one's read and its insert: the unique
    // index refuses the later one, which then runs again whole and takes the next free subnet.
    return retryWhen(
      () => this.#createClusterOnce(input),
      (error) => isDeadlock(error) || isSubnetTaken(error),
      maxCreateClusterAttempts,
    )
  }

  async #createClusterOnce(input: NewCluster): Promise<NewClusterOutcome> {
    const { cluster, deviceIds } = input
    const nowMs = cluster.createdAtMs
    // Sorted inserts take the reservations' locks in one order across processes.
    const sortedDeviceIds = [...deviceIds].sort()
    try {
      return await this.#driver.transaction(async (tx): Promise<NewClusterOutcome> => {
        const reserved = await insertReservations(tx, sortedDeviceIds, cluster.id, cluster.accountId, nowMs)
        if (reserved.length < sortedDeviceIds.length) {
          const got = new Set(reserved)
          throw new Refusal<NewClusterOutcome>({
            ok: false,
            alreadyReserved: sortedDeviceIds.filter((id) => !got.has(id)),
          })
        }
        const subnets = await tx.query<{ candidate: number }>(lowestFreeSubnetSql, [maxSubnetIndex])
        const subnetIndex = subnets[0]?.candidate
        if (subnetIndex === undefined) {
          throw new Refusal<NewClusterOutcome>({ ok: false, alreadyReserved: [], noSubnet: true })
        }
        const clusters = await tx.query<ClusterRow>(
          `INSERT INTO clusters (id, account_id, name, state, state_reason, desired, request, node_count,
             gpus_per_node, duration_ms, subnet_index, price_per_hour_micro_usd, created_at_ms, updated_at_ms,
             state_changed_at_ms)
           VALUES ($1, $2, $3, 'pending', $4, 'running', $5::jsonb, $6, $7, $8, $9, $10, $11, $11, $11)
           RETURNING *`,
          [
            cluster.id,
            cluster.accountId,
            cluster.name,
            cluster.stateReason,
            jsonText(cluster.request),
            cluster.nodeCount,
            cluster.gpusPerNode,
            cluster.durationMs,
            subnetIndex,
            cluster.pricePerHourMicroUsd,
            nowMs,
          ],
        )
        const prices = input.nodePricesPerHourMicroUsd ?? deviceIds.map(() => 0n)
        if (prices.length !== deviceIds.length)
          throw new Error(
            `createCluster ${cluster.id}: ${prices.length} prices for ${deviceIds.length} nodes`,
          )
        const nodes = await tx.query<ClusterNodeRow>(
          `INSERT INTO cluster_nodes (cluster_id, device_id, node_index, role, phase, phase_reason, joined_at_ms,
             price_per_hour_micro_usd)
           SELECT $1, n.device_id, (n.position - 1)::integer,
             CASE WHEN n.position = 1 THEN 'head' ELSE 'worker' END, 'reserved', 'reserved', $3, n.price
           FROM unnest($2::text[], $4::bigint[]) WITH ORDINALITY AS n(device_id, price, position)
           RETURNING *`,
          [cluster.id, deviceIds, nowMs, prices],
        )
        await bumpDeviceChangeSeq(tx, sortedDeviceIds)
        return {
          ok: true,
          cluster: toCluster(clusters[0]!),
          nodes: nodes.map(toClusterNode).sort((a, b) => a.nodeIndex - b.nodeIndex),
        }
      })
    } catch (error) {
      if (error instanceof Refusal) return error.outcome as NewClusterOutcome
      throw error
    }
  }

  async getCluster(id: string): Promise<ClusterRecord | undefined> {
    const rows = await this.#driver.query<ClusterRow>('SELECT * FROM clusters WHERE id = $1', [id])
    return rows[0] && toCluster(rows[0])
  }

  async listClusters(accountId: string, limit: number): Promise<ClusterRecord[]> {
    const rows = await this.#driver.query<ClusterRow>(
      'SELECT * FROM clusters WHERE account_id = $1 ORDER BY created_at_ms DESC, id DESC LIMIT $2',
      [accountId, limit],
    )
    return rows.map(toCluster)
  }

  async listActiveClusters(): Promise<ClusterRecord[]> {
    const rows = await this.#driver.query<ClusterRow>(
      `SELECT * FROM clusters WHERE state NOT IN ('terminated', 'failed') ORDER BY created_at_ms, id`,
    )
    return rows.map(toCluster)
  }

  async updateCluster(id: string, patch: ClusterPatch, nowMs: number): Promise<ClusterRecord> {
    return retryOnDeadlock(() =>
      this.#driver.transaction(async (tx) => {
        // The row lock this takes orders it against addClusterNode: a node added meanwhile is released too.
        const rows = await tx.query<ClusterRow>(
          `UPDATE clusters SET state = COALESCE($2, state), state_reason = COALESCE($3, state_reason),
             desired = COALESCE($4, desired), ready_at_ms = COALESCE($5, ready_at_ms),
             expires_at_ms = COALESCE($6, expires_at_ms), duration_ms = COALESCE($7, duration_ms),
             ended_at_ms = COALESCE($8, ended_at_ms), updated_at_ms = $9,
             state_changed_at_ms = CASE WHEN $2::text IS NOT NULL AND $2::text <> state THEN $9 ELSE state_changed_at_ms END,
             subnet_index = CASE WHEN COALESCE($2, state) IN ('terminated', 'failed') THEN NULL ELSE subnet_index END
           WHERE id = $1
           RETURNING *`,
          [
            id,
            patch.state ?? null,
            patch.stateReason ?? null,
            patch.desired ?? null,
            patch.readyAtMs ?? null,
            patch.expiresAtMs ?? null,
            patch.durationMs ?? null,
            patch.endedAtMs ?? null,
            nowMs,
          ],
        )
        const row = rows[0]
        if (!row) throw new Error(`updateCluster: no cluster ${id}`)
        if (endedClusterStates.has(row.state)) {
          await deleteClusterReservations(tx, id)
          await tx.execute(
            `UPDATE cluster_nodes SET phase = 'released', phase_reason = $2, left_at_ms = $3
             WHERE cluster_id = $1 AND phase NOT IN ('lost', 'released')`,
            [id, `cluster ${row.state}`, nowMs],
          )
          await closeServicePeriods(tx, id, null, nowMs)
        }
        return toCluster(row)
      }),
    )
  }

  async listClusterNodes(clusterId: string): Promise<ClusterNodeRecord[]> {
    const rows = await this.#driver.query<ClusterNodeRow>(
      'SELECT * FROM cluster_nodes WHERE cluster_id = $1 ORDER BY node_index',
      [clusterId],
    )
    return rows.map(toClusterNode)
  }

  async updateClusterNode(
    clusterId: string,
    deviceId: string,
    patch: ClusterNodePatch,
    nowMs: number,
  ): Promise<void> {
    await retryOnDeadlock(() =>
      this.#driver.transaction(async (tx) => {
        const rows = await tx.query<{ phase: ClusterNodePhase }>(
          `UPDATE cluster_nodes SET
             phase = CASE WHEN phase IN ('lost', 'released') THEN phase ELSE COALESCE($3, phase) END,
             phase_reason = CASE WHEN phase IN ('lost', 'released') THEN phase_reason ELSE COALESCE($4, phase_reason) END,
             role = COALESCE($5, role), wg_public_key = COALESCE($6, wg_public_key), endpoint = COALESCE($7, endpoint)
           WHERE cluster_id = $1 AND device_id = $2
           RETURNING phase`,
          [
            clusterId,
            deviceId,
            patch.phase ?? null,
            patch.phaseReason ?? null,
            patch.role ?? null,
            patch.wgPublicKey ?? null,
            patch.endpoint ?? null,
          ],
        )
        const row = rows[0]
        if (!row) throw new Error(`updateClusterNode: no node ${deviceId} in cluster ${clusterId}`)
        if (row.phase === 'ray_joined')
          await tx.execute(
            `INSERT INTO cluster_node_service (cluster_id, device_id, started_at_ms) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING`,
            [clusterId, deviceId, nowMs],
          )
        else await closeServicePeriods(tx, clusterId, deviceId, nowMs)
      }),
    )
  }

  async listClusterNodeService(clusterId: string): Promise<ClusterNodeServicePeriod[]> {
    const rows = await this.#driver.query<{
      device_id: string
      started_at_ms: bigint
      ended_at_ms: bigint | null
    }>(
      `SELECT device_id, started_at_ms, ended_at_ms FROM cluster_node_service WHERE cluster_id = $1
       ORDER BY started_at_ms, device_id`,
      [clusterId],
    )
    return rows.map((row) => ({
      deviceId: row.device_id,
      startedAtMs: Number(row.started_at_ms),
      endedAtMs: optionalNumber(row.ended_at_ms),
    }))
  }

  async addClusterNode(input: {
    clusterId: string
    accountId: string
    deviceId: string
    role: ClusterNodeRole
    nowMs: number
    pricePerHourMicroUsd?: bigint
  }): Promise<ClusterNodeRecord | undefined> {
    return retryOnDeadlock(() =>
      this.#driver.transaction(async (tx) => {
        // Locking the cluster row serializes node indexes between concurrent adds, and orders this against a
        // termination: either the termination sees this node, or this sees the cluster ended.
        const clusters = await tx.query<{ state: ClusterState }>(
          'SELECT state FROM clusters WHERE id = $1 FOR NO KEY UPDATE',
          [input.clusterId],
        )
        const cluster = clusters[0]
        if (!cluster) throw new Error(`addClusterNode: no cluster ${input.clusterId}`)
        if (endedClusterStates.has(cluster.state)) return undefined
        const existing = await tx.query(
          'SELECT 1 FROM cluster_nodes WHERE cluster_id = $1 AND device_id = $2',
          [input.clusterId, input.deviceId],
        )
        if (existing.length > 0) return undefined
        // Node addresses stop where clients' begin: a cluster that has used them all takes no more nodes.
        const [next] = await tx.query<{ index: number }>(
          'SELECT COALESCE(max(node_index) + 1, 0) AS index FROM cluster_nodes WHERE cluster_id = $1',
          [input.clusterId],
        )
        if (Number(next!.index) >= firstClientAddressIndex) return undefined
        const reserved = await insertReservations(
          tx,
          [input.deviceId],
          input.clusterId,
          input.accountId,
          input.nowMs,
        )
        if (reserved.length === 0) return undefined
        const rows = await tx.query<ClusterNodeRow>(
          `INSERT INTO cluster_nodes (cluster_id, device_id, node_index, role, phase, phase_reason, joined_at_ms,
             price_per_hour_micro_usd)
           SELECT $1, $2, COALESCE(max(node_index) + 1, 0), $3, 'reserved', 'reserved', $4, $5
           FROM cluster_nodes WHERE cluster_id = $1
           RETURNING *`,
          [input.clusterId, input.deviceId, input.role, input.nowMs, input.pricePerHourMicroUsd ?? 0n],
        )
        await bumpDeviceChangeSeq(tx, [input.deviceId])
        return toClusterNode(rows[0]!)
      }),
    )
  }

  async releaseClusterNode(
    clusterId: string,
    deviceId: string,
    phase: 'lost' | 'released',
    reason: string,
    nowMs: number,
    servedUntilMs?: number,
  ): Promise<void> {
    await retryOnDeadlock(() =>
      this.#driver.transaction(async (tx) => {
        const released = await tx.execute(
          `UPDATE cluster_nodes SET phase = $3, phase_reason = $4, left_at_ms = $5
           WHERE cluster_id = $1 AND device_id = $2 AND phase NOT IN ('lost', 'released')`,
          [clusterId, deviceId, phase, reason, nowMs],
        )
        if (released > 0)
          await closeServicePeriods(tx, clusterId, deviceId, Math.min(nowMs, servedUntilMs ?? nowMs))
        const freed = await tx.query<{ device_id: string }>(
          'DELETE FROM device_reservations WHERE device_id = $1 AND cluster_id = $2 RETURNING device_id',
          [deviceId, clusterId],
        )
        await bumpDeviceChangeSeq(
          tx,
          freed.map((row) => row.device_id),
        )
      }),
    )
  }

  async addClusterClient(input: {
    clusterId: string
    publicKey: string
    name: string
    nowMs: number
  }): Promise<ClusterClientRecord | undefined> {
    return retryOnDeadlock(() =>
      this.#driver.transaction(async (tx) => {
        // The cluster's row orders concurrent joins: two clients never take one address.
        const [cluster] = await tx.query<{ state: string }>(
          'SELECT state FROM clusters WHERE id = $1 FOR UPDATE',
          [input.clusterId],
        )
        if (!cluster || cluster.state === 'terminated' || cluster.state === 'failed') return undefined
        const [existing] = await tx.query<ClusterClientRow>(
          'SELECT * FROM cluster_clients WHERE cluster_id = $1 AND public_key = $2 AND removed_at_ms IS NULL',
          [input.clusterId, input.publicKey],
        )
        if (existing) return toClusterClient(existing)
        const taken = await tx.query<{ address_index: number }>(
          'SELECT address_index FROM cluster_clients WHERE cluster_id = $1 AND removed_at_ms IS NULL',
          [input.clusterId],
        )
        const used = new Set(taken.map((row) => Number(row.address_index)))
        let addressIndex = firstClientAddressIndex
        while (used.has(addressIndex)) addressIndex += 1
        if (addressIndex >= firstClientAddressIndex + maxClusterClients) return undefined
        const [row] = await tx.query<ClusterClientRow>(
          `INSERT INTO cluster_clients (cluster_id, public_key, name, address_index, created_at_ms)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (cluster_id, public_key) DO UPDATE
             SET name = EXCLUDED.name, address_index = EXCLUDED.address_index,
                 created_at_ms = EXCLUDED.created_at_ms, removed_at_ms = NULL
           RETURNING *`,
          [input.clusterId, input.publicKey, input.name, addressIndex, input.nowMs],
        )
        return toClusterClient(row!)
      }),
    )
  }

  async listClusterClients(clusterId: string): Promise<ClusterClientRecord[]> {
    const rows = await this.#driver.query<ClusterClientRow>(
      'SELECT * FROM cluster_clients WHERE cluster_id = $1 AND removed_at_ms IS NULL ORDER BY address_index',
      [clusterId],
    )
    return rows.map(toClusterClient)
  }

  async removeClusterClient(clusterId: string, publicKey: string, nowMs: number): Promise<boolean> {
    const removed = await this.#driver.execute(
      `UPDATE cluster_clients SET removed_at_ms = $3
       WHERE cluster_id = $1 AND public_key = $2 AND removed_at_ms IS NULL`,
      [clusterId, publicKey, nowMs],
    )
    return removed > 0
  }

  async updateClusterBilling(clusterId: string, patch: ClusterBillingPatch): Promise<ClusterRecord> {
    const [row] = await this.#driver.query<ClusterRow>(
      `UPDATE clusters SET billing_hold_id = $2, billed_intervals = $3,
         billed_until_ms = COALESCE($4, billed_until_ms)
       WHERE id = $1 RETURNING *`,
      [clusterId, patch.billingHoldId, patch.billedIntervals, patch.billedUntilMs ?? null],
    )
    if (!row) throw new Error(`updateClusterBilling: no cluster ${clusterId}`)
    return toCluster(row)
  }

  async listActiveClusterNodesOnDevice(deviceId: string): Promise<ClusterNodeRecord[]> {
    const rows = await this.#driver.query<ClusterNodeRow>(
      `SELECT n.* FROM cluster_nodes n JOIN clusters c ON c.id = n.cluster_id
       WHERE n.device_id = $1 AND c.state NOT IN ('terminated', 'failed') AND n.phase NOT IN ('lost', 'released')
       ORDER BY n.cluster_id, n.node_index`,
      [deviceId],
    )
    return rows.map(toClusterNode)
  }

  async appendClusterEvents(events: readonly NewClusterEvent[]): Promise<void> {
    if (events.length === 0) return
    const clusterIds = [...new Set(events.map((event) => event.clusterId))].sort()
    await this.#driver.transaction(async (tx) => {
      // Seqs are taken while holding the clusters' rows, so within a cluster seq order is commit order and a
      // reader following afterSeq never skips an event that commits late with a lower seq.
      await tx.query('SELECT id FROM clusters WHERE id = ANY ($1::text[]) ORDER BY id FOR NO KEY UPDATE', [
        clusterIds,
      ])
      await tx.execute(
        `INSERT INTO cluster_events (cluster_id, at_ms, kind, device_id, message)
         SELECT e.cluster_id, e.at_ms, e.kind, e.device_id, e.message
         FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[])
           WITH ORDINALITY AS e(cluster_id, at_ms, kind, device_id, message, position)
         ORDER BY e.position`,
        [
          events.map((event) => event.clusterId),
          events.map((event) => event.atMs),
          events.map((event) => event.kind),
          events.map((event) => event.deviceId),
          events.map((event) => event.message),
        ],
      )
    })
  }

  async listClusterEvents(clusterId: string, afterSeq: bigint, limit: number): Promise<ClusterEventRecord[]> {
    const rows = await this.#driver.query<ClusterEventRow>(
      'SELECT * FROM cluster_events WHERE cluster_id = $1 AND seq > $2 ORDER BY seq LIMIT $3',
      [clusterId, afterSeq, limit],
    )
    return rows.map(toClusterEvent)
  }

  async insertJob(job: ClusterJobRecord): Promise<void> {
    await this.#driver.execute(
      `INSERT INTO cluster_jobs (id, cluster_id, account_id, entrypoint, status, message, exit_code, created_at_ms,
         finished_at_ms, runtime_env, metadata)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
      [
        job.id,
        job.clusterId,
        job.accountId,
        job.entrypoint,
        job.status,
        job.message,
        job.exitCode,
        job.createdAtMs,
        job.finishedAtMs,
        job.runtimeEnvJson,
        job.metadataJson,
      ],
    )
  }

  async getJob(jobId: string): Promise<ClusterJobRecord | undefined> {
    const rows = await this.#driver.query<ClusterJobRow>('SELECT * FROM cluster_jobs WHERE id = $1', [jobId])
    return rows[0] && toClusterJob(rows[0])
  }

  async listJobs(clusterId: string, limit: number): Promise<ClusterJobRecord[]> {
    const rows = await this.#driver.query<ClusterJobRow>(
      'SELECT * FROM cluster_jobs WHERE cluster_id = $1 ORDER BY created_at_ms DESC, id DESC LIMIT $2',
      [clusterId, limit],
    )
    return rows.map(toClusterJob)
  }

  async updateJob(jobId: string, patch: ClusterJobPatch): Promise<ClusterJobRecord | undefined> {
    // One statement: the updated row, or the row as it stands when the patch was refused as stale.
    const rows = await this.#driver.query<ClusterJobRow>(
      `WITH updated AS (
         UPDATE cluster_jobs SET status = COALESCE($2, status), message = COALESCE($3, message),
           exit_code = CASE WHEN $4::boolean THEN $5::integer ELSE exit_code END,
           finished_at_ms = COALESCE($6, finished_at_ms)
         WHERE id = $1 AND NOT (status IN ('succeeded', 'failed', 'stopped') AND $2::text IS NOT NULL AND $2::text <> status)
         RETURNING *
       )
       SELECT * FROM updated
       UNION ALL
       SELECT * FROM cluster_jobs WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM updated)`,
      [
        jobId,
        patch.status ?? null,
        patch.message ?? null,
        patch.exitCode !== undefined,
        patch.exitCode ?? null,
        patch.finishedAtMs ?? null,
      ],
    )
    return rows[0] && toClusterJob(rows[0])
  }

  async appendJobLog(jobId: string, text: string): Promise<number> {
    return this.#driver.transaction(async (tx) => {
      // Holding the job row serializes appenders, so max + 1 is never taken twice.
      const jobs = await tx.query('SELECT id FROM cluster_jobs WHERE id = $1 FOR NO KEY UPDATE', [jobId])
      if (jobs.length === 0) throw new Error(`appendJobLog: no job ${jobId}`)
      const rows = await tx.query<{ seq: number }>(
        `INSERT INTO cluster_job_logs (job_id, seq, text)
         SELECT $1, COALESCE(max(seq), 0) + 1, $2 FROM cluster_job_logs WHERE job_id = $1
         RETURNING seq`,
        [jobId, text],
      )
      return rows[0]!.seq
    })
  }

  async readJobLog(jobId: string, afterSeq: number, limit: number): Promise<JobLogChunk[]> {
    return this.#driver.query<JobLogChunk>(
      'SELECT seq, text FROM cluster_job_logs WHERE job_id = $1 AND seq > $2 ORDER BY seq LIMIT $3',
      [jobId, afterSeq, limit],
    )
  }

  async deleteJob(jobId: string): Promise<boolean> {
    return this.#driver.transaction(async (tx) => {
      const jobs = await tx.query(
        `SELECT id FROM cluster_jobs WHERE id = $1 AND status IN ('succeeded', 'failed', 'stopped') FOR UPDATE`,
        [jobId],
      )
      if (jobs.length === 0) return false
      await tx.execute('DELETE FROM cluster_job_logs WHERE job_id = $1', [jobId])
      await tx.execute('DELETE FROM cluster_jobs WHERE id = $1', [jobId])
      return true
    })
  }

  close(): Promise<void> {
    return this.#driver.close()
  }
}

/** Attempts of a statement the server aborted to break a deadlock. */
const maxDeadlockAttempts = 3

/** Runs `work` again when PostgreSQL aborted it to break a deadlock (SQLSTATE 40P01). */
function retryOnDeadlock<T>(work: () => Promise<T>): Promise<T> {
  return retryWhen(work, isDeadlock, maxDeadlockAttempts)
}

const isDeadlock = (error: unknown): boolean => (error as { code?: string }).code === '40P01'

/** A unique violation (SQLSTATE 23505) on the subnet index: another process took the subnet first. */
const isSubnetTaken = (error: unknown): boolean => {
  const { code, constraint } = error as { code?: string; constraint?: string }
  return code === '23505' && constraint === 'clusters_subnet_index'
}

/** Thrown inside a transaction to roll back a gang that could not be reserved whole. */
class GangConflict extends Error {
  deviceIds: string[] = []
}

/** Thrown inside a transaction to roll it back, keeping nothing, and answer `outcome` instead. */
class Refusal<T> extends Error {
  readonly outcome: T
  constructor(outcome: T) {
    super('refused')
    this.outcome = outcome
  }
}

/** Attempts of createCluster: each retry follows another process taking the subnet this one picked. */
const maxCreateClusterAttempts = 16

/** 100.64.0.0/10 holds 2^14 /24 subnets: indexes 0..16383 (the migration checks the same range). */
const maxSubnetIndex = 16_383

/** The lowest index no cluster holds: 0, or one past a held index whose successor is free. */
const lowestFreeSubnetSql = `SELECT c.candidate FROM (
    SELECT 0 AS candidate
    UNION ALL
    SELECT subnet_index + 1 FROM clusters WHERE subnet_index IS NOT NULL
  ) AS c
  WHERE c.candidate <= $1 AND NOT EXISTS (SELECT 1 FROM clusters taken WHERE taken.subnet_index = c.candidate)
  ORDER BY c.candidate
  LIMIT 1`

const endedClusterStates: ReadonlySet<ClusterState> = new Set<ClusterState>(['terminated', 'failed'])

/** Inserts the reservations that are free; returns the device ids it reserved. */
async function insertReservations(
  tx: SqlExecutor,
  deviceIds: readonly string[],
  clusterId: string,
  accountId: string,
  nowMs: number,
): Promise<string[]> {
  const rows = await tx.query<{ device_id: string }>(
    `INSERT INTO device_reservations (device_id, cluster_id, account_id, reserved_at_ms)
     SELECT device_id, $2, $3, $4 FROM unnest($1::text[]) AS r(device_id)
     ON CONFLICT (device_id) DO NOTHING
     RETURNING device_id`,
    [deviceIds, clusterId, accountId, nowMs],
  )
  return rows.map((row) => row.device_id)
}

/** Deletes every reservation the cluster holds; returns the freed device ids, sorted. */
async function deleteClusterReservations(tx: SqlExecutor, clusterId: string): Promise<string[]> {
  const rows = await tx.query<{ device_id: string }>(
    'DELETE FROM device_reservations WHERE cluster_id = $1 RETURNING device_id',
    [clusterId],
  )
  const deviceIds = rows.map((row) => row.device_id).sort()
  await bumpDeviceChangeSeq(tx, deviceIds)
  return deviceIds
}

/** Taking or freeing a device is a change the offer index must see: it follows device_change_seq. */
async function bumpDeviceChangeSeq(tx: SqlExecutor, deviceIds: readonly string[]): Promise<void> {
  if (deviceIds.length === 0) return
  await tx.execute(
    `UPDATE devices SET change_seq = nextval('device_change_seq') WHERE id = ANY ($1::text[])`,
    [deviceIds],
  )
}

/** JSON text with bigints as decimal strings: JSON has no bigint (PGlite writes JSONB params the same way). */
function jsonText(value: unknown): string {
  return JSON.stringify(value, (_key, item: unknown) => (typeof item === 'bigint' ? item.toString() : item))
}

async function insertEvent(tx: SqlExecutor, change: DeviceStateChange): Promise<void> {
  await tx.execute(
    'INSERT INTO device_events (device_id, at_ms, state, reason_code, reason) VALUES ($1, $2, $3, $4, $5)',
    [change.deviceId, change.atMs, change.state, change.reasonCode, change.reason],
  )
}

const optionalNumber = (value: bigint | null): number | null => (value === null ? null : Number(value))

type ChallengeRow = {
  id: string
  device_id: string
  issued_at_ms: bigint
  matrix_size: number
  seed_hex: string
  commit_deadline_at_ms: bigint
  outcome: ChallengeRecord['outcome']
  reason_code: string | null
  reason: string
  merkle_root_hex: string | null
  committed_at_ms: bigint | null
  finished_at_ms: bigint | null
  backend: string | null
  effective_tflops: number | null
}

function challengeParams(challenge: ChallengeRecord) {
  return [
    challenge.id,
    challenge.deviceId,
    challenge.issuedAtMs,
    challenge.matrixSize,
    challenge.seedHex,
    challenge.commitDeadlineAtMs,
    ...challengeOutcomeParams(challenge),
  ]
}

/** The columns a challenge's outcome changes, in the order both statements bind them. */
function challengeOutcomeParams(challenge: ChallengeRecord) {
  return [
    challenge.outcome,
    challenge.reasonCode,
    challenge.reason,
    challenge.merkleRootHex,
    challenge.committedAtMs,
    challenge.finishedAtMs,
    challenge.backend,
    challenge.effectiveTflops,
  ]
}

function toChallenge(row: ChallengeRow): ChallengeRecord {
  return {
    id: row.id,
    deviceId: row.device_id,
    issuedAtMs: Number(row.issued_at_ms),
    matrixSize: row.matrix_size,
    seedHex: row.seed_hex,
    commitDeadlineAtMs: Number(row.commit_deadline_at_ms),
    outcome: row.outcome,
    reasonCode: row.reason_code,
    reason: row.reason,
    merkleRootHex: row.merkle_root_hex,
    committedAtMs: optionalNumber(row.committed_at_ms),
    finishedAtMs: optionalNumber(row.finished_at_ms),
    backend: row.backend,
    effectiveTflops: row.effective_tflops,
  }
}

function toAccount(row: AccountRow): AccountRecord {
  return { id: row.id, name: row.name, roles: row.roles, createdAtMs: Number(row.created_at_ms) }
}

function toApiKey(row: ApiKeyRow): ApiKeyRecord {
  return {
    id: row.id,
    accountId: row.account_id,
    name: row.name,
    roles: row.roles,
    secretSha256: row.secret_sha256,
    createdAtMs: Number(row.created_at_ms),
    lastUsedAtMs: optionalNumber(row.last_used_at_ms),
    revokedAtMs: optionalNumber(row.revoked_at_ms),
  }
}

function toEnrollmentToken(row: EnrollmentTokenRow): EnrollmentTokenRecord {
  return {
    id: row.id,
    accountId: row.account_id,
    label: row.label,
    secretSha256: row.secret_sha256,
    createdAtMs: Number(row.created_at_ms),
    expiresAtMs: Number(row.expires_at_ms),
    usedAtMs: optionalNumber(row.used_at_ms),
    usedByPublicKey: row.used_by_public_key,
    deviceId: row.device_id,
  }
}

function toDevice(row: DeviceRow): DeviceRecord {
  return {
    id: row.id,
    accountId: row.account_id,
    publicKey: row.public_key,
    hostname: row.hostname,
    state: row.state,
    stateReasonCode: row.state_reason_code,
    stateReason: row.state_reason,
    stateChangedAtMs: Number(row.state_changed_at_ms),
    verificationState: row.verification_state,
    verificationReason: row.verification_reason,
    region: row.region,
    country: row.country,
    askingPriceMicroUsd: row.asking_price_micro_usd,
    pricingMode: row.pricing_mode,
    bandwidthTier: row.bandwidth_tier,
    inventory: row.inventory,
    enrolledAtMs: Number(row.enrolled_at_ms),
    lastSeenAtMs: optionalNumber(row.last_seen_at_ms),
    uptimeMsTotal: Number(row.uptime_ms_total),
    reliability: row.reliability,
    changeSeq: row.change_seq,
    verificationFailures: row.verification_failures,
    nextVerificationAtMs: Number(row.next_verification_at_ms),
    measuredFp32Tflops: row.measured_fp32_tflops,
    reservedByClusterId: row.reserved_by_cluster_id,
    capabilities: row.capabilities,
  }
}

type ClusterRow = {
  id: string
  account_id: string
  name: string
  state: ClusterState
  state_reason: string
  desired: ClusterDesired
  request: unknown
  node_count: number
  gpus_per_node: number
  duration_ms: bigint
  subnet_index: number | null
  price_per_hour_micro_usd: bigint
  created_at_ms: bigint
  ready_at_ms: bigint | null
  expires_at_ms: bigint | null
  ended_at_ms: bigint | null
  updated_at_ms: bigint
  state_changed_at_ms: bigint
  billing_hold_id: string | null
  billed_intervals: number
  billed_until_ms: bigint | null
}

function toCluster(row: ClusterRow): ClusterRecord {
  return {
    id: row.id,
    accountId: row.account_id,
    name: row.name,
    state: row.state,
    stateReason: row.state_reason,
    desired: row.desired,
    request: row.request,
    nodeCount: row.node_count,
    gpusPerNode: row.gpus_per_node,
    durationMs: Number(row.duration_ms),
    subnetIndex: row.subnet_index,
    pricePerHourMicroUsd: row.price_per_hour_micro_usd,
    createdAtMs: Number(row.created_at_ms),
    readyAtMs: optionalNumber(row.ready_at_ms),
    expiresAtMs: optionalNumber(row.expires_at_ms),
    endedAtMs: optionalNumber(row.ended_at_ms),
    updatedAtMs: Number(row.updated_at_ms),
    stateChangedAtMs: Number(row.state_changed_at_ms),
    billingHoldId: row.billing_hold_id,
    billedIntervals: Number(row.billed_intervals),
    billedUntilMs: optionalNumber(row.billed_until_ms),
  }
}

/**
 * Ends the open service period of one node (or, with deviceId null, of every node of the cluster) at endMs,
 * never before the period began.
 */
async function closeServicePeriods(
  tx: SqlExecutor,
  clusterId: string,
  deviceId: string | null,
  endMs: number,
): Promise<void> {
  await tx.execute(
    `UPDATE cluster_node_service SET ended_at_ms = GREATEST(started_at_ms, $3)
     WHERE cluster_id = $1 AND ($2::text IS NULL OR device_id = $2) AND ended_at_ms IS NULL`,
    [clusterId, deviceId, endMs],
  )
}

type ClusterNodeRow = {
  cluster_id: string
  device_id: string
  node_index: number
  role: ClusterNodeRole
  phase: ClusterNodePhase
  phase_reason: string
  wg_public_key: string | null
  endpoint: string | null
  joined_at_ms: bigint
  left_at_ms: bigint | null
  price_per_hour_micro_usd: bigint
}

function toClusterNode(row: ClusterNodeRow): ClusterNodeRecord {
  return {
    clusterId: row.cluster_id,
    deviceId: row.device_id,
    nodeIndex: row.node_index,
    role: row.role,
    phase: row.phase,
    phaseReason: row.phase_reason,
    wgPublicKey: row.wg_public_key,
    endpoint: row.endpoint,
    joinedAtMs: Number(row.joined_at_ms),
    leftAtMs: optionalNumber(row.left_at_ms),
    pricePerHourMicroUsd: BigInt(row.price_per_hour_micro_usd),
  }
}

type ClusterEventRow = {
  seq: bigint
  cluster_id: string
  at_ms: bigint
  kind: string
  device_id: string | null
  message: string
}

function toClusterEvent(row: ClusterEventRow): ClusterEventRecord {
  return {
    seq: row.seq,
    clusterId: row.cluster_id,
    atMs: Number(row.at_ms),
    kind: row.kind,
    deviceId: row.device_id,
    message: row.message,
  }
}

type ClusterJobRow = {
  id: string
  cluster_id: string
  account_id: string
  entrypoint: string
  status: JobStatus
  message: string
  exit_code: number | null
  created_at_ms: bigint
  finished_at_ms: bigint | null
  runtime_env: string
  metadata: string
}

function toClusterJob(row: ClusterJobRow): ClusterJobRecord {
  return {
    id: row.id,
    clusterId: row.cluster_id,
    accountId: row.account_id,
    entrypoint: row.entrypoint,
    status: row.status,
    message: row.message,
    exitCode: row.exit_code,
    createdAtMs: Number(row.created_at_ms),
    finishedAtMs: optionalNumber(row.finished_at_ms),
    runtimeEnvJson: row.runtime_env,
    metadataJson: row.metadata,
  }
}

type ClusterClientRow = {
  cluster_id: string
  public_key: string
  name: string
  address_index: number
  created_at_ms: bigint
  removed_at_ms: bigint | null
}

function toClusterClient(row: ClusterClientRow): ClusterClientRecord {
  return {
    clusterId: row.cluster_id,
    publicKey: row.public_key,
    name: row.name,
    addressIndex: Number(row.address_index),
    createdAtMs: Number(row.created_at_ms),
    removedAtMs: row.removed_at_ms === null ? null : Number(row.removed_at_ms),
  }
}
