import assert from 'node:assert/strict'
import { after, afterEach, before, describe, it } from 'node:test'
import fc from 'fast-check'
import {
  createPgliteDriver,
  createStore,
  openStore,
  type ClusterJobRecord,
  type NewCluster,
  type Store,
} from '@gpumesh/store'
import { createTestDatabase, enrollTestDevice, storeBackends, type TestDatabase } from '@gpumesh/testing'

// Clusters in the store: created whole or not at all, one subnet and one reservation per device each, freed
// when they end; and the event log and jobs that hang off them. Run on every backend.

const t0 = Date.UTC(2026, 0, 1)
const hourMs = 3_600_000
const deviceCount = 12
const accountId = 'acc_renter'

async function seedDevices(store: Store): Promise<string[]> {
  await store.createAccount({ id: accountId, name: 'r', roles: ['renter', 'supplier'], createdAtMs: t0 })
  const ids: string[] = []
  for (let index = 0; index < deviceCount; index += 1) {
    const id = `dev_${String(index).padStart(2, '0')}`
    await enrollTestDevice(store, id, accountId, t0)
    ids.push(id)
  }
  return ids
}

function newCluster(id: string, deviceIds: readonly string[], createdAtMs = t0): NewCluster {
  return {
    cluster: {
      id,
      accountId,
      name: `name-${id}`,
      stateReason: 'placed',
      request: { nodeCount: deviceIds.length, gpusPerNode: 1, maxPricePerGpuHourMicroUsd: 2_500_000n },
      nodeCount: deviceIds.length,
      gpusPerNode: 1,
      durationMs: hourMs,
      pricePerHourMicroUsd: 9_007_199_254_740_993n,
      createdAtMs,
    },
    deviceIds,
    // Each node's price: 1.25 USD an hour for the head, 1 USD for the others.
    nodePricesPerHourMicroUsd: deviceIds.map((_, index) => (index === 0 ? 1_250_000n : 1_000_000n)),
  }
}

/** Creates a cluster that must succeed. */
async function mustCreate(store: Store, id: string, deviceIds: readonly string[], createdAtMs = t0) {
  const outcome = await store.createCluster(newCluster(id, deviceIds, createdAtMs))
  if (!outcome.ok) assert.fail(`${id} refused; held: ${outcome.alreadyReserved.join(', ')}`)
  return outcome
}

function job(id: string, clusterId: string, createdAtMs: number): ClusterJobRecord {
  return {
    id,
    clusterId,
    accountId,
    entrypoint: 'python train.py',
    status: 'pending',
    message: 'queued',
    exitCode: null,
    createdAtMs,
    finishedAtMs: null,
    runtimeEnvJson: '{"env_vars":{"SEED":"1"}}',
    metadataJson: '{}',
  }
}

