import assert from 'node:assert/strict'
import { after, afterEach, before, describe, it } from 'node:test'
import type { Coordinator } from '@gpumesh/coordinator'
import { incapable } from '@gpumesh/protocol'
import type { Store } from '@gpumesh/store'
import {
  apiCaller,
  eventually,
  insertOperatorKey,
  simulatedCapabilities,
  simulatedWorker,
  simulation,
  startTestCoordinator,
  storeBackends,
  type SimulatedWorker,
} from '@gpumesh/testing'

// Cluster nodes go only where the machine's own self-test says they can run; a machine that loses the
// capability loses its nodes, which are replaced; and a cluster that cannot become ready fails at its
// deadline, releasing every machine and its whole hold, charged nothing. Workers here speak the real
// protocol and only pretend to run WireGuard and Ray (test/e2e/first-hour.test.ts runs the real ones).

const provisionTimeoutMs = 3_000
const noWireguard = simulatedCapabilities({
  clusterNodes: incapable('wireguard-go: wireguard-go not found', 'apt-get install wireguard-go'),
})

for (const backend of storeBackends) {
  describe(`cluster nodes and capabilities on ${backend.name}`, () => {
    let store: Store
    let cleanup: () => Promise<void>
    let coordinator: Coordinator
    let baseUrl: string
    let renterKey: string
    let renterAccountId: string
    const capableWorkers: SimulatedWorker[] = []
    let incapableWorker: SimulatedWorker

    const call = apiCaller(() => baseUrl)
    const view = async (id: string) => (await call('GET', `/v1/clusters/${id}`, renterKey)).body
    const wallet = async () => (await call('GET', '/v1/wallet', renterKey)).body
    const offers = async () =>
      ((await call('GET', '/v1/offers?region=sim&limit=50')).body.offers as any[]).map(
        (offer) => offer.deviceId,
      )

    before(async () => {
      ;({ store, cleanup } = await backend.open())
      coordinator = await startTestCoordinator(store, {
        clusterBillingEnabled: true,
        billingIntervalMs: 400,
        clusterProvisionTimeoutMs: provisionTimeoutMs,
        // Workers share this process with the coordinator: a wider window keeps a busy machine from losing them.
        heartbeatIntervalMs: 500,
      })
      baseUrl = await coordinator.listen()
      const operatorKey = await insertOperatorKey(store)
      const supplierKey = (await call('POST', '/v1/accounts', undefined, { name: 's', roles: ['supplier'] }))
        .body.apiKey.key
      const renter = (await call('POST', '/v1/accounts', undefined, { name: 'r', roles: ['renter'] })).body
      renterKey = renter.apiKey.key
      renterAccountId = renter.account.id
      await call('POST', '/v1/operator/credits', operatorKey, {
        accountId: renterAccountId,
        amountGmt: '20',
        reason: 'test funds',
      })
      incapableWorker = await simulatedWorker(baseUrl, supplierKey, {
        capabilities: noWireguard,
        pricePerGpuHourUsd: '0.10',
      })
      for (let index = 0; index < 3; index += 1)
        capableWorkers.push(await simulatedWorker(baseUrl, supplierKey))
      await eventually(
        async () => (await offers()).length === 3,
        'the three capable machines on offer',
        30_000,
      )
    })
    afterEach(() => {
      simulation.holdWorkerRay = false
    })
    after(async () => {
      for (const worker of [incapableWorker, ...capableWorkers]) worker?.close()
      await coordinator?.stop()
      await cleanup?.()
    })

    it('never gives a node to a machine whose self-test says it cannot run one, and says so', async () => {
      // The cheapest machine is the one without wireguard-go: it is not on offer at all.
      assert.ok(!(await offers()).includes(incapableWorker.deviceId))
      const refused = await call('POST', '/v1/clusters/dry-run', renterKey, { nodes: 4, verifiedOnly: false })
      assert.equal(refused.body.placeable, false)
      assert.match(refused.body.detail, /1 cannot run cluster nodes: wireguard-go: wireguard-go not found/)
      const created = await call('POST', '/v1/clusters', renterKey, { nodes: 3, verifiedOnly: false })
      assert.equal(created.status, 201, JSON.stringify(created.body))
      assert.equal(created.body.gpusPerNode, 0, 'a CPU market places CPU nodes for a request naming no GPUs')
      const nodeIds = created.body.nodes.map((node: any) => node.deviceId)
      assert.ok(!nodeIds.includes(incapableWorker.deviceId))
      assert.ok(!incapableWorker.received.some((message) => message.type === 'cluster_node_prepare'))
      await eventually(async () => (await view(created.body.id)).state === 'ready', 'ready', 30_000)
      await call('POST', `/v1/clusters/${created.body.id}/terminate`, renterKey)
      await eventually(async () => (await view(created.body.id)).state === 'terminated', 'terminated', 30_000)
      await eventually(async () => (await offers()).length === 3, 'machines back on offer', 30_000)
    })

    it('replaces a node whose machine loses the capability, and the cluster is ready again', async () => {
      const created = await call('POST', '/v1/clusters', renterKey, { nodes: 2, verifiedOnly: false })
      assert.equal(created.status, 201, JSON.stringify(created.body))
      const id = created.body.id
      await eventually(async () => (await view(id)).state === 'ready', 'ready', 30_000)
      const members = new Set(created.body.nodes.map((node: any) => node.deviceId))
      const victim = capableWorkers.find((worker) => members.has(worker.deviceId))!
      const spare = capableWorkers.find((worker) => !members.has(worker.deviceId))!
      // Its supplier removed wireguard-go: the next self-test says so.
      victim.send({ type: 'capabilities', capabilities: noWireguard })
      const recovered = await eventually(
        async () => {
          const current = await view(id)
          return (
            current.state === 'ready' &&
            current.nodes.some(
              (node: any) => node.deviceId === spare.deviceId && node.phase === 'ray_joined',
            ) &&
            current
          )
        },
        'a capable replacement, ready',
        30_000,
      )
      const lost = recovered.nodes.find((node: any) => node.deviceId === victim.deviceId)
      assert.equal(lost.phase, 'lost')
      assert.match(lost.phaseReason, /can no longer run cluster nodes: wireguard-go/)
      assert.ok(
        victim.received.some((message) => message.type === 'cluster_release' && message.clusterId === id),
        'the machine was told to tear its node down',
      )
      const device = (await store.getDevice(victim.deviceId))!
      assert.equal(device.capabilities?.clusterNodes.available, false)
      assert.ok(!(await offers()).includes(victim.deviceId), 'no longer on offer')
      // The self-test passes again (wireguard-go reinstalled): back on offer.
      victim.send({ type: 'capabilities', capabilities: simulatedCapabilities() })
      await call('POST', `/v1/clusters/${id}/terminate`, renterKey)
      await eventually(async () => (await view(id)).state === 'terminated', 'terminated', 30_000)
      await eventually(
        async () => (await offers()).includes(victim.deviceId),
        'the fixed machine on offer',
        30_000,
      )
    })

    it('fails a cluster that is not ready by its deadline: every machine released, charged nothing', async () => {
      const before = await wallet()
      // Worker nodes never start Ray: the cluster cannot become ready.
      simulation.holdWorkerRay = true
      const created = await call('POST', '/v1/clusters', renterKey, { nodes: 2, verifiedOnly: false })
      assert.equal(created.status, 201, JSON.stringify(created.body))
      const id = created.body.id
      const held = await wallet()
      assert.notEqual(held.heldGmt, before.heldGmt, 'the whole price is held at create')
      const failed = await eventually(
        async () => {
          const current = await view(id)
          return current.state === 'failed' && current
        },
        'the deadline',
        provisionTimeoutMs + 10_000,
      )
      assert.match(failed.stateReason, /not ready within 3 s \(1 ray_joined, 1 mesh_up\)/)
      assert.ok(failed.nodes.every((node: any) => node.phase === 'released' || node.phase === 'lost'))
      assert.equal(failed.billing.chargedGmt, '0.000000')
      assert.equal(failed.billing.heldGmt, '0.000000')
      assert.deepEqual(await wallet(), before, 'the wallet is as it was: nothing charged, nothing held')
      await eventually(async () => (await offers()).length === 3, 'every machine back on offer', 30_000)
      const events = (await call('GET', `/v1/clusters/${id}/events`, renterKey)).body.events as any[]
      assert.ok(
        events.some((event) => event.kind === 'state_changed' && /failed: not ready/.test(event.message)),
      )
    })
  })
}
