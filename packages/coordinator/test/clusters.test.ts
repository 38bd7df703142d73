import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Coordinator } from '@gpumesh/coordinator'
import type { Store } from '@gpumesh/store'
import {
  apiCaller,
  eventually,
  simulatedWorker,
  simulation,
  startTestCoordinator,
  storeBackends,
  wireguardKey,
  type SimulatedWorker,
} from '@gpumesh/testing'

// The cluster controller over the real worker protocol, on both stores. The workers here speak the
// protocol but only pretend to run WireGuard and Ray (test/e2e/clusters.test.ts runs the real ones): each
// answers commands at once, and a shared table stands in for Ray's view of which nodes are alive.

for (const backend of storeBackends) {
  describe(`clusters through the controller on ${backend.name}`, () => {
    let store: Store
    let cleanup: () => Promise<void>
    let coordinator: Coordinator
    let baseUrl: string
    let supplierKey: string
    let renterKey: string
    let otherRenterKey: string
    const workers: SimulatedWorker[] = []

    const call = apiCaller(() => baseUrl)
    const account = async (name: string, roles: string[]) =>
      (await call('POST', '/v1/accounts', undefined, { name, roles })).body.apiKey.key as string
    const readyCluster = (id: string) =>
      eventually(async () => {
        const view = (await call('GET', `/v1/clusters/${id}`, renterKey)).body
        assert.notEqual(view.state, 'failed', view.stateReason)
        return view.state === 'ready' && view
      }, `cluster ${id} ready`)
    const offers = async () => (await call('GET', '/v1/offers?region=sim&limit=50')).body.total as number

    before(async () => {
      ;({ store, cleanup } = await backend.open())
      coordinator = await startTestCoordinator(store)
      baseUrl = await coordinator.listen()
      supplierKey = await account('supplier', ['supplier'])
      renterKey = await account('renter', ['renter'])
      otherRenterKey = await account('other', ['renter'])
      for (let index = 0; index < 4; index += 1) workers.push(await simulatedWorker(baseUrl, supplierKey))
      await eventually(async () => (await offers()) === 4, 'four machines on offer')
    })

    after(async () => {
      for (const worker of workers) worker.close()
      await coordinator?.stop()
      await cleanup?.()
    })

    it('creates a cluster that goes ready once Ray reports every node, hidden from other accounts', async () => {
      const created = await call('POST', '/v1/clusters', renterKey, {
        nodes: 3,
        gpuModel: 'cpu',
        verifiedOnly: false,
      })
      assert.equal(created.status, 201, JSON.stringify(created.body))
      assert.ok(['pending', 'provisioning'].includes(created.body.state))
      const ready = await readyCluster(created.body.id)
      assert.equal(ready.nodes.filter((node: any) => node.phase === 'ray_joined').length, 3)
      assert.match(ready.rayAddress, /^100\.(6[4-9]|[7-9]\d|1[01]\d|12[0-7])\.\d+\.1:6379$/)
      assert.ok(ready.expiresAtMs - ready.readyAtMs === 3_600_000)
      assert.equal(await offers(), 1, 'reserved machines are no longer on offer')
      const events = (await call('GET', `/v1/clusters/${created.body.id}/events`, renterKey)).body
        .events as any[]
      assert.deepEqual(
        ['created', 'node_reserved', 'node_mesh_up', 'node_ray_joined'].map(
          (kind) => events.filter((event) => event.kind === kind).length,
        ),
        [1, 3, 3, 3],
      )
      assert.equal((await call('GET', `/v1/clusters/${created.body.id}`, otherRenterKey)).status, 404)
      assert.equal(
        (await call('POST', `/v1/clusters/${created.body.id}/terminate`, otherRenterKey)).status,
        404,
      )
      assert.deepEqual((await call('GET', '/v1/clusters', otherRenterKey)).body.clusters, [])
      const afterSeq = events.at(-1).seq
      const waited = Date.now()
      const none = await call(
        'GET',
        `/v1/clusters/${created.body.id}/events?after=${afterSeq}&waitMs=300`,
        renterKey,
      )
      assert.deepEqual(none.body.events, [])
      assert.ok(Date.now() - waited >= 250, 'long poll waited')
    })

    it('refuses what cannot be placed, naming the constraint and the market', async () => {
      const reply = await call('POST', '/v1/clusters', renterKey, {
        nodes: 5,
        gpuModel: 'cpu',
        verifiedOnly: false,
      })
      assert.equal(reply.status, 409)
      assert.equal(reply.body.code, 'GPUMESH_ERR_UNPLACEABLE')
      assert.ok(reply.body.details.market.length > 0)
      const h100 = await call('POST', '/v1/clusters', renterKey, { gpus: 'H100:8', verifiedOnly: false })
      assert.equal(h100.status, 409)
      assert.equal(h100.body.details.blockingConstraint, 'gpu_model')
      const bad = await call('POST', '/v1/clusters', renterKey, { nodes: 0 })
      assert.equal(bad.status, 400)
      assert.match(bad.body.message, /nodes/)
    })

    it('refuses reports from a device about a cluster it was not placed in, and unasked-for keys', async () => {
      const [cluster] = (await call('GET', '/v1/clusters', renterKey)).body.clusters
      const member = workers.find((worker) =>
        cluster.nodes.some((node: any) => node.deviceId === worker.deviceId),
      )!
      const outsider = workers.find(
        (worker) => !cluster.nodes.some((node: any) => node.deviceId === worker.deviceId),
      )!
      const before = outsider.received.length
      outsider.send({
        type: 'cluster_node_key',
        clusterId: cluster.id,
        publicKey: wireguardKey(),
        listenPort: 5000,
      })
      outsider.send({ type: 'cluster_ray_nodes', clusterId: cluster.id, alive: [] })
      await eventually(
        () =>
          outsider.received
            .slice(before)
            .filter((message) => message.type === 'error' && message.code === 'GPUMESH_ERR_NOT_A_MEMBER')
            .length === 2,
        'two refusals',
      )
      const memberBefore = member.received.length
      member.send({
        type: 'cluster_node_key',
        clusterId: cluster.id,
        publicKey: wireguardKey(),
        listenPort: 5000,
      })
      await eventually(
        () =>
          member.received
            .slice(memberBefore)
            .some((message) => message.type === 'error' && message.code === 'GPUMESH_ERR_UNEXPECTED_KEY'),
        'the unasked-for key refused',
      )
      const after = (await call('GET', `/v1/clusters/${cluster.id}`, renterKey)).body
      assert.equal(after.state, 'ready')
      // Nothing about the nodes changed, but the time they have served.
      const withoutServed = (nodes: any[]) => nodes.map(({ servedMs: _servedMs, ...node }) => node)
      assert.deepEqual(withoutServed(after.nodes), withoutServed(cluster.nodes))
    })

    it("joins a renter's machine to the mesh: every node peers with it, and forgets it on removal", async () => {
      const [cluster] = (await call('GET', '/v1/clusters', renterKey)).body.clusters
      const members = workers.filter((worker) =>
        cluster.nodes.some((node: any) => node.deviceId === worker.deviceId),
      )
      const clientKey = wireguardKey()
      const peersSeenBy = (worker: SimulatedWorker) => {
        const meshes = worker.received.filter(
          (message) => message.type === 'cluster_mesh' && message.clusterId === cluster.id,
        )
        return (meshes.at(-1) as any)?.peers as any[]
      }
      const joined = await call('POST', `/v1/clusters/${cluster.id}/clients`, renterKey, {
        publicKey: clientKey,
        name: 'laptop',
      })
      assert.equal(joined.status, 201, JSON.stringify(joined.body))
      assert.match(joined.body.address, /^100\.\d+\.\d+\.201\/24$/)
      assert.equal(joined.body.peers.length, 3)
      assert.ok(joined.body.peers.every((peer: any) => /:\d+$/.test(peer.endpoint)))
      assert.match(joined.body.rayClientAddress, /^ray:\/\/100\.\d+\.\d+\.1:10001$/)
      for (const worker of members) {
        await eventually(
          () => peersSeenBy(worker)?.some((peer) => peer.publicKey === clientKey),
          'the client as a peer',
        )
        const peer = peersSeenBy(worker).find((candidate) => candidate.publicKey === clientKey)
        assert.equal(peer.endpoint, undefined, 'the client dials in; nodes do not dial it')
        assert.equal(peer.overlayAddress, joined.body.address.split('/')[0])
      }
      const again = await call('POST', `/v1/clusters/${cluster.id}/clients`, renterKey, {
        publicKey: clientKey,
      })
      assert.equal(again.body.address, joined.body.address, 'the same key keeps its address')
      assert.equal((await call('GET', `/v1/clusters/${cluster.id}/clients`, otherRenterKey)).status, 404)
      assert.equal(
        (await call('POST', `/v1/clusters/${cluster.id}/clients`, renterKey, { publicKey: 'not-a-key' }))
          .status,
        400,
      )
      const removed = await call('POST', `/v1/clusters/${cluster.id}/clients/remove`, renterKey, {
        publicKey: clientKey,
      })
      assert.equal(removed.status, 204)
      for (const worker of members)
        await eventually(
          () => !peersSeenBy(worker).some((peer) => peer.publicKey === clientKey),
          'the client gone',
        )
      assert.deepEqual((await call('GET', `/v1/clusters/${cluster.id}/clients`, renterKey)).body.clients, [])
    })

    it('runs a job on the head and keeps its log and exit status', async () => {
      const [cluster] = (await call('GET', '/v1/clusters', renterKey)).body.clusters
      const submitted = await call('POST', `/v1/clusters/${cluster.id}/jobs`, renterKey, {
        entrypoint: 'python train.py',
      })
      assert.equal(submitted.status, 201)
      const logs = await eventually(async () => {
        const reply = (
          await call(
            'GET',
            `/v1/clusters/${cluster.id}/jobs/${submitted.body.id}/logs?waitMs=1000`,
            renterKey,
          )
        ).body
        return reply.complete && reply
      }, 'the job to finish')
      assert.equal(logs.job.status, 'succeeded')
      assert.equal(logs.job.exitCode, 0)
      assert.deepEqual(
        logs.chunks.map((chunk: any) => chunk.text),
        ['ran python train.py\n'],
      )
      assert.equal(
        (await call('GET', `/v1/clusters/${cluster.id}/jobs/${submitted.body.id}`, otherRenterKey)).status,
        404,
      )
    })

    it('replaces a lost node with the spare machine and returns to ready', async () => {
      const [cluster] = (await call('GET', '/v1/clusters', renterKey)).body.clusters
      const victim = workers.find((worker) =>
        cluster.nodes.some((node: any) => node.deviceId === worker.deviceId && node.role === 'worker'),
      )!
      const spare = workers.find(
        (worker) => !cluster.nodes.some((node: any) => node.deviceId === worker.deviceId),
      )!
      victim.kill()
      const recovered = await eventually(async () => {
        const view = (await call('GET', `/v1/clusters/${cluster.id}`, renterKey)).body
        return (
          view.state === 'ready' && view.nodes.some((node: any) => node.deviceId === spare.deviceId) && view
        )
      }, 'a replacement')
      assert.equal(recovered.nodes.find((node: any) => node.deviceId === victim.deviceId).phase, 'lost')
      assert.equal(recovered.nodes.filter((node: any) => node.phase === 'ray_joined').length, 3)
      const indexes = recovered.nodes.map((node: any) => node.overlayAddress)
      assert.equal(new Set(indexes).size, indexes.length, 'the replacement has a new overlay address')
      // The machine comes back: it is free again, since its node was replaced.
      await victim.connect(baseUrl)
      await eventually(async () => (await offers()) === 1, 'the returned machine on offer')
    })

    it('extends, then terminates: every node released and every machine back on offer', async () => {
      const [cluster] = (await call('GET', '/v1/clusters', renterKey)).body.clusters
      const extended = await call('POST', `/v1/clusters/${cluster.id}/extend`, renterKey, { hours: 2 })
      assert.equal(extended.status, 200)
      assert.equal(extended.body.expiresAtMs, cluster.expiresAtMs + 2 * 3_600_000)
      assert.equal(
        (await call('POST', `/v1/clusters/${cluster.id}/extend`, renterKey, { hours: -1 })).status,
        400,
      )
      const terminating = await call('POST', `/v1/clusters/${cluster.id}/terminate`, renterKey)
      assert.equal(terminating.status, 200)
      const ended = await eventually(async () => {
        const view = (await call('GET', `/v1/clusters/${cluster.id}`, renterKey)).body
        return view.state === 'terminated' && view
      }, 'terminated')
      assert.ok(ended.nodes.every((node: any) => node.phase === 'released' || node.phase === 'lost'))
      assert.equal(ended.subnet, null)
      await eventually(async () => (await offers()) === 4, 'all machines on offer again')
      assert.equal(
        (await call('POST', `/v1/clusters/${cluster.id}/extend`, renterKey, { hours: 1 })).status,
        409,
      )
    })

    it('terminates a cluster when its duration ends', async () => {
      const created = await call('POST', '/v1/clusters', renterKey, {
        nodes: 2,
        gpuModel: 'cpu',
        verifiedOnly: false,
        durationHours: 0.0005,
      })
      assert.equal(created.status, 201)
      await readyCluster(created.body.id)
      const ended = await eventually(
        async () => {
          const view = (await call('GET', `/v1/clusters/${created.body.id}`, renterKey)).body
          return view.state === 'terminated' && view
        },
        'expiry',
        15_000,
      )
      assert.match(ended.stateReason, /duration/)
      await eventually(async () => (await offers()) === 4, 'machines released at expiry')
    })

    it('finishes provisioning after a coordinator restart mid-way', async () => {
      workers.push(await simulatedWorker(baseUrl, supplierKey))
      await eventually(async () => (await offers()) === 5, 'a fifth machine on offer')
      // Five machines, five nodes; the head starts Ray, the four others hold theirs back until the restart.
      simulation.holdWorkerRay = true
      const created = await call('POST', '/v1/clusters', renterKey, {
        nodes: 5,
        gpuModel: 'cpu',
        verifiedOnly: false,
      })
      assert.equal(created.status, 201)
      const before = await eventually(async () => {
        const view = (await call('GET', `/v1/clusters/${created.body.id}`, renterKey)).body
        const joined = view.nodes.filter((node: any) => node.phase === 'ray_joined')
        const meshUp = view.nodes.filter((node: any) => node.phase === 'mesh_up')
        return joined.length === 1 && joined[0].role === 'head' && meshUp.length === 4 && view
      }, 'the head in Ray, four nodes held back')
      assert.equal(before.state, 'provisioning')

      await coordinator.stop()
      simulation.holdWorkerRay = false
      coordinator = await startTestCoordinator(store)
      baseUrl = await coordinator.listen()
      for (const worker of workers) await worker.connect(baseUrl)

      const ready = await readyCluster(created.body.id)
      assert.deepEqual(
        ready.nodes.map((node: any) => node.deviceId).sort(),
        before.nodes.map((node: any) => node.deviceId).sort(),
        'the same five machines: nothing was lost or replaced across the restart',
      )
      const events = (await call('GET', `/v1/clusters/${created.body.id}/events`, renterKey)).body
        .events as any[]
      assert.equal(events.filter((event) => event.kind === 'node_lost').length, 0)
      await call('POST', `/v1/clusters/${created.body.id}/terminate`, renterKey)
      await eventually(
        async () =>
          (await call('GET', `/v1/clusters/${created.body.id}`, renterKey)).body.state === 'terminated',
        'terminated',
      )
    })
  })
}