for (const backend of storeBackends) {
  describe(`clusters on ${backend.name}`, () => {
    let store: Store
    let cleanup: () => Promise<void>
    let devices: string[]
    before(async () => {
      ;({ store, cleanup } = await backend.open())
      devices = await seedDevices(store)
    })
    after(() => cleanup())
    // Each test starts with every device free and every subnet free.
    afterEach(async () => {
      for (const cluster of await store.listActiveClusters()) {
        await store.updateCluster(
          cluster.id,
          { state: 'terminated', stateReason: 'test over' },
          t0 + 99 * hourMs,
        )
      }
      assert.deepEqual(await store.listReservedDeviceIds(), [])
    })

    it('creates a cluster with its nodes, reservations and the lowest free subnet', async () => {
      const outcome = await mustCreate(store, 'cls_create', devices.slice(0, 3))
      assert.deepEqual(outcome.cluster, {
        id: 'cls_create',
        accountId,
        name: 'name-cls_create',
        state: 'pending',
        stateReason: 'placed',
        desired: 'running',
        request: { nodeCount: 3, gpusPerNode: 1, maxPricePerGpuHourMicroUsd: '2500000' },
        nodeCount: 3,
        gpusPerNode: 1,
        durationMs: hourMs,
        subnetIndex: 0,
        pricePerHourMicroUsd: 9_007_199_254_740_993n,
        createdAtMs: t0,
        readyAtMs: null,
        expiresAtMs: null,
        endedAtMs: null,
        updatedAtMs: t0,
        stateChangedAtMs: t0,
        billingHoldId: null,
        billedIntervals: 0,
        billedUntilMs: null,
      })
      // node order is the order asked for, not the ids' order
      const reversed = await mustCreate(store, 'cls_reversed', [devices[5]!, devices[4]!], t0 + 1)
      assert.deepEqual(
        reversed.nodes.map((node) => [node.deviceId, node.nodeIndex, node.role]),
        [
          [devices[5], 0, 'head'],
          [devices[4], 1, 'worker'],
        ],
      )
      assert.equal(reversed.cluster.subnetIndex, 1)

      assert.deepEqual(outcome.nodes, [
        {
          clusterId: 'cls_create',
          deviceId: devices[0],
          nodeIndex: 0,
          role: 'head',
          phase: 'reserved',
          phaseReason: 'reserved',
          wgPublicKey: null,
          endpoint: null,
          joinedAtMs: t0,
          leftAtMs: null,
          pricePerHourMicroUsd: 1_250_000n,
        },
        ...[1, 2].map((index) => ({
          clusterId: 'cls_create',
          deviceId: devices[index],
          nodeIndex: index,
          role: 'worker',
          phase: 'reserved',
          phaseReason: 'reserved',
          wgPublicKey: null,
          endpoint: null,
          joinedAtMs: t0,
          leftAtMs: null,
          pricePerHourMicroUsd: 1_000_000n,
        })),
      ])
      assert.deepEqual(await store.getCluster('cls_create'), outcome.cluster)
      assert.equal(await store.getCluster('cls_missing'), undefined)
      assert.deepEqual(await store.listClusterNodes('cls_create'), outcome.nodes)
      assert.deepEqual(await store.listClusterNodes('cls_reversed'), reversed.nodes)
      assert.deepEqual(
        (await store.listClusters(accountId, 2)).map((cluster) => cluster.id),
        ['cls_reversed', 'cls_create'],
      )
      assert.deepEqual(
        (await store.listActiveClusters()).map((cluster) => cluster.id),
        ['cls_create', 'cls_reversed'],
      )
      assert.deepEqual(await store.listReservedDeviceIds(), [...devices.slice(0, 3), devices[4], devices[5]])
    })

    it('writes nothing, and takes no subnet, when one device is already held', async () => {
      await mustCreate(store, 'cls_holder', devices.slice(0, 2))
      await store.reserveGang({ clusterId: 'gang_x', accountId, deviceIds: [devices[6]!], nowMs: t0 })
      const refused = await store.createCluster(
        newCluster('cls_refused', [devices[3]!, devices[1]!, devices[2]!, devices[6]!]),
      )
      assert.deepEqual(refused, { ok: false, alreadyReserved: [devices[1], devices[6]] })
      assert.equal(await store.getCluster('cls_refused'), undefined)
      assert.deepEqual(await store.listClusterNodes('cls_refused'), [])
      assert.deepEqual(await store.listReservedDeviceIds(), [devices[0], devices[1], devices[6]])
      // the subnet the refused cluster would have had is still free
      assert.equal((await mustCreate(store, 'cls_next', devices.slice(2, 4))).cluster.subnetIndex, 1)
      assert.deepEqual(await store.releaseReservations('gang_x'), [devices[6]])
      await assert.rejects(
        store.createCluster(newCluster('cls_twice', [devices[7]!, devices[7]!])),
        /listed twice/,
      )
    })

    it('gives distinct subnets and reuses the lowest free one after a cluster ends', async () => {
      const subnets: (number | null)[] = []
      for (let index = 0; index < 4; index += 1) {
        subnets.push((await mustCreate(store, `cls_subnet_${index}`, [devices[index]!])).cluster.subnetIndex)
      }
      assert.deepEqual(subnets, [0, 1, 2, 3])
      await store.updateCluster('cls_subnet_1', { state: 'failed', stateReason: 'boom' }, t0 + 5)
      await store.updateCluster('cls_subnet_2', { state: 'terminated' }, t0 + 5)
      assert.equal((await mustCreate(store, 'cls_subnet_4', [devices[4]!])).cluster.subnetIndex, 1)
      assert.equal((await mustCreate(store, 'cls_subnet_5', [devices[5]!])).cluster.subnetIndex, 2)
      assert.equal((await mustCreate(store, 'cls_subnet_6', [devices[6]!])).cluster.subnetIndex, 4)
    })

    it('frees the subnet and reservations and releases nodes when a cluster terminates', async () => {
      await mustCreate(store, 'cls_end', devices.slice(0, 3))
      await store.releaseClusterNode('cls_end', devices[2]!, 'lost', 'stopped answering', t0 + 10)
      const ready = await store.updateCluster(
        'cls_end',
        {
          state: 'ready',
          stateReason: 'all nodes joined',
          readyAtMs: t0 + 20,
          expiresAtMs: t0 + 20 + hourMs,
        },
        t0 + 20,
      )
      assert.equal(ready.state, 'ready')
      assert.equal(ready.subnetIndex, 0)
      assert.equal(ready.readyAtMs, t0 + 20)
      assert.equal(ready.expiresAtMs, t0 + 20 + hourMs)
      assert.equal(ready.updatedAtMs, t0 + 20)
      assert.equal(ready.stateChangedAtMs, t0 + 20, 'the state changed')
      // a patch changes only what it names (the state did not change, so neither does its time)
      const extended = await store.updateCluster(
        'cls_end',
        { durationMs: 2 * hourMs, expiresAtMs: t0 + 20 + 2 * hourMs },
        t0 + 30,
      )
      assert.deepEqual(extended, {
        ...ready,
        durationMs: 2 * hourMs,
        expiresAtMs: t0 + 20 + 2 * hourMs,
        updatedAtMs: t0 + 30,
      })

      const ended = await store.updateCluster(
        'cls_end',
        { state: 'terminated', stateReason: 'renter asked', desired: 'terminated', endedAtMs: t0 + 40 },
        t0 + 40,
      )
      assert.equal(ended.state, 'terminated')
      assert.equal(ended.desired, 'terminated')
      assert.equal(ended.subnetIndex, null)
      assert.equal(ended.endedAtMs, t0 + 40)
      assert.deepEqual(await store.getCluster('cls_end'), ended)
      assert.deepEqual(await store.listReservedDeviceIds(), [])
      assert.deepEqual(
        (await store.listClusterNodes('cls_end')).map((node) => [
          node.phase,
          node.phaseReason,
          node.leftAtMs,
        ]),
        [
          ['released', 'cluster terminated', t0 + 40],
          ['released', 'cluster terminated', t0 + 40],
          ['lost', 'stopped answering', t0 + 10],
        ],
      )
      assert.deepEqual(await store.listActiveClusters(), [])
      await assert.rejects(store.updateCluster('cls_missing', { state: 'ready' }, t0), /cls_missing/)
    })

    it('adds a node at the next index, and refuses a held device, a member or an ended cluster', async () => {
      await mustCreate(store, 'cls_grow', devices.slice(0, 2))
      await mustCreate(store, 'cls_neighbour', [devices[2]!])
      await store.releaseClusterNode('cls_grow', devices[1]!, 'lost', 'ray node died', t0 + 5)
      const added = await store.addClusterNode({
        clusterId: 'cls_grow',
        accountId,
        deviceId: devices[3]!,
        role: 'worker',
        nowMs: t0 + 6,
        pricePerHourMicroUsd: 700_000n,
      })
      assert.deepEqual(added, {
        clusterId: 'cls_grow',
        deviceId: devices[3],
        // never reused: the lost node keeps index 1
        nodeIndex: 2,
        role: 'worker',
        phase: 'reserved',
        phaseReason: 'reserved',
        wgPublicKey: null,
        endpoint: null,
        joinedAtMs: t0 + 6,
        leftAtMs: null,
        pricePerHourMicroUsd: 700_000n,
      })
      assert.equal((await store.getDevice(devices[3]!))?.reservedByClusterId, 'cls_grow')
      const addTo = (clusterId: string, deviceId: string) =>
        store.addClusterNode({ clusterId, accountId, deviceId, role: 'worker', nowMs: t0 + 7 })
      // held by another cluster
      assert.equal(await addTo('cls_grow', devices[2]!), undefined)
      // already a node of this cluster, live or lost (the lost one's device is free now)
      assert.equal(await addTo('cls_grow', devices[0]!), undefined)
      assert.equal(await addTo('cls_grow', devices[1]!), undefined)
      assert.equal((await store.getDevice(devices[1]!))?.reservedByClusterId, null)
      assert.deepEqual(
        (await store.listClusterNodes('cls_grow')).map((node) => node.deviceId),
        [devices[0], devices[1], devices[3]],
      )
      await store.updateCluster('cls_neighbour', { state: 'terminated' }, t0 + 8)
      assert.equal(await addTo('cls_neighbour', devices[4]!), undefined)
      assert.equal((await store.getDevice(devices[4]!))?.reservedByClusterId, null)
      await assert.rejects(addTo('cls_missing', devices[4]!), /cls_missing/)
    })

    it('releases a node idempotently and frees its device for another cluster', async () => {
      await mustCreate(store, 'cls_release', devices.slice(0, 2))
      await store.releaseClusterNode('cls_release', devices[1]!, 'lost', 'stopped answering', t0 + 5)
      await store.releaseClusterNode('cls_release', devices[1]!, 'released', 'again', t0 + 9)
      const nodes = await store.listClusterNodes('cls_release')
      assert.deepEqual(
        nodes.map((node) => [node.phase, node.phaseReason, node.leftAtMs]),
        [
          ['reserved', 'reserved', null],
          ['lost', 'stopped answering', t0 + 5],
        ],
      )
      assert.deepEqual(await store.listReservedDeviceIds(), [devices[0]])
      // the freed device can join another cluster, and a late release by the old one leaves it held
      await mustCreate(store, 'cls_taker', [devices[1]!])
      await store.releaseClusterNode('cls_release', devices[1]!, 'released', 'late', t0 + 10)
      assert.equal((await store.getDevice(devices[1]!))?.reservedByClusterId, 'cls_taker')
      assert.deepEqual(
        (await store.listActiveClusterNodesOnDevice(devices[1]!)).map((node) => node.clusterId),
        ['cls_taker'],
      )
      assert.deepEqual(
        (await store.listActiveClusterNodesOnDevice(devices[0]!)).map((node) => node.clusterId),
        ['cls_release'],
      )
      await store.updateCluster('cls_release', { state: 'terminated' }, t0 + 11)
      assert.deepEqual(await store.listActiveClusterNodesOnDevice(devices[0]!), [])
    })

    it('patches a node, and a node that left keeps its phase', async () => {
      await mustCreate(store, 'cls_patch', devices.slice(0, 2))
      await store.updateClusterNode(
        'cls_patch',
        devices[0]!,
        {
          phase: 'keyed',
          phaseReason: 'key received',
          wgPublicKey: 'wg-key-0',
          endpoint: '203.0.113.7:51820',
        },
        t0 + 1,
      )
      await store.updateClusterNode(
        'cls_patch',
        devices[0]!,
        { phase: 'mesh_up', phaseReason: 'mesh up' },
        t0 + 2,
      )
      await store.releaseClusterNode('cls_patch', devices[1]!, 'lost', 'gone', t0 + 3)
      await store.updateClusterNode(
        'cls_patch',
        devices[1]!,
        {
          phase: 'ray_joined',
          phaseReason: 'late',
          role: 'head',
        },
        t0 + 4,
      )
      const [head, lost] = await store.listClusterNodes('cls_patch')
      assert.deepEqual(
        [head?.phase, head?.phaseReason, head?.wgPublicKey, head?.endpoint, head?.role],
        ['mesh_up', 'mesh up', 'wg-key-0', '203.0.113.7:51820', 'head'],
      )
      assert.deepEqual([lost?.phase, lost?.phaseReason, lost?.role], ['lost', 'gone', 'head'])
      await assert.rejects(
        store.updateClusterNode('cls_patch', devices[5]!, { phase: 'keyed' }, t0 + 5),
        /no node/,
      )
    })

    it('records when each node was serving: from Ray joined until it leaves Ray, is lost or released', async () => {
      const [head, worker, lost] = devices.slice(0, 3) as [string, string, string]
      await mustCreate(store, 'cls_served', [head, worker, lost])
      const join = (deviceId: string, atMs: number) =>
        store.updateClusterNode('cls_served', deviceId, { phase: 'ray_joined' }, atMs)
      await join(head, t0 + 10)
      await join(head, t0 + 11) // already serving: the period runs on
      await join(worker, t0 + 12)
      await join(lost, t0 + 13)
      // A head change restarts Ray: the worker stops serving until it joins again.
      await store.updateClusterNode('cls_served', worker, { phase: 'mesh_up' }, t0 + 20)
      await join(worker, t0 + 25)
      // Lost at t0+40, but its worker went silent at t0+30: it served until then.
      await store.releaseClusterNode('cls_served', lost, 'lost', 'offline', t0 + 40, t0 + 30)
      await store.releaseClusterNode('cls_served', lost, 'released', 'again', t0 + 45, t0 + 45)
      await store.updateCluster('cls_served', { state: 'terminated', endedAtMs: t0 + 50 }, t0 + 50)
      assert.deepEqual(await store.listClusterNodeService('cls_served'), [
        { deviceId: head, startedAtMs: t0 + 10, endedAtMs: t0 + 50 },
        { deviceId: worker, startedAtMs: t0 + 12, endedAtMs: t0 + 20 },
        { deviceId: lost, startedAtMs: t0 + 13, endedAtMs: t0 + 30 },
        { deviceId: worker, startedAtMs: t0 + 25, endedAtMs: t0 + 50 },
      ])
    })

    it('shows who holds a device and bumps its change_seq on every reservation change', async () => {
      const device = devices[7]!
      const changedAfter = async (afterSeq: bigint) =>
        (await store.listDevicesChangedSince(afterSeq, 100)).find((changed) => changed.id === device)
      const start = (await store.getDevice(device))!
      assert.equal(start.reservedByClusterId, null)

      await mustCreate(store, 'cls_seq', [device])
      const reserved = await changedAfter(start.changeSeq)
      assert.ok(reserved && reserved.changeSeq > start.changeSeq)
      assert.equal(reserved.reservedByClusterId, 'cls_seq')
      assert.deepEqual(await store.getDevice(device), reserved)
      assert.equal(
        (await store.listDevices(accountId)).find((listed) => listed.id === device)?.reservedByClusterId,
        'cls_seq',
      )

      await store.releaseClusterNode('cls_seq', device, 'lost', 'gone', t0 + 1)
      const released = await changedAfter(reserved.changeSeq)
      assert.ok(released)
      assert.equal(released.reservedByClusterId, null)

      await mustCreate(store, 'cls_seq_2', [device])
      const again = await changedAfter(released.changeSeq)
      assert.equal(again?.reservedByClusterId, 'cls_seq_2')
      // a refused add writes nothing, so the device does not change
      const refused = await store.addClusterNode({
        clusterId: 'cls_seq',
        accountId,
        deviceId: device,
        role: 'worker',
        nowMs: t0 + 1,
      })
      assert.equal(refused, undefined)
      assert.equal(await changedAfter(again!.changeSeq), undefined)
      await store.updateCluster('cls_seq_2', { state: 'failed', stateReason: 'no capacity' }, t0 + 2)
      const ended = await changedAfter(again!.changeSeq)
      assert.equal(ended?.reservedByClusterId, null)

      await store.reserveGang({ clusterId: 'gang_seq', accountId, deviceIds: [device], nowMs: t0 })
      const gang = await changedAfter(ended!.changeSeq)
      assert.equal(gang?.reservedByClusterId, 'gang_seq')
      assert.deepEqual(await store.releaseReservations('gang_seq'), [device])
      assert.equal((await changedAfter(gang!.changeSeq))?.reservedByClusterId, null)
    })

    it('keeps cluster events in order and reads them after a seq', async () => {
      await mustCreate(store, 'cls_events', devices.slice(0, 2))
      await mustCreate(store, 'cls_events_other', [devices[2]!])
      await store.appendClusterEvents([])
      await store.appendClusterEvents([
        { clusterId: 'cls_events', atMs: t0 + 1, kind: 'node_reserved', deviceId: devices[0]!, message: 'a' },
        { clusterId: 'cls_events_other', atMs: t0 + 1, kind: 'node_reserved', deviceId: null, message: 'x' },
        { clusterId: 'cls_events', atMs: t0 + 1, kind: 'node_reserved', deviceId: devices[1]!, message: 'b' },
      ])
      await store.appendClusterEvents([
        { clusterId: 'cls_events', atMs: t0 + 2, kind: 'state_changed', deviceId: null, message: 'c' },
      ])
      const all = await store.listClusterEvents('cls_events', 0n, 100)
      assert.deepEqual(
        all.map((event) => [event.message, event.kind, event.deviceId, event.atMs, event.clusterId]),
        [
          ['a', 'node_reserved', devices[0], t0 + 1, 'cls_events'],
          ['b', 'node_reserved', devices[1], t0 + 1, 'cls_events'],
          ['c', 'state_changed', null, t0 + 2, 'cls_events'],
        ],
      )
      assert.ok(all.every((event, index) => index === 0 || event.seq > all[index - 1]!.seq))
      assert.equal(typeof all[0]!.seq, 'bigint')
      assert.deepEqual(await store.listClusterEvents('cls_events', all[0]!.seq, 1), [all[1]])
      assert.deepEqual(await store.listClusterEvents('cls_events', all[2]!.seq, 10), [])
      assert.deepEqual(
        (await store.listClusterEvents('cls_events_other', 0n, 10)).map((event) => event.message),
        ['x'],
      )
      await assert.rejects(
        store.appendClusterEvents([
          { clusterId: 'cls_missing', atMs: t0, kind: 'state_changed', deviceId: null, message: '' },
        ]),
      )
    })

    it('never moves a job out of a terminal status', async () => {
      await mustCreate(store, 'cls_jobs', [devices[0]!])
      await store.insertJob(job('job_a', 'cls_jobs', t0 + 1))
      await store.insertJob(job('job_b', 'cls_jobs', t0 + 2))
      assert.deepEqual(await store.getJob('job_a'), job('job_a', 'cls_jobs', t0 + 1))
      assert.equal(await store.getJob('job_missing'), undefined)
      assert.equal(await store.updateJob('job_missing', { status: 'running' }), undefined)
      assert.deepEqual(
        (await store.listJobs('cls_jobs', 10)).map((listed) => listed.id),
        ['job_b', 'job_a'],
      )
      assert.deepEqual(
        (await store.listJobs('cls_jobs', 1)).map((listed) => listed.id),
        ['job_b'],
      )

      const running = await store.updateJob('job_a', { status: 'running', message: 'started' })
      assert.deepEqual(running, {
        ...job('job_a', 'cls_jobs', t0 + 1),
        status: 'running',
        message: 'started',
      })
      const done = await store.updateJob('job_a', {
        status: 'succeeded',
        message: 'exited 0',
        exitCode: 0,
        finishedAtMs: t0 + 50,
      })
      assert.deepEqual(done, {
        ...running,
        status: 'succeeded',
        message: 'exited 0',
        exitCode: 0,
        finishedAtMs: t0 + 50,
      })
      // a stale report that would change a terminal status changes nothing
      assert.deepEqual(await store.updateJob('job_a', { status: 'running', message: 'late' }), done)
      assert.deepEqual(await store.updateJob('job_a', { status: 'failed', exitCode: 1 }), done)
      // a patch that keeps the status still applies; an explicit null clears the exit code
      assert.deepEqual(await store.updateJob('job_a', { message: 'archived' }), {
        ...done,
        message: 'archived',
      })
      assert.deepEqual(await store.updateJob('job_a', { exitCode: null }), {
        ...done,
        message: 'archived',
        exitCode: null,
      })
      assert.equal((await store.updateJob('job_b', { status: 'stopped' }))?.status, 'stopped')
      assert.equal((await store.updateJob('job_b', { status: 'succeeded' }))?.status, 'stopped')
    })

    it('deletes only a finished job, with its log', async () => {
      await mustCreate(store, 'cls_delete', [devices[0]!])
      await store.insertJob(job('job_del', 'cls_delete', t0))
      await store.appendJobLog('job_del', 'line\n')
      assert.equal(await store.deleteJob('job_del'), false, 'a pending job stays')
      await store.updateJob('job_del', { status: 'failed', finishedAtMs: t0 + 1 })
      assert.equal(await store.deleteJob('job_del'), true)
      assert.equal(await store.getJob('job_del'), undefined)
      assert.deepEqual(await store.readJobLog('job_del', 0, 10), [])
      assert.equal(await store.deleteJob('job_del'), false)
    })

    it('numbers job log chunks from 1 and reads them after a seq', async () => {
      await mustCreate(store, 'cls_logs', [devices[0]!])
      await store.insertJob(job('job_log', 'cls_logs', t0))
      await store.insertJob(job('job_log_2', 'cls_logs', t0))
      assert.equal(await store.appendJobLog('job_log', 'one\n'), 1)
      assert.equal(await store.appendJobLog('job_log', 'two\n'), 2)
      assert.equal(await store.appendJobLog('job_log_2', 'other\n'), 1)
      assert.equal(await store.appendJobLog('job_log', 'three\n'), 3)
      assert.deepEqual(await store.readJobLog('job_log', 0, 10), [
        { seq: 1, text: 'one\n' },
        { seq: 2, text: 'two\n' },
        { seq: 3, text: 'three\n' },
      ])
      assert.deepEqual(await store.readJobLog('job_log', 1, 1), [{ seq: 2, text: 'two\n' }])
      assert.deepEqual(await store.readJobLog('job_log', 3, 10), [])
      assert.deepEqual(await store.readJobLog('job_missing', 0, 10), [])
      await assert.rejects(store.appendJobLog('job_missing', 'x'), /job_missing/)
      const seqs = await Promise.all(
        Array.from({ length: 8 }, (_, index) => store.appendJobLog('job_log', `c${index}`)),
      )
      assert.deepEqual(
        seqs.sort((a, b) => a - b),
        [4, 5, 6, 7, 8, 9, 10, 11],
      )
    })
  })
}

