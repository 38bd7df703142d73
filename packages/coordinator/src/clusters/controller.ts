import {
  ClusterStateError,
  formatGmtUnits,
  InsufficientFundsError,
  formatMicroUsd,
  NotFoundError,
  UnplaceableError,
  type Clock,
} from '@gpumesh/core'
import { ledgerAccounts, servedMs } from '@gpumesh/ledger'
import { clusterSubnet, nodeAddress, overlayPrefixLength } from '@gpumesh/mesh'
import type {
  ClusterClientConfig,
  ClusterReportMessage,
  ClusterRequestBody,
  ClusterView,
  JobView,
  RayEntrypointResources,
  RayRuntimeEnv,
  SubmitJobBody,
  WorkerCapabilities,
} from '@gpumesh/protocol'
import { placeCluster, type SupplySnapshot } from '@gpumesh/scheduler'
import { maxClusterClients } from '@gpumesh/store'
import type {
  ClusterClientRecord,
  ClusterJobRecord,
  ClusterNodeRecord,
  ClusterRecord,
  NewClusterEvent,
  Store,
} from '@gpumesh/store'
import type { FastifyBaseLogger } from 'fastify'
import { mintId } from '../credentials.ts'
import type { OfferIndex } from '../offers/offer-index.ts'
import type { Presence } from '@gpumesh/presence'
import type { WorkerLinks } from '../worker-link.ts'
import type { CoordinatorMetrics } from '../metrics.ts'
import { billingEndMs, type ClusterBilling } from './billing.ts'
import { planCluster, priceNodes, resolveClusterRequest, type PlanMarket } from '@gpumesh/clusters'
import {
  isActiveNode,
  isTerminalCluster,
  overlayAddressOf,
  rayClientPort,
  rayGcsPort,
  reconcileCluster,
  type CommandKind,
  type ReconcilePolicy,
  type SentCommand,
} from '@gpumesh/clusters'

// The cluster controller: the I/O around reconcileCluster. It keeps every active cluster and its nodes in
// memory (written through to the store, which stays the source of truth), turns worker reports into node
// progress, sends the commands reconcile decides on, and places replacements for lost nodes. All of its
// work runs one step at a time, so two reports never interleave their read-modify-write of a cluster.

/**
 * What the controller needs of the worker links: to send a command and to know where a node's link comes
 * from (its mesh endpoint). The coordinator passes its WebSocket WorkerLinks; sim/ passes an in-memory link.
 */
export type ClusterLinks = Pick<WorkerLinks, 'send' | 'remoteAddressOf'>

export type ClusterControllerComponents = {
  readonly store: Store
  readonly clock: Clock
  readonly index: OfferIndex
  readonly links: ClusterLinks
  readonly presence: Presence
  readonly logger: FastifyBaseLogger
  /** Devices just reserved for a cluster: whatever else they were doing (serving models) stops now. */
  readonly onDevicesReserved?: (deviceIds: readonly string[], reason: string) => void
  /** Brings the offer index up to date with the store (reservations hide devices from placement). */
  pullOffers(): Promise<void>
  /** Offers and quotes for the nodes placed. */
  readonly market: PlanMarket
  /** Charges clusters from renters' wallets; absent, clusters are free. */
  readonly billing?: ClusterBilling
  /** Placement and provisioning times, for GET /metrics. */
  readonly metrics?: Pick<CoordinatorMetrics, 'placementSeconds' | 'provisioningSeconds'>
  /** Mints cluster and job ids; absent, random ones (sim/ passes a seeded one, so a run replays). */
  readonly mintId?: (prefix: string) => string
}

/** How often a cluster that needs a replacement but found none tries again. */
export const replacementRetryMs = 5_000
const placementAttempts = 3
const maxJobsListed = 100

/**
 * A job as either API submits it: gpumesh's own (an entrypoint and a tar.gz working dir) or Ray's (a
 * runtime_env, with the packages it names, uploaded beforehand, and entrypoint resources).
 */
export type JobSubmission = SubmitJobBody & {
  readonly runtimeEnv?: RayRuntimeEnv
  /** Every package the runtime_env names, as the zips Ray's client uploaded (base64). */
  readonly packages?: { uri: string; zipBase64: string }[]
  readonly metadata?: Readonly<Record<string, string>>
  readonly entrypointResources?: RayEntrypointResources
}

type Waiter = () => void

/** How old a hold of an unrecorded cluster must be before start-up releases it (see #releaseUnownedHolds). */
export const unownedHoldGraceMs = 60_000

export class ClusterController {
  readonly #components: ClusterControllerComponents
  readonly #policy: ReconcilePolicy
  readonly #clusters = new Map<string, ClusterRecord>()
  readonly #nodes = new Map<string, ClusterNodeRecord[]>()
  readonly #clients = new Map<string, ClusterClientRecord[]>()
  readonly #alive = new Map<string, ReadonlySet<string>>()
  readonly #sent = new Map<string, SentCommand>()
  readonly #confirmedMesh = new Map<string, string>()
  readonly #confirmedRay = new Map<string, string>()
  readonly #offlineSince = new Map<string, number>()
  readonly #replacementTriedAt = new Map<string, number>()
  /** The last "no replacement" reason told per cluster, so a retry that finds the same says nothing. */
  readonly #replacementUnavailable = new Map<string, string>()
  readonly #waiters = new Map<string, Set<Waiter>>()
  #queue: Promise<unknown> = Promise.resolve()

  constructor(components: ClusterControllerComponents, policy: ReconcilePolicy) {
    this.#components = components
    this.#policy = policy
  }

