import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { capable, incapable } from '@gpumesh/protocol'
import { createWorkerMetrics, recordCapabilities, serveWorkerMetrics } from '@gpumesh/worker'

describe('worker metrics', () => {
  it('serves its figures on loopback at /metrics, and nothing else', async () => {
    let nodes = 0
    const metrics = createWorkerMetrics({ clusterNodes: () => nodes, modelReplicas: () => 1 })
    metrics.linkUp.set(1)
    metrics.heartbeatsSent.inc(3)
    recordCapabilities(metrics, {
      clusterNodes: incapable('wireguard-go: not found'),
      modelReplicas: capable(),
      gpus: incapable('no GPU'),
      checks: [],
      testedAtMs: 0,
    })
    const server = await serveWorkerMetrics(metrics.registry, 0)
    try {
      nodes = 2
      const text = await (await fetch(`http://127.0.0.1:${server.port}/metrics`)).text()
      for (const [series, value] of [
        ['gpumesh_worker_link_up', 1],
        ['gpumesh_worker_heartbeats_sent_total', 3],
        ['gpumesh_worker_cluster_nodes', 2],
        ['gpumesh_worker_model_replicas', 1],
        ['gpumesh_worker_capability{capability="clusterNodes"}', 0],
        ['gpumesh_worker_capability{capability="modelReplicas"}', 1],
      ] as const)
        assert.ok(text.split('\n').includes(`${series} ${value}`), `${series} ${value} in\n${text}`)
      assert.equal((await fetch(`http://127.0.0.1:${server.port}/`)).status, 404)
    } finally {
      await server.close()
    }
  })
})