describe('subnet exhaustion on the embedded store', () => {
  it('refuses a cluster when all 16,384 subnets are taken, and reuses the one freed', async () => {
    const driver = await createPgliteDriver()
    const store = await createStore({ driver })
    try {
      const devices = await seedDevices(store)
      await driver.execute(
        `INSERT INTO clusters (id, account_id, name, state, state_reason, desired, request, node_count,
           gpus_per_node, duration_ms, subnet_index, price_per_hour_micro_usd, created_at_ms, updated_at_ms,
           state_changed_at_ms)
         SELECT 'cls_fill_' || i, $1, 'fill', 'ready', 'filled', 'running', '{}', 1, 1, 1, i, 1, $2, $2, $2
         FROM generate_series(0, 16383) AS s(i)`,
        [accountId, t0],
      )
      assert.deepEqual(await store.createCluster(newCluster('cls_full', devices.slice(0, 2))), {
        ok: false,
        alreadyReserved: [],
        noSubnet: true,
      })
      assert.equal(await store.getCluster('cls_full'), undefined)
      assert.deepEqual(await store.listReservedDeviceIds(), [])
      await store.updateCluster('cls_fill_9000', { state: 'terminated' }, t0 + 1)
      assert.equal((await mustCreate(store, 'cls_fits', devices.slice(0, 2))).cluster.subnetIndex, 9000)
    } finally {
      await store.close()
    }
  })
})

