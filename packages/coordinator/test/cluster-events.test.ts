import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Coordinator } from '@gpumesh/coordinator'
import type { CoordinatorMessage } from '@gpumesh/protocol'
import type { Store } from '@gpumesh/store'
import {
  apiCaller,
  eventually,
  simulatedWorker,
  simulation,
  startTestCoordinator,
  storeBackends,
  type SimulatedWorker,
} from '@gpumesh/testing'

// Issue 25, item 4: a cluster's events read as what happened, once each. Seen with real Ray: the head's
// "Ray started (already running)" six times and the worker's three (each answer to a Ray command sent again
// while Ray was slow to report), and the worker's "Ray started (worker)" after "ready" (the head's Ray saw the
// node register before that worker's own report arrived). The simulated workers here replay exactly that.

for (const backend of storeBackends) {
  describe(`issue 25 item 4: cluster events on ${backend.name}`, () => {
    let store: Store
    let cleanup: () => Promise<void>
    let coordinator: Coordinator
    let baseUrl: string
    let renterKey: string
    const workers: SimulatedWorker[] = []
    const call = apiCaller(() => baseUrl)

    before(async () => {
      ;({ store, cleanup } = await backend.open())
      coordinator = await startTestCoordinator(store)
      baseUrl = await coordinator.listen()
      const account = async (name: string, roles: string[]) =>
        (await call('POST', '/v1/accounts', undefined, { name, roles })).body.apiKey.key as string
      const supplierKey = await account('supplier', ['supplier'])
      renterKey = await account('renter', ['renter'])
      for (let index = 0; index < 2; index += 1) workers.push(await simulatedWorker(baseUrl, supplierKey))
      await eventually(
        async () => (await call('GET', '/v1/offers?region=sim&limit=50')).body.total === 2,
        'two machines on offer',
      )
    })

    after(async () => {
      simulation.holdWorkerRay = false
      for (const worker of workers) worker.close()
      await coordinator?.stop()
      await cleanup?.()
    })

    it('records one "Ray started" per node, before that node joined and before ready', async () => {
      // Worker nodes say nothing when told to start Ray: this test speaks for them, when Ray would.
      simulation.holdWorkerRay = true
      const created = await call('POST', '/v1/clusters', renterKey, {
        nodes: 2,
        gpuModel: 'cpu',
        verifiedOnly: false,
      })
      assert.equal(created.status, 201, JSON.stringify(created.body))
      const clusterId = created.body.id as string
      const rayCommandTo = (worker: SimulatedWorker) =>
        worker.received.find(
          (message): message is Extract<CoordinatorMessage, { type: 'cluster_ray' }> =>
            message.type === 'cluster_ray' && message.clusterId === clusterId,
        )
      const nodeWorker = await eventually(
        async () => workers.find((worker) => rayCommandTo(worker)?.role === 'worker'),
        "the worker node told to start Ray (the head's started)",
      )
      const head = workers.find((worker) => worker !== nodeWorker)!
      const meshOf = (worker: SimulatedWorker) =>
        worker.received.find(
          (message): message is Extract<CoordinatorMessage, { type: 'cluster_mesh' }> =>
            message.type === 'cluster_mesh' && message.clusterId === clusterId,
        )!
      const alreadyRunning = {
        type: 'cluster_node_status',
        clusterId,
        phase: 'ray_started',
        detail: 'already running',
      } as const

      // The head answers the Ray commands sent again while its Ray was slow to report.
      for (let repeat = 0; repeat < 5; repeat += 1) head.send(alreadyRunning)
      // The head's Ray sees the worker's node register before the worker's own report comes.
      head.send({
        type: 'cluster_ray_nodes',
        clusterId,
        alive: [meshOf(head).overlayAddress, meshOf(nodeWorker).overlayAddress].sort(),
      })
      await new Promise((resolve) => setTimeout(resolve, 300))
      nodeWorker.send({ type: 'cluster_node_status', clusterId, phase: 'ray_started', detail: 'worker' })
      for (let repeat = 0; repeat < 2; repeat += 1) nodeWorker.send(alreadyRunning)

      await eventually(
        async () => (await call('GET', `/v1/clusters/${clusterId}`, renterKey)).body.state === 'ready',
        'the cluster ready',
      )
      await new Promise((resolve) => setTimeout(resolve, 300))
      const events = (await call('GET', `/v1/clusters/${clusterId}/events`, renterKey)).body.events as {
        kind: string
        deviceId: string | null
        message: string
      }[]
      const described = events
        .map((event) => `${event.kind} ${event.deviceId ?? ''} ${event.message}`)
        .join('\n')
      const started = events.filter((event) => event.kind === 'node_ray_started')
      assert.deepEqual(
        started.map((event) => [event.deviceId, event.message]).sort(),
        [
          [head.deviceId, 'Ray started (head)'],
          [nodeWorker.deviceId, 'Ray started (worker)'],
        ].sort(),
        described,
      )
      const indexOf = (kind: string, deviceId: string | null, message?: RegExp) =>
        events.findIndex(
          (event) =>
            event.kind === kind &&
            (deviceId === null || event.deviceId === deviceId) &&
            (message === undefined || message.test(event.message)),
        )
      const workerStarted = indexOf('node_ray_started', nodeWorker.deviceId)
      const workerJoined = indexOf('node_ray_joined', nodeWorker.deviceId)
      const ready = indexOf('state_changed', null, /^ready/)
      assert.ok(workerStarted >= 0 && workerJoined >= 0 && ready >= 0, described)
      assert.ok(workerStarted < workerJoined && workerJoined < ready, described)
    })
  })
}
