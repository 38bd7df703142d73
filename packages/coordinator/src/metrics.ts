import { Counter, Gauge, Histogram, Registry } from 'prom-client'

// The figures an operator watches, in Prometheus's format at GET /metrics. Each coordinator has its own
// registry (tests run many in one process). Counters and histograms are fed where the event happens; the
// gauges are read when Prometheus scrapes, from what the coordinator already holds.

export type CoordinatorMetrics = {
  readonly registry: Registry
  readonly heartbeats: Counter
  readonly placementSeconds: Histogram<'kind'>
  readonly provisioningSeconds: Histogram
  readonly gatewayRequests: Counter<'model' | 'outcome'>
  readonly gatewaySeconds: Histogram<'model'>
  readonly gatewayTokens: Counter<'model' | 'kind'>
  readonly verificationOutcomes: Counter<'outcome' | 'reason'>
  readonly ledgerVerifyOk: Gauge
  readonly ledgerVerifiedAtSeconds: Gauge
}

/** What the scrape reads from the running coordinator. */
export type MetricSources = {
  connectedWorkers(): number
  clustersByState(): Record<string, number>
  replicasByPhase(): Record<string, number>
  /** The ledger's newest transfer sequence number: transfers made so far, less rolled-back numbers. */
  ledgerTransferSeq(): Promise<bigint>
}

const secondsBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
const provisioningBuckets = [5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600]

export function createCoordinatorMetrics(): CoordinatorMetrics {
  const registry = new Registry()
  const registers = [registry]
  return {
    registry,
    heartbeats: new Counter({
      name: 'gpumesh_worker_heartbeats_total',
      help: 'Heartbeats received from workers',
      registers,
    }),
    placementSeconds: new Histogram({
      name: 'gpumesh_placement_duration_seconds',
      help: 'Time to place a gang of nodes (kind: cluster or replacement)',
      labelNames: ['kind'],
      buckets: secondsBuckets,
      registers,
    }),
    provisioningSeconds: new Histogram({
      name: 'gpumesh_cluster_provisioning_seconds',
      help: 'From a cluster created to Ray reporting every node alive',
      buckets: provisioningBuckets,
      registers,
    }),
    gatewayRequests: new Counter({
      name: 'gpumesh_gateway_requests_total',
      help: 'Inference requests by model and outcome (succeeded, failed)',
      labelNames: ['model', 'outcome'],
      registers,
    }),
    gatewaySeconds: new Histogram({
      name: 'gpumesh_gateway_request_duration_seconds',
      help: 'Inference request time at the gateway, to the last byte',
      labelNames: ['model'],
      buckets: secondsBuckets,
      registers,
    }),
    gatewayTokens: new Counter({
      name: 'gpumesh_gateway_tokens_total',
      help: 'Tokens charged by the gateway, by model and kind (prompt, completion)',
      labelNames: ['model', 'kind'],
      registers,
    }),
    verificationOutcomes: new Counter({
      name: 'gpumesh_verification_outcomes_total',
      help: 'Proof-of-compute outcomes (passed, failed) and the failure reason',
      labelNames: ['outcome', 'reason'],
      registers,
    }),
    ledgerVerifyOk: new Gauge({
      name: 'gpumesh_ledger_verify_ok',
      help: 'The last ledger verification: 1 every balance matched its transfers, 0 it did not',
      registers,
    }),
    ledgerVerifiedAtSeconds: new Gauge({
      name: 'gpumesh_ledger_verified_at_seconds',
      help: 'When the ledger was last verified (Unix time)',
      registers,
    }),
  }
}

/** The gauges that are read at scrape time. */
export function registerMetricSources(metrics: CoordinatorMetrics, sources: MetricSources): void {
  const registers = [metrics.registry]
  new Gauge({
    name: 'gpumesh_workers_connected',
    help: 'Workers with an authenticated link to this coordinator process',
    registers,
    collect() {
      this.set(sources.connectedWorkers())
    },
  })
  new Gauge({
    name: 'gpumesh_clusters',
    help: 'Active clusters by state',
    labelNames: ['state'],
    registers,
    collect() {
      this.reset()
      for (const [state, count] of Object.entries(sources.clustersByState())) this.set({ state }, count)
    },
  })
  new Gauge({
    name: 'gpumesh_model_replicas',
    help: 'Model replicas by phase (requested, starting, ready, draining, ...)',
    labelNames: ['phase'],
    registers,
    collect() {
      this.reset()
      for (const [phase, count] of Object.entries(sources.replicasByPhase())) this.set({ phase }, count)
    },
  })
  new Gauge({
    name: 'gpumesh_ledger_transfer_seq',
    help: "The ledger's newest transfer sequence number: its rate is ledger transfers per second",
    registers,
    async collect() {
      this.set(Number(await sources.ledgerTransferSeq()))
    },
  })
}