describe('concurrent cluster creation on PostgreSQL', () => {
  let database: TestDatabase
  const stores: Store[] = []
  let devices: string[]
  before(async () => {
    database = await createTestDatabase()
    // Several coordinator processes: separate stores (pools) over one database.
    for (let index = 0; index < 4; index += 1) {
      stores.push(
        await openStore({ kind: 'postgres', connectionString: database.connectionString, maxConnections: 4 }),
      )
    }
    devices = await seedDevices(stores[0]!)
  })
  after(async () => {
    for (const store of stores) await store.close()
    await database.drop()
  })

  it('never puts a device in two clusters, never shares a subnet, never splits a cluster', async () => {
    let run = 0
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.uniqueArray(fc.integer({ min: 0, max: deviceCount - 1 }), { minLength: 1, maxLength: 4 }),
          { minLength: 8, maxLength: 8 },
        ),
        async (gangs) => {
          run += 1
          const clusterIds = gangs.map((_, index) => `cls_${run}_${index}`)
          const asked = gangs.map((gang) => gang.map((device) => devices[device]!))
          const outcomes = await Promise.all(
            asked.map((deviceIds, index) =>
              stores[index % stores.length]!.createCluster(
                newCluster(clusterIds[index]!, deviceIds, t0 + run),
              ),
            ),
          )
          const observer = stores[1]!
          const granted: string[] = []
          const subnets: number[] = []
          for (const [index, outcome] of outcomes.entries()) {
            const clusterId = clusterIds[index]!
            const nodes = await observer.listClusterNodes(clusterId)
            if (outcome.ok) {
              // whole: every device asked for is a node, in order, and held by this cluster
              assert.deepEqual(
                nodes.map((node) => node.deviceId),
                asked[index],
              )
              for (const deviceId of asked[index]!) {
                assert.equal((await observer.getDevice(deviceId))?.reservedByClusterId, clusterId)
              }
              granted.push(...asked[index]!)
              subnets.push(outcome.cluster.subnetIndex!)
            } else {
              // nothing: no cluster, no nodes, and it was refused for a device someone else holds
              assert.equal(await observer.getCluster(clusterId), undefined)
              assert.deepEqual(nodes, [])
              assert.ok(outcome.alreadyReserved.length > 0)
              assert.ok(outcome.alreadyReserved.every((deviceId) => asked[index]!.includes(deviceId)))
            }
          }
          assert.ok(subnets.length >= 1)
          assert.equal(new Set(granted).size, granted.length)
          assert.deepEqual(await observer.listReservedDeviceIds(), [...granted].sort())
          // distinct, and the lowest free ones: no gap left by a lost race
          assert.deepEqual(
            [...subnets].sort((a, b) => a - b),
            subnets.map((_, index) => index),
          )
          for (const [index, outcome] of outcomes.entries()) {
            if (!outcome.ok) continue
            await stores[index % stores.length]!.updateCluster(
              clusterIds[index]!,
              { state: 'terminated' },
              t0 + run,
            )
          }
          assert.deepEqual(await observer.listReservedDeviceIds(), [])
        },
      ),
      { numRuns: 25 },
    )
  })
})