  /**
   * Loads the clusters a previous run left active (their work is picked up where the store says it was), and
   * releases the holds of clusters that were never recorded.
   */
  async start(): Promise<void> {
    await this.#serial(async () => {
      for (const cluster of await this.#components.store.listActiveClusters()) {
        this.#clusters.set(cluster.id, cluster)
        this.#nodes.set(cluster.id, await this.#components.store.listClusterNodes(cluster.id))
        this.#clients.set(cluster.id, await this.#components.store.listClusterClients(cluster.id))
      }
      await this.#releaseUnownedHolds()
    })
  }

  /**
   * A hold whose cluster does not exist was left by a create that failed after holding (before that path
   * released on failure); nothing would ever charge or release it before its timeout. Holds younger than
   * `unownedHoldGraceMs` may belong to a create still in flight in another process, so they are left alone.
   */
  async #releaseUnownedHolds(): Promise<void> {
    const { store, clock, billing } = this.#components
    if (!billing) return
    const holds = await store.ledger.listUnresolvedPending('hold', clock.nowMs() - unownedHoldGraceMs, 10_000)
    for (const hold of holds) {
      if (hold.reference === null || (await store.getCluster(hold.reference))) continue
      await billing.releaseHold(hold.reference, hold.id, 'no cluster owns this hold')
    }
  }

  get activeClusterCount(): number {
    return this.#clusters.size
  }

  /** Active clusters by state, for GET /metrics. */
  clustersByState(): Record<string, number> {
    const counts: Record<string, number> = {}
    for (const cluster of this.#clusters.values()) counts[cluster.state] = (counts[cluster.state] ?? 0) + 1
    return counts
  }

  #timedPlacement<T>(kind: 'cluster' | 'replacement', place: () => T): T {
    const startedAt = performance.now()
    try {
      return place()
    } finally {
      this.#components.metrics?.placementSeconds.observe({ kind }, (performance.now() - startedAt) / 1000)
    }
  }

  /** One pass over every active cluster. */
  tick(): Promise<void> {
    return this.#serial(async () => {
      const nowMs = this.#components.clock.nowMs()
      this.#observePresence(nowMs)
      for (const clusterId of [...this.#clusters.keys()]) {
        await this.#reconcile(clusterId)
        await this.#bill(clusterId)
      }
    })
  }

  // --- renter actions ------------------------------------------------------------------------------

  /** Places and reserves the whole gang at once, or refuses with the blocking constraint. */
  create(accountId: string, body: ClusterRequestBody): Promise<ClusterView> {
    return this.#serial(async () => {
      const { store, clock, index } = this.#components
      for (let attempt = 1; ; attempt += 1) {
        await this.#components.pullOffers()
        const snapshot = index.placementSnapshot()
        const { request, durationHours } = resolveClusterRequest(body, snapshot)
        const placement = this.#timedPlacement('cluster', () => placeCluster(snapshot, request))
        if (!placement.ok) {
          const plan = planCluster(snapshot, body, this.#components.market)
          throw new UnplaceableError(`cannot place this cluster: ${plan.detail}`, {
            blockingConstraint: plan.blockingConstraint,
            rejections: plan.rejections,
            withoutBlockingConstraint: plan.withoutBlockingConstraint,
            market: plan.market,
          })
        }
        const nowMs = clock.nowMs()
        const clusterId = (this.#components.mintId ?? mintId)('cls')
        const durationMs = Math.round(durationHours * 3_600_000)
        const priced = priceNodes(placement.nodes, durationHours, this.#components.market)
        // Funds first: a renter who cannot pay is refused before any machine is reserved.
        const billing = this.#components.billing
        const holdId = billing
          ? await billing.placeHold(accountId, clusterId, priced.pricePerHourMicroUsd, durationMs)
          : null
        const outcome = await store
          .createCluster({
            cluster: {
              id: clusterId,
              accountId,
              name: body.name ?? clusterId.slice(4, 12),
              stateReason: 'nodes reserved',
              // Resolved now, against this market: replacements are placed under the same GPU count.
              request: { ...body, gpusPerNode: request.gpusPerNode },
              nodeCount: request.nodeCount,
              gpusPerNode: request.gpusPerNode,
              durationMs,
              pricePerHourMicroUsd: priced.pricePerHourMicroUsd,
              createdAtMs: nowMs,
            },
            deviceIds: placement.nodes.map((node) => node.deviceId),
            nodePricesPerHourMicroUsd: priced.nodePricesPerHourMicroUsd,
          })
          .catch(async (error: unknown) => {
            // A hold no cluster owns would stay held until its timeout: release it before failing.
            if (holdId) await billing!.releaseHold(clusterId, holdId, 'the cluster could not be recorded')
            throw error
          })
        if (!outcome.ok && holdId) await billing!.releaseHold(clusterId, holdId, 'its machines were taken')
        if (outcome.ok) {
          const cluster = holdId
            ? await store.updateClusterBilling(clusterId, { billingHoldId: holdId, billedIntervals: 0 })
            : outcome.cluster
          this.#clusters.set(clusterId, cluster)
          this.#nodes.set(clusterId, [...outcome.nodes])
          this.#clients.set(clusterId, [])
          await this.#appendEvents([
            {
              clusterId,
              atMs: clock.nowMs(),
              kind: 'created',
              deviceId: null,
              message: `${request.nodeCount} nodes reserved at ${formatMicroUsd(priced.pricePerHourMicroUsd)} USD/h`,
            },
            ...outcome.nodes.map((node) => ({
              clusterId,
              atMs: nowMs,
              kind: 'node_reserved',
              deviceId: node.deviceId,
              message: `reserved as ${node.role}`,
            })),
          ])
          this.#components.onDevicesReserved?.(
            outcome.nodes.map((node) => node.deviceId),
            `rented for cluster ${clusterId}`,
          )
          await this.#components.pullOffers()
          await this.#reconcile(clusterId)
          return this.#view(this.#clusters.get(clusterId)!)
        }
        if ('noSubnet' in outcome)
          throw new ClusterStateError('every cluster subnet is in use; try again later')
        // Another placement took some of these devices first; the index learns that on the next pull.
        if (attempt >= placementAttempts)
          throw new ClusterStateError(
            `the chosen machines were taken by other clusters ${placementAttempts} times; try again`,
          )
      }
    })
  }

  async get(accountId: string, clusterId: string): Promise<ClusterView> {
    return this.#view(await this.#owned(accountId, clusterId))
  }

  async list(accountId: string, limit: number): Promise<ClusterView[]> {
    const clusters = await this.#components.store.listClusters(accountId, limit)
    return Promise.all(clusters.map((cluster) => this.#view(this.#clusters.get(cluster.id) ?? cluster)))
  }

  terminate(accountId: string, clusterId: string): Promise<ClusterView> {
    return this.#serial(async () => {
      const cluster = await this.#owned(accountId, clusterId)
      if (!isTerminalCluster(cluster) && cluster.desired !== 'terminated') {
        await this.#patchCluster(cluster.id, { desired: 'terminated' })
        await this.#reconcile(cluster.id)
      }
      return this.#view(this.#clusters.get(clusterId) ?? (await this.#owned(accountId, clusterId)))
    })
  }

  extend(accountId: string, clusterId: string, hours: number): Promise<ClusterView> {
    return this.#serial(async () => {
      const cluster = await this.#owned(accountId, clusterId)
      if (isTerminalCluster(cluster) || cluster.desired === 'terminated')
        throw new ClusterStateError(`cluster ${clusterId} is ${cluster.state}; it can no longer be extended`)
      const addedMs = Math.round(hours * 3_600_000)
      // The extra hours are held first; a wallet that cannot pay leaves the cluster as it was.
      const billing = this.#components.billing
      if (billing) this.#clusters.set(clusterId, await billing.extend(cluster, addedMs))
      await this.#patchCluster(cluster.id, {
        durationMs: cluster.durationMs + addedMs,
        ...(cluster.expiresAtMs === null ? {} : { expiresAtMs: cluster.expiresAtMs + addedMs }),
      })
      await this.#appendEvents([
        {
          clusterId,
          atMs: this.#components.clock.nowMs(),
          kind: 'extended',
          deviceId: null,
          message: `extended by ${hours} h`,
        },
      ])
      return this.#view(this.#clusters.get(clusterId)!)
    })
  }

  /** The cluster's events after `afterSeq`; waits up to `waitMs` for one when there is none yet. */
  async events(accountId: string, clusterId: string, afterSeq: bigint, limit: number, waitMs: number) {
    await this.#owned(accountId, clusterId)
    const read = () => this.#components.store.listClusterEvents(clusterId, afterSeq, limit)
    let events = await read()
    if (events.length === 0 && waitMs > 0) {
      await this.#waitFor(clusterId, waitMs)
      events = await read()
    }
    return events
  }

  // --- renters' machines on the mesh ----------------------------------------------------------------

  /** Adds the renter's machine as a peer of every node; the same key again returns its configuration. */
  connectClient(
    accountId: string,
    clusterId: string,
    publicKey: string,
    name: string,
  ): Promise<ClusterClientConfig> {
    return this.#serial(async () => {
      const cluster = await this.#owned(accountId, clusterId)
      if (isTerminalCluster(cluster) || cluster.desired === 'terminated')
        throw new ClusterStateError(`cluster ${clusterId} is ${cluster.state}; no machine can join its mesh`)
      const client = await this.#components.store.addClusterClient({
        clusterId,
        publicKey,
        name,
        nowMs: this.#components.clock.nowMs(),
      })
      if (!client)
        throw new ClusterStateError(
          `cluster ${clusterId} has ended or has no free client address (at most ${maxClusterClients})`,
        )
      const clients = this.#clients.get(clusterId) ?? []
      if (!clients.some((known) => known.publicKey === publicKey)) {
        this.#clients.set(clusterId, [...clients, client])
        await this.#event(
          clusterId,
          'client_joined',
          `${name} joined the mesh at ${this.#clientAddress(cluster, client)}`,
        )
      }
      await this.#reconcile(clusterId)
      return this.#clientConfig(this.#clusters.get(clusterId) ?? cluster, client)
    })
  }

  async listClients(accountId: string, clusterId: string): Promise<ClusterClientConfig[]> {
    const cluster = await this.#owned(accountId, clusterId)
    const clients =
      this.#clients.get(clusterId) ?? (await this.#components.store.listClusterClients(clusterId))
    return clients.map((client) => this.#clientConfig(cluster, client))
  }

  removeClient(accountId: string, clusterId: string, publicKey: string): Promise<void> {
    return this.#serial(async () => {
      await this.#owned(accountId, clusterId)
      const removed = await this.#components.store.removeClusterClient(
        clusterId,
        publicKey,
        this.#components.clock.nowMs(),
      )
      if (!removed) throw new NotFoundError(`no client with that key on cluster ${clusterId}`)
      const clients = this.#clients.get(clusterId)
      if (clients) {
        this.#clients.set(
          clusterId,
          clients.filter((client) => client.publicKey !== publicKey),
        )
        await this.#event(clusterId, 'client_left', 'a client left the mesh')
        await this.#reconcile(clusterId)
      }
    })
  }

  #clientAddress(cluster: ClusterRecord, client: ClusterClientRecord): string {
    return cluster.subnetIndex === null
      ? ''
      : nodeAddress(clusterSubnet(cluster.subnetIndex), client.addressIndex)
  }

  #clientConfig(cluster: ClusterRecord, client: ClusterClientRecord): ClusterClientConfig {
    const nodes = (this.#nodes.get(cluster.id) ?? []).filter(
      (node) => isActiveNode(node) && node.wgPublicKey !== null && node.endpoint !== null,
    )
    const head = nodes.find((node) => node.role === 'head')
    const headAddress = head ? overlayAddressOf(cluster, head) : null
    return {
      clusterId: cluster.id,
      name: client.name,
      publicKey: client.publicKey,
      address: `${this.#clientAddress(cluster, client)}/${overlayPrefixLength}`,
      subnet: cluster.subnetIndex === null ? '' : clusterSubnet(cluster.subnetIndex),
      peers: nodes.map((node) => ({
        publicKey: node.wgPublicKey!,
        endpoint: node.endpoint!,
        overlayAddress: overlayAddressOf(cluster, node)!,
      })),
      rayAddress: headAddress ? `${headAddress}:${rayGcsPort}` : null,
      rayClientAddress: headAddress ? `ray://${headAddress}:${rayClientPort}` : null,
    }
  }

  // --- jobs ----------------------------------------------------------------------------------------

  submitJob(accountId: string, clusterId: string, body: JobSubmission): Promise<JobView> {
    return this.#serial(async () => {
      const cluster = await this.#owned(accountId, clusterId)
      if (cluster.state !== 'ready')
        throw new ClusterStateError(`cluster ${clusterId} is ${cluster.state}; jobs run on a ready cluster`)
      const head = this.#activeNodes(clusterId).find((node) => node.role === 'head')
      const job: ClusterJobRecord = {
        id: (this.#components.mintId ?? mintId)('job'),
        clusterId,
        accountId,
        entrypoint: body.entrypoint,
        status: 'pending',
        message: 'submitted',
        exitCode: null,
        createdAtMs: this.#components.clock.nowMs(),
        finishedAtMs: null,
        runtimeEnvJson: JSON.stringify(body.runtimeEnv ?? {}),
        metadataJson: JSON.stringify(body.metadata ?? {}),
      }
      await this.#components.store.insertJob(job)
      const sent =
        head !== undefined &&
        this.#components.links.send(head.deviceId, {
          type: 'cluster_job_submit',
          clusterId,
          jobId: job.id,
          entrypoint: body.entrypoint,
          workingDirTarGz: body.workingDirTarGz ?? null,
          // Only what a Ray submission carries, so gpumesh's own jobs reach older workers unchanged.
          ...(body.runtimeEnv ? { runtimeEnv: body.runtimeEnv } : {}),
          ...(body.packages?.length ? { packages: body.packages } : {}),
          ...(body.entrypointResources ? { entrypointResources: body.entrypointResources } : {}),
        })
      if (!sent) {
        const failed = await this.#components.store.updateJob(job.id, {
          status: 'failed',
          message: 'the head node is not connected',
          finishedAtMs: this.#components.clock.nowMs(),
        })
        return jobView(failed ?? job)
      }
      return jobView(job)
    })
  }

  async listJobs(accountId: string, clusterId: string): Promise<JobView[]> {
    await this.#owned(accountId, clusterId)
    return (await this.#components.store.listJobs(clusterId, maxJobsListed)).map(jobView)
  }

  async getJob(accountId: string, clusterId: string, jobId: string): Promise<ClusterJobRecord> {
    await this.#owned(accountId, clusterId)
    const job = await this.#components.store.getJob(jobId)
    if (!job || job.clusterId !== clusterId)
      throw new NotFoundError(`no job ${jobId} on cluster ${clusterId}`)
    return job
  }

  async jobLogs(
    accountId: string,
    clusterId: string,
    jobId: string,
    after: number,
    limit: number,
    waitMs: number,
  ) {
    let job = await this.getJob(accountId, clusterId, jobId)
    const read = () => this.#components.store.readJobLog(jobId, after, limit)
    let chunks = await read()
    if (chunks.length === 0 && waitMs > 0 && !isTerminalJob(job.status)) {
      await this.#waitFor(`${clusterId}/${jobId}`, waitMs)
      chunks = await read()
      job = await this.getJob(accountId, clusterId, jobId)
    }
    // The head sends a job's last output before its final status, so a terminal job read before its
    // chunks has nothing more to come.
    const complete = isTerminalJob(job.status) && chunks.length < limit
    return { chunks, complete, job: jobView(job) }
  }

  /** Removes a finished job and its log (Ray's DELETE /api/jobs/{id}); false while it still runs. */
  async deleteJob(accountId: string, clusterId: string, jobId: string): Promise<boolean> {
    await this.getJob(accountId, clusterId, jobId)
    return this.#components.store.deleteJob(jobId)
  }

  async stopJob(accountId: string, clusterId: string, jobId: string): Promise<JobView> {
    const job = await this.getJob(accountId, clusterId, jobId)
    if (isTerminalJob(job.status)) return jobView(job)
    const head = this.#activeNodes(clusterId).find((node) => node.role === 'head')
    if (!head || !this.#components.links.send(head.deviceId, { type: 'cluster_job_stop', clusterId, jobId }))
      throw new ClusterStateError('the head node is not connected; the job cannot be stopped now')
    return jobView(job)
  }

  // --- worker reports --------------------------------------------------------------------------------

  /**
   * A device's self-test found it can no longer run cluster nodes (a tool was removed, the runtime broke):
   * its nodes are lost now, with that reason, and replaced under their clusters' constraints.
   */
  onCapabilities(deviceId: string, capabilities: WorkerCapabilities): Promise<void> {
    return this.#serial(async () => {
      if (capabilities.clusterNodes.available) return
      const reason = `its machine can no longer run cluster nodes: ${capabilities.clusterNodes.reason}`
      for (const clusterId of [...this.#clusters.keys()]) {
        if (!this.#activeNodes(clusterId).some((node) => node.deviceId === deviceId)) continue
        await this.#releaseNode(clusterId, deviceId, 'lost', reason)
        this.#components.links.send(deviceId, { type: 'cluster_release', clusterId, reason })
        await this.#reconcile(clusterId)
      }
    })
  }

  /** A report from a worker about a cluster node; refused unless the device is a node of that cluster. */
  onReport(deviceId: string, message: ClusterReportMessage): Promise<void> {
    return this.#serial(() => this.#handleReport(deviceId, message))
  }

  async #handleReport(deviceId: string, message: ClusterReportMessage): Promise<void> {
    const { store, clock, links, logger } = this.#components
    const nowMs = clock.nowMs()
    if (message.type === 'cluster_nodes_held') return this.#reconcileHeld(deviceId, message.clusterIds)
    const { clusterId } = message
    const cluster = this.#clusters.get(clusterId)
    const node = this.#activeNodes(clusterId).find((candidate) => candidate.deviceId === deviceId)
    if (!cluster || !node) {
      if (message.type === 'cluster_node_status' && message.phase === 'released') return
      logger.warn(
        { deviceId, clusterId, type: message.type },
        'refused a report for a cluster the device is not in',
      )
      links.send(deviceId, {
        type: 'error',
        code: 'GPUMESH_ERR_NOT_A_MEMBER',
        message: `this device is not a node of cluster ${clusterId}; report refused`,
      })
      links.send(deviceId, { type: 'cluster_release', clusterId, reason: 'not a node of this cluster' })
      return
    }
    const fromHead = node.role === 'head'
    switch (message.type) {
      case 'cluster_node_key': {
        if (node.phase !== 'reserved') {
          if (node.wgPublicKey === message.publicKey) return
          logger.warn({ deviceId, clusterId }, 'refused a mesh key the node was not asked for')
          links.send(deviceId, {
            type: 'error',
            code: 'GPUMESH_ERR_UNEXPECTED_KEY',
            message: `cluster ${clusterId}: this node already has a mesh key; a new one was not asked for`,
          })
          return
        }
        const host = message.endpointHost ?? links.remoteAddressOf(deviceId)
        if (!host) return
        const endpoint = `${host}:${message.listenPort}`
        await this.#patchNode(clusterId, deviceId, {
          phase: 'keyed',
          phaseReason: 'mesh key received',
          wgPublicKey: message.publicKey,
          endpoint,
        })
        break
      }
      case 'cluster_node_status':
        if (message.phase === 'mesh_up') {
          if (message.meshRevision) this.#confirmedMesh.set(`${clusterId}|${deviceId}`, message.meshRevision)
          if (node.phase === 'keyed') {
            await this.#patchNode(clusterId, deviceId, { phase: 'mesh_up', phaseReason: message.detail })
            await this.#event(
              clusterId,
              'node_mesh_up',
              `mesh up at ${overlayAddressOf(cluster, node)}`,
              deviceId,
            )
          }
        } else if (message.phase === 'ray_started') {
          // The worker runs commands in order: this confirms the last Ray command it was sent. One event per
          // Ray it started: a command sent again (Ray was slow to report) is answered "already running".
          const key = `${clusterId}|${deviceId}`
          const sent = this.#sent.get(`${key}|ray`)
          const firstConfirmation = sent !== undefined && this.#confirmedRay.get(key) !== sent.signature
          if (sent) this.#confirmedRay.set(key, sent.signature)
          if (firstConfirmation)
            await this.#event(clusterId, 'node_ray_started', `Ray started (${message.detail})`, deviceId)
        } else if (message.phase === 'failed') {
          await this.#releaseNode(clusterId, deviceId, 'lost', `its worker reported: ${message.detail}`)
        } else if (message.phase === 'released') {
          const expected = cluster.state === 'terminating'
          await this.#releaseNode(
            clusterId,
            deviceId,
            expected ? 'released' : 'lost',
            expected ? 'released by its worker' : `its worker released it: ${message.detail}`,
          )
        }
        break
      case 'cluster_ray_nodes':
        if (!fromHead) return
        this.#alive.set(clusterId, new Set(message.alive))
        break
      case 'cluster_job_log': {
        if (!fromHead) return
        const job = await store.getJob(message.jobId)
        if (job?.clusterId !== clusterId) return
        await store.appendJobLog(message.jobId, message.text)
        this.#wake(`${clusterId}/${message.jobId}`)
        return
      }
      case 'cluster_job_status': {
        if (!fromHead) return
        const job = await store.getJob(message.jobId)
        if (job?.clusterId !== clusterId) return
        const terminal = isTerminalJob(message.status)
        const updated = await store.updateJob(message.jobId, {
          status: message.status,
          message: message.message,
          exitCode: message.exitCode,
          ...(terminal ? { finishedAtMs: nowMs } : {}),
        })
        if (terminal && updated && job.status !== updated.status)
          await this.#event(
            clusterId,
            'job_finished',
            `job ${job.id} ${message.status}: ${message.message}`.slice(0, 500),
          )
        this.#wake(`${clusterId}/${message.jobId}`)
        return
      }
    }
    await this.#reconcile(clusterId)
  }

  /** After a worker (re)connects: nodes it no longer runs are lost; nodes it runs but should not are released. */
  async #reconcileHeld(deviceId: string, heldClusterIds: readonly string[]): Promise<void> {
    const held = new Set(heldClusterIds)
    for (const [clusterId] of this.#clusters) {
      const node = this.#activeNodes(clusterId).find((candidate) => candidate.deviceId === deviceId)
      if (node && !held.has(clusterId) && node.phase !== 'reserved') {
        await this.#releaseNode(
          clusterId,
          deviceId,
          'lost',
          'its worker restarted and no longer runs the node',
        )
        await this.#reconcile(clusterId)
      }
      held.delete(clusterId)
      if (node) {
        // A fresh link: whatever was sent on the old one is sent again.
        for (const kind of ['prepare', 'mesh', 'ray', 'release'] as const)
          this.#sent.delete(`${clusterId}|${deviceId}|${kind}`)
      }
    }
    for (const clusterId of held)
      this.#components.links.send(deviceId, {
        type: 'cluster_release',
        clusterId,
        reason: 'the cluster has ended',
      })
  }

  // --- internals ---------------------------------------------------------------------------------------

  #observePresence(nowMs: number): void {
    const seen = new Set<string>()
    for (const nodes of this.#nodes.values()) {
      for (const node of nodes) {
        if (!isActiveNode(node)) continue
        seen.add(node.deviceId)
        if (this.#components.presence.isConnected(node.deviceId)) this.#offlineSince.delete(node.deviceId)
        else if (!this.#offlineSince.has(node.deviceId)) this.#offlineSince.set(node.deviceId, nowMs)
      }
    }
    for (const deviceId of this.#offlineSince.keys())
      if (!seen.has(deviceId)) this.#offlineSince.delete(deviceId)
  }

  async #reconcile(clusterId: string): Promise<void> {
    // A few rounds: one decision (a replacement reserved, a node joined) often enables the next at once.
    for (let round = 0; round < 4; round += 1) {
      const cluster = this.#clusters.get(clusterId)
      if (!cluster) return
      const nowMs = this.#components.clock.nowMs()
      this.#observePresence(nowMs)
      const decision = reconcileCluster(
        {
          cluster,
          nodes: this.#nodes.get(clusterId) ?? [],
          nowMs,
          offlineSinceMs: (deviceId) => this.#offlineSince.get(deviceId),
          aliveAddresses: this.#alive.get(clusterId),
          lastSent: (deviceId, kind) => this.#sent.get(`${clusterId}|${deviceId}|${kind}`),
          confirmedMeshRevision: (deviceId) => this.#confirmedMesh.get(`${clusterId}|${deviceId}`),
          confirmedRay: (deviceId) => this.#confirmedRay.get(`${clusterId}|${deviceId}`),
          clients: this.#clients.get(clusterId) ?? [],
        },
        this.#policy,
      )
      let changed = false
      for (const release of decision.releases) {
        await this.#releaseNode(clusterId, release.deviceId, release.phase, release.reason, {
          announce: false,
          ...(release.servedUntilMs === undefined ? {} : { servedUntilMs: release.servedUntilMs }),
        })
        changed = true
      }
      for (const { deviceId, patch } of decision.nodePatches) {
        await this.#patchNode(clusterId, deviceId, patch)
        changed = true
      }
      if (decision.resetAlive) {
        this.#alive.delete(clusterId)
        await this.#failRunningJobs(clusterId, 'the head node was lost')
      }
      await this.#appendEvents(decision.events)
      for (const command of decision.commands)
        this.#send(clusterId, command.deviceId, command.kind, command.signature, command.message)
      if (decision.clusterPatch) {
        await this.#patchCluster(clusterId, decision.clusterPatch)
        changed = true
      }
      if (
        decision.replacementsNeeded > 0 &&
        (await this.#placeReplacements(clusterId, decision.replacementsNeeded))
      )
        changed = true
      if (!changed) return
    }
  }

  #send(
    clusterId: string,
    deviceId: string,
    kind: CommandKind,
    signature: string,
    message: Parameters<ClusterLinks['send']>[1],
  ) {
    if (this.#components.links.send(deviceId, message))
      this.#sent.set(`${clusterId}|${deviceId}|${kind}`, { signature, atMs: this.#components.clock.nowMs() })
  }

  /** Reserves replacements under the cluster's own constraints; true when any was added. */
  async #placeReplacements(clusterId: string, needed: number): Promise<boolean> {
    const { store, clock, index } = this.#components
    const cluster = this.#clusters.get(clusterId)!
    const nowMs = clock.nowMs()
    const triedAt = this.#replacementTriedAt.get(clusterId)
    if (triedAt !== undefined && nowMs - triedAt < replacementRetryMs) return false
    this.#replacementTriedAt.set(clusterId, nowMs)
    await this.#components.pullOffers()
    const { request } = resolveClusterRequest(cluster.request as ClusterRequestBody)
    const members = this.#nodes.get(clusterId) ?? []
    const memberIds = new Set(members.map((node) => node.deviceId))
    const full = index.placementSnapshot()
    const snapshot: SupplySnapshot = {
      nodes: full.nodes.filter((node) => !memberIds.has(node.deviceId)),
      roundTripMs: full.roundTripMs,
    }
    const placement = this.#timedPlacement('replacement', () =>
      placeCluster(snapshot, { ...request, nodeCount: needed }),
    )
    if (!placement.ok) {
      // One event per fact: said again only when the reason changes, not at every retry.
      const message = `no replacement available yet: ${placement.detail}`
      if (this.#replacementUnavailable.get(clusterId) !== message) {
        this.#replacementUnavailable.set(clusterId, message)
        await this.#event(clusterId, 'replacement_unavailable', message)
      }
      return false
    }
    this.#replacementUnavailable.delete(clusterId)
    // Priced for what is left of the rental, as the first nodes were for all of it.
    const remainingMs = cluster.expiresAtMs === null ? cluster.durationMs : cluster.expiresAtMs - nowMs
    const priced = priceNodes(placement.nodes, Math.max(remainingMs, 0) / 3_600_000, this.#components.market)
    let added = false
    for (const [position, candidate] of placement.nodes.entries()) {
      const hasHead = this.#activeNodes(clusterId).some((node) => node.role === 'head')
      const node = await store.addClusterNode({
        clusterId,
        accountId: cluster.accountId,
        deviceId: candidate.deviceId,
        role: hasHead ? 'worker' : 'head',
        nowMs,
        pricePerHourMicroUsd: priced.nodePricesPerHourMicroUsd[position]!,
      })
      if (!node) continue
      this.#nodes.get(clusterId)!.push(node)
      this.#components.onDevicesReserved?.([node.deviceId], `rented for cluster ${clusterId}`)
      await this.#event(clusterId, 'node_reserved', `replacement reserved as ${node.role}`, node.deviceId)
      added = true
    }
    if (added) {
      this.#replacementTriedAt.delete(clusterId)
      await this.#coverReplacements(clusterId)
      await this.#components.pullOffers()
    }
    return added
  }

  async #releaseNode(
    clusterId: string,
    deviceId: string,
    phase: 'lost' | 'released',
    reason: string,
    { announce = true, servedUntilMs }: { announce?: boolean; servedUntilMs?: number } = {},
  ): Promise<void> {
    const nodes = this.#nodes.get(clusterId)
    const index = nodes?.findIndex((node) => node.deviceId === deviceId && isActiveNode(node)) ?? -1
    if (!nodes || index < 0) return
    const nowMs = this.#components.clock.nowMs()
    await this.#components.store.releaseClusterNode(clusterId, deviceId, phase, reason, nowMs, servedUntilMs)
    const wasHead = nodes[index]!.role === 'head'
    nodes[index] = { ...nodes[index]!, phase, phaseReason: reason, leftAtMs: nowMs }
    for (const kind of ['prepare', 'mesh', 'ray', 'release'] as const)
      this.#sent.delete(`${clusterId}|${deviceId}|${kind}`)
    this.#confirmedMesh.delete(`${clusterId}|${deviceId}`)
    this.#confirmedRay.delete(`${clusterId}|${deviceId}`)
    if (announce)
      await this.#event(
        clusterId,
        phase === 'lost' ? 'node_lost' : 'node_released',
        `${phase}: ${reason}`,
        deviceId,
      )
    if (wasHead && phase === 'lost') {
      this.#alive.delete(clusterId)
      await this.#failRunningJobs(clusterId, 'the head node was lost')
    }
    await this.#components.pullOffers()
  }

  async #failRunningJobs(clusterId: string, reason: string): Promise<void> {
    const { store, clock } = this.#components
    for (const job of await store.listJobs(clusterId, maxJobsListed)) {
      if (isTerminalJob(job.status)) continue
      await store.updateJob(job.id, { status: 'failed', message: reason, finishedAtMs: clock.nowMs() })
      this.#wake(`${clusterId}/${job.id}`)
    }
  }

  async #patchNode(clusterId: string, deviceId: string, patch: Parameters<Store['updateClusterNode']>[2]) {
    await this.#components.store.updateClusterNode(clusterId, deviceId, patch, this.#components.clock.nowMs())
    const nodes = this.#nodes.get(clusterId) ?? []
    const index = nodes.findIndex((node) => node.deviceId === deviceId)
    if (index >= 0) nodes[index] = { ...nodes[index]!, ...patch }
  }

  /**
   * A replacement may cost more than the node it replaced: the hold is topped up so it still covers the rest
   * of the rental at the nodes' prices now. A wallet that cannot is told in the events; charges never exceed
   * what is held.
   */
  async #coverReplacements(clusterId: string): Promise<void> {
    const billing = this.#components.billing
    const cluster = this.#clusters.get(clusterId)
    if (!billing || !cluster || cluster.billingHoldId === null) return
    const hourly = this.#activeNodes(clusterId).reduce((sum, node) => sum + node.pricePerHourMicroUsd, 0n)
    try {
      const covered = await billing.coverRemaining(cluster, hourly)
      this.#clusters.set(clusterId, covered.cluster)
      if (covered.toppedUp)
        await this.#event(
          clusterId,
          'hold_topped_up',
          `${covered.toppedUp} GMT more held for a dearer replacement`,
        )
    } catch (error) {
      if (!(error instanceof InsufficientFundsError)) throw error
      await this.#event(
        clusterId,
        'funds_short',
        `the replacement costs more than the node it replaced and the wallet cannot hold the difference: ${error.message}`,
      )
    }
  }

  /** Charges what a running cluster has used; a failure is logged and retried on the next tick. */
  async #bill(clusterId: string): Promise<void> {
    const billing = this.#components.billing
    const cluster = this.#clusters.get(clusterId)
    if (!billing || !cluster || cluster.billingHoldId === null || cluster.readyAtMs === null) return
    try {
      this.#clusters.set(clusterId, await billing.billDue(cluster))
    } catch (error) {
      this.#components.logger.error({ err: error, clusterId }, 'billing failed; will retry')
    }
  }

  async #patchCluster(clusterId: string, patch: Parameters<Store['updateCluster']>[1]): Promise<void> {
    let updated = await this.#components.store.updateCluster(clusterId, patch, this.#components.clock.nowMs())
    if (patch.readyAtMs !== undefined && patch.readyAtMs !== null)
      this.#components.metrics?.provisioningSeconds.observe((patch.readyAtMs - updated.createdAtMs) / 1000)
    // Ending: charge what the nodes served up to the end, then release the rest of the hold.
    const billing = this.#components.billing
    if (
      billing &&
      updated.billingHoldId !== null &&
      (updated.state === 'terminating' || isTerminalCluster(updated))
    )
      updated = await billing.close(updated)
    if (isTerminalCluster(updated)) {
      this.#forget(clusterId)
      await this.#components.pullOffers()
    } else {
      this.#clusters.set(clusterId, updated)
    }
  }

  #forget(clusterId: string): void {
    this.#clusters.delete(clusterId)
    this.#nodes.delete(clusterId)
    this.#clients.delete(clusterId)
    this.#alive.delete(clusterId)
    this.#replacementTriedAt.delete(clusterId)
    this.#replacementUnavailable.delete(clusterId)
    for (const key of [...this.#sent.keys()]) if (key.startsWith(`${clusterId}|`)) this.#sent.delete(key)
    for (const confirmed of [this.#confirmedMesh, this.#confirmedRay])
      for (const key of [...confirmed.keys()]) if (key.startsWith(`${clusterId}|`)) confirmed.delete(key)
  }

  #activeNodes(clusterId: string): ClusterNodeRecord[] {
    return (this.#nodes.get(clusterId) ?? []).filter(isActiveNode)
  }

  async #owned(accountId: string, clusterId: string): Promise<ClusterRecord> {
    const cluster = this.#clusters.get(clusterId) ?? (await this.#components.store.getCluster(clusterId))
    // Another account's cluster is answered exactly like a missing one.
    if (!cluster || cluster.accountId !== accountId) throw new NotFoundError(`no cluster ${clusterId}`)
    return cluster
  }

  async #view(cluster: ClusterRecord): Promise<ClusterView> {
    const nodes = this.#nodes.get(cluster.id) ?? (await this.#components.store.listClusterNodes(cluster.id))
    const head = nodes.find((node) => node.role === 'head' && isActiveNode(node))
    const headAddress = head ? overlayAddressOf(cluster, head) : null
    const [escrow] = await this.#components.store.ledger.getAccounts([ledgerAccounts.escrow(cluster.id).id])
    const periods =
      cluster.readyAtMs === null ? [] : await this.#components.store.listClusterNodeService(cluster.id)
    // A cluster whose billing is closed was charged up to billedUntilMs: its nodes served until then.
    const servedUntilMs =
      escrow && cluster.billingHoldId === null && cluster.billedUntilMs !== null
        ? cluster.billedUntilMs
        : Math.min(this.#components.clock.nowMs(), billingEndMs(cluster))
    return {
      id: cluster.id,
      name: cluster.name,
      state: cluster.state,
      stateReason: cluster.stateReason,
      desired: cluster.desired,
      nodeCount: cluster.nodeCount,
      gpusPerNode: cluster.gpusPerNode,
      durationHours: cluster.durationMs / 3_600_000,
      pricePerHourUsd: formatMicroUsd(cluster.pricePerHourMicroUsd),
      subnet: cluster.subnetIndex === null ? null : clusterSubnet(cluster.subnetIndex),
      rayAddress: headAddress && cluster.state !== 'pending' ? `${headAddress}:${rayGcsPort}` : null,
      createdAtMs: cluster.createdAtMs,
      provisionDeadlineAtMs:
        cluster.readyAtMs === null && !isTerminalCluster(cluster)
          ? cluster.createdAtMs + this.#policy.provisionTimeoutMs
          : null,
      readyAtMs: cluster.readyAtMs,
      expiresAtMs: cluster.expiresAtMs,
      endedAtMs: cluster.endedAtMs,
      nodes: nodes.map((node) => ({
        deviceId: node.deviceId,
        role: node.role,
        phase: node.phase,
        phaseReason: node.phaseReason,
        overlayAddress: overlayAddressOf(cluster, node),
        joinedAtMs: node.joinedAtMs,
        leftAtMs: node.leftAtMs,
        pricePerHourUsd: formatMicroUsd(node.pricePerHourMicroUsd),
        servedMs:
          cluster.readyAtMs === null ? 0 : servedMs(periods, node.deviceId, cluster.readyAtMs, servedUntilMs),
      })),
      billing: escrow
        ? {
            chargedGmt: formatGmtUnits(escrow.creditsPosted),
            heldGmt: formatGmtUnits(escrow.creditsPending),
            intervalsCharged: cluster.billedIntervals,
            billedUntilMs: cluster.billedUntilMs,
          }
        : null,
    }
  }

  async #event(clusterId: string, kind: string, message: string, deviceId: string | null = null) {
    await this.#appendEvents([{ clusterId, atMs: this.#components.clock.nowMs(), kind, deviceId, message }])
  }

  async #appendEvents(events: readonly NewClusterEvent[]): Promise<void> {
    if (events.length === 0) return
    await this.#components.store.appendClusterEvents(events)
    for (const clusterId of new Set(events.map((event) => event.clusterId))) this.#wake(clusterId)
  }

  #waitFor(key: string, waitMs: number): Promise<void> {
    return new Promise((resolve) => {
      const waiters = this.#waiters.get(key) ?? new Set<Waiter>()
      this.#waiters.set(key, waiters)
      const done = () => {
        clearTimeout(timer)
        waiters.delete(done)
        if (waiters.size === 0) this.#waiters.delete(key)
        resolve()
      }
      const timer = setTimeout(done, waitMs)
      waiters.add(done)
    })
  }

  #wake(key: string): void {
    for (const waiter of [...(this.#waiters.get(key) ?? [])]) waiter()
  }

  #serial<T>(work: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(work)
    this.#queue = next.catch(() => undefined)
    return next
  }
}

export function isTerminalJob(status: string): boolean {
  return status === 'succeeded' || status === 'failed' || status === 'stopped'
}

export function jobView(job: ClusterJobRecord): JobView {
  return {
    id: job.id,
    clusterId: job.clusterId,
    entrypoint: job.entrypoint,
    status: job.status,
    message: job.message,
    exitCode: job.exitCode,
    createdAtMs: job.createdAtMs,
    finishedAtMs: job.finishedAtMs,
  }
}
