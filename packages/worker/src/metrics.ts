import { createServer } from 'node:http'
import { Counter, Gauge, Registry } from 'prom-client'
import type { WorkerCapabilities } from '@gpumesh/protocol'

// A worker's own figures, in Prometheus's format on 127.0.0.1 only (`worker start --metrics-port`): its link
// to the coordinator, heartbeats, the nodes and replicas it runs, proof-of-compute and what it can do.

export type WorkerMetrics = {
  readonly registry: Registry
  readonly linkUp: Gauge
  readonly heartbeatsSent: Counter
  readonly reconnects: Counter
  readonly proofs: Counter<'outcome'>
  readonly capability: Gauge<'capability'>
}

/** What the scrape reads from the running agent. */
export type WorkerMetricSources = {
  clusterNodes(): number
  modelReplicas(): number
}

export function createWorkerMetrics(sources?: WorkerMetricSources): WorkerMetrics {
  const registry = new Registry()
  const registers = [registry]
  if (sources) {
    new Gauge({
      name: 'gpumesh_worker_cluster_nodes',
      help: 'Cluster nodes this machine runs',
      registers,
      collect() {
        this.set(sources.clusterNodes())
      },
    })
    new Gauge({
      name: 'gpumesh_worker_model_replicas',
      help: 'Model replicas this machine runs',
      registers,
      collect() {
        this.set(sources.modelReplicas())
      },
    })
  }
  return {
    registry,
    linkUp: new Gauge({
      name: 'gpumesh_worker_link_up',
      help: '1 while the authenticated link to the coordinator is up',
      registers,
    }),
    heartbeatsSent: new Counter({
      name: 'gpumesh_worker_heartbeats_sent_total',
      help: 'Heartbeats sent',
      registers,
    }),
    reconnects: new Counter({
      name: 'gpumesh_worker_reconnects_total',
      help: 'Times the link to the coordinator was lost and tried again',
      registers,
    }),
    proofs: new Counter({
      name: 'gpumesh_worker_proofs_total',
      help: 'Proof-of-compute results the coordinator sent back (passed, failed)',
      labelNames: ['outcome'],
      registers,
    }),
    capability: new Gauge({
      name: 'gpumesh_worker_capability',
      help: '1 where the last self-test found the capability (clusterNodes, modelReplicas, gpus)',
      labelNames: ['capability'],
      registers,
    }),
  }
}

export function recordCapabilities(
  metrics: WorkerMetrics | undefined,
  capabilities: WorkerCapabilities,
): void {
  if (!metrics) return
  for (const name of ['clusterNodes', 'modelReplicas', 'gpus'] as const)
    metrics.capability.set({ capability: name }, capabilities[name].available ? 1 : 0)
}

export type MetricsServer = { readonly port: number; close(): Promise<void> }

/** Serves GET /metrics on 127.0.0.1:port (0: any free port): figures for the machine's own operator only. */
export function serveWorkerMetrics(registry: Registry, port: number): Promise<MetricsServer> {
  const server = createServer((request, response) => {
    if (request.method !== 'GET' || request.url?.split('?')[0] !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('only GET /metrics here\n')
      return
    }
    registry.metrics().then(
      (text) => response.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (error: unknown) => response.writeHead(500, { 'content-type': 'text/plain' }).end(`${String(error)}\n`),
    )
  })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => {
      const address = server.address()
      resolve({
        port: typeof address === 'object' && address ? address.port : port,
        close: () => new Promise((done) => server.close(() => done())),
      })
    })
  })
}
