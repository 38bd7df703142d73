import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Coordinator } from '@gpumesh/coordinator'
import type { Store } from '@gpumesh/store'
import {
  apiCaller,
  eventually,
  insertOperatorKey,
  simulatedWorker,
  startTestCoordinator,
  storeBackends,
  type SimulatedWorker,
} from '@gpumesh/testing'

// GET /metrics: the figures an operator watches, in Prometheus's text format, moving with what happens.

/** One sample's value from Prometheus's text format, or undefined when the series is absent. */
export function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

for (const backend of storeBackends) {
  describe(`coordinator metrics on ${backend.name}`, () => {
    let store: Store
    let cleanup: () => Promise<void>
    let coordinator: Coordinator
    let baseUrl: string
    const workers: SimulatedWorker[] = []
    const call = apiCaller(() => baseUrl)
    const scrape = async () => {
      const response = await fetch(`${baseUrl}/metrics`)
      assert.equal(response.status, 200)
      assert.match(response.headers.get('content-type') ?? '', /^text\/plain/)
      return response.text()
    }

    before(async () => {
      ;({ store, cleanup } = await backend.open())
      coordinator = await startTestCoordinator(store, { clusterBillingEnabled: true, billingIntervalMs: 300 })
      baseUrl = await coordinator.listen()
    })
    after(async () => {
      for (const worker of workers) worker.close()
      await coordinator?.stop()
      await cleanup?.()
    })

    it('counts workers, heartbeats, placements, clusters, provisioning, ledger transfers and verification', async () => {
      const empty = await scrape()
      assert.equal(sample(empty, 'gpumesh_workers_connected'), 0)
      assert.equal(sample(empty, 'gpumesh_worker_heartbeats_total'), 0)

      const operatorKey = await insertOperatorKey(store)
      const supplierKey = (await call('POST', '/v1/accounts', undefined, { name: 's', roles: ['supplier'] }))
        .body.apiKey.key
      const renter = (await call('POST', '/v1/accounts', undefined, { name: 'r', roles: ['renter'] })).body
      await call('POST', '/v1/operator/credits', operatorKey, {
        accountId: renter.account.id,
        amountGmt: '10',
        reason: 'test funds',
      })
      for (let index = 0; index < 2; index += 1) workers.push(await simulatedWorker(baseUrl, supplierKey))
      await eventually(
        async () => (await call('GET', '/v1/offers?region=sim')).body.total === 2,
        'two machines on offer',
      )
      const created = await call('POST', '/v1/clusters', renter.apiKey.key, { nodes: 2, verifiedOnly: false })
      assert.equal(created.status, 201, JSON.stringify(created.body))
      await eventually(
        async () =>
          (await call('GET', `/v1/clusters/${created.body.id}`, renter.apiKey.key)).body.state === 'ready',
        'ready',
        30_000,
      )
      const verified = await call('GET', '/v1/ledger/verify', operatorKey)
      assert.equal(verified.body.ok, true)

      const text = await scrape()
      assert.equal(sample(text, 'gpumesh_workers_connected'), 2)
      // A worker's first heartbeat comes on its own timer, which a loaded machine can put after the cluster is ready.
      await eventually(
        async () => sample(await scrape(), 'gpumesh_worker_heartbeats_total')! > 0,
        'a first heartbeat to be counted',
      )
      assert.equal(sample(text, 'gpumesh_placement_duration_seconds_count{kind="cluster"}'), 1)
      assert.equal(sample(text, 'gpumesh_clusters{state="ready"}'), 1)
      assert.equal(sample(text, 'gpumesh_cluster_provisioning_seconds_count'), 1)
      // The operator's credit and the cluster's hold, at least.
      assert.ok(sample(text, 'gpumesh_ledger_transfer_seq')! >= 2)
      assert.equal(sample(text, 'gpumesh_ledger_verify_ok'), 1)
      assert.ok(sample(text, 'gpumesh_ledger_verified_at_seconds')! > 1_700_000_000)

      const beats = sample(text, 'gpumesh_worker_heartbeats_total')!
      await eventually(
        async () => sample(await scrape(), 'gpumesh_worker_heartbeats_total')! > beats,
        'heartbeats to keep counting',
      )
    })
  })
}
