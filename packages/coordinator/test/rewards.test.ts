import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { seededRandom } from '@gpumesh/core'
import type { Coordinator } from '@gpumesh/coordinator'
import { ledgerAccounts } from '@gpumesh/ledger'
import { defaultRewardPolicy, epochEmissionUnits, epochStartMs } from '@gpumesh/rewards'
import type { Store } from '@gpumesh/store'
import {
  apiCaller,
  eventually,
  gpuInventory,
  ManualClock,
  simulatedWorker,
  startTestCoordinator,
  storeBackends,
  type SimulatedWorker,
} from '@gpumesh/testing'

// Epoch rewards end to end on the coordinator: real worker sessions (simulated machines) make the online
// record, a real cluster makes the hired record, proof-of-compute rows the verification record. An epoch is
// closed from those records, paid through the ledger, closed again without paying twice, and shown by the
// API. Then a seeded run of epochs with machines dropping and returning checks after each one that the
// ledger verifies and the reward pool holds exactly what was minted less what was paid.

const epochMs = 60_000
const policy = { ...defaultRewardPolicy, epochLengthMs: epochMs }
const firstEpoch = 10
const realPauseMs = 400

for (const backend of storeBackends) {
  describe(`epoch rewards on ${backend.name}`, () => {
    let store: Store
    let cleanup: () => Promise<void>
    let coordinator: Coordinator
    let baseUrl: string
    const clock = new ManualClock(epochStartMs(policy, firstEpoch) - 30_000)
    const call = apiCaller(() => baseUrl)
    const workers: SimulatedWorker[] = []
    const accounts: Record<'a' | 'b', { id: string; key: string }> = {} as never
    let h100: SimulatedWorker
    let spotFailed: SimulatedWorker
    let cpuHired: SimulatedWorker
    let rtx: SimulatedWorker

    const balanceOf = async (id: string) => {
      const [account] = await store.ledger.getAccounts([id])
      return account ? account.creditsPosted - account.debitsPosted : 0n
    }
    // Moves the manual clock, then lets real heartbeats stamp the new time before anything checks liveness.
    const advance = async (ms: number) => {
      clock.advanceMs(ms)
      await new Promise((resolve) => setTimeout(resolve, realPauseMs))
      await coordinator.tick()
    }
    const challenge = async (deviceId: string, atMs: number, outcome: 'passed' | 'failed') =>
      store.insertChallenge({
        id: `chl_${deviceId}_${atMs}`,
        deviceId,
        issuedAtMs: atMs - 1_000,
        matrixSize: 64,
        seedHex: '00',
        commitDeadlineAtMs: atMs,
        outcome,
        reasonCode: outcome === 'failed' ? 'wrong_rows' : null,
        reason: outcome === 'failed' ? 'opened rows do not match the commitment' : 'passed',
        merkleRootHex: null,
        committedAtMs: atMs - 500,
        finishedAtMs: atMs,
        backend: 'cpu',
        effectiveTflops: 1,
      })

    before(async () => {
      ;({ store, cleanup } = await backend.open())
      coordinator = await startTestCoordinator(
        store,
        { rewardsEnabled: true, rewardEpochMs: epochMs, runBackgroundLoops: false, heartbeatIntervalMs: 100 },
        clock,
      )
      baseUrl = await coordinator.listen()
      for (const name of ['a', 'b'] as const) {
        const created = await call('POST', '/v1/accounts', undefined, {
          name: `supplier ${name}`,
          roles: ['supplier', 'renter'],
        })
        accounts[name] = { id: created.body.account.id, key: created.body.apiKey.key }
      }
      h100 = await simulatedWorker(baseUrl, accounts.a.key, {
        inventory: gpuInventory('h100', 'NVIDIA H100 80GB HBM3', 1),
      })
      spotFailed = await simulatedWorker(baseUrl, accounts.a.key, {
        inventory: gpuInventory('h100', 'NVIDIA H100 80GB HBM3', 1),
      })
      cpuHired = await simulatedWorker(baseUrl, accounts.b.key)
      rtx = await simulatedWorker(baseUrl, accounts.b.key, {
        inventory: gpuInventory('rtx-4090', 'NVIDIA GeForce RTX 4090', 2),
      })
      workers.push(h100, spotFailed, cpuHired, rtx)
      await advance(0)
      for (const worker of workers) {
        await challenge(worker.deviceId, clock.nowMs(), 'passed')
        await store.setDeviceVerification(worker.deviceId, 'verified', 'passed in test')
      }
    })
    after(async () => {
      for (const worker of workers) worker.close()
      await coordinator?.stop()
      await cleanup?.()
    })

    it('pays an epoch from measured records, by the published formula, once however often it is closed', async () => {
      // The CPU machine is hired by a one-node cluster from 30 s before the epoch to its middle.
      const created = await call('POST', '/v1/clusters', accounts.a.key, {
        nodes: 1,
        gpuModel: 'cpu',
        verifiedOnly: false,
      })
      assert.equal(created.status, 201, JSON.stringify(created.body))
      const clusterId = created.body.id as string
      await eventually(async () => {
        await coordinator.tick()
        return (await store.getCluster(clusterId))?.state === 'ready'
      }, 'cluster ready')
      assert.deepEqual(
        (await store.listClusterNodes(clusterId)).map((node) => node.deviceId),
        [cpuHired.deviceId],
      )
      await advance(60_000)
      await call('POST', `/v1/clusters/${clusterId}/terminate`, accounts.a.key, {})
      await eventually(async () => {
        await coordinator.tick()
        return (await store.getCluster(clusterId))?.state === 'terminated'
      }, 'cluster terminated')
      // A proof-of-compute spot check fails in the middle of the epoch.
      await challenge(spotFailed.deviceId, clock.nowMs(), 'failed')
      await advance(30_000)

      const [closed] = await coordinator.rewards.tick()
      assert.equal(closed?.epoch, firstEpoch)
      assert.equal(closed?.computed, true)

      // By hand: month 0 emits 5,000,000 GMT over 30 days; this epoch is 60 s of it.
      const emission = (5_000_000n * 1_000_000n * 60_000n) / (30n * 86_400_000n)
      assert.equal(emission, epochEmissionUnits(policy, firstEpoch, 0n))
      const gpuPool = (emission * 9_000n) / 10_000n
      // hardware × bandwidth (no speedtest: 500) × (1000 + hired bonus × hired share) × uptime ppm
      const h100Score = 2_000n * 500n * 1_000n * 1_000_000n
      const rtxScore = 2n * 750n * 500n * 1_000n * 1_000_000n
      const expected = new Map([
        [h100.deviceId, (gpuPool * h100Score) / (h100Score + rtxScore)],
        [rtx.deviceId, (gpuPool * rtxScore) / (h100Score + rtxScore)],
        [cpuHired.deviceId, emission - gpuPool],
        [spotFailed.deviceId, 0n],
      ])
      assert.equal(expected.get(h100.deviceId), 59_523_809n)
      const detail = (await call('GET', `/v1/rewards/epochs/${firstEpoch}`)).body
      assert.equal(detail.epoch.emissionUnits, emission.toString())
      for (const payout of detail.payouts) {
        assert.equal(BigInt(payout.amountUnits), expected.get(payout.deviceId), payout.deviceId)
      }
      const hired = detail.payouts.find((payout: any) => payout.deviceId === cpuHired.deviceId)
      assert.equal(hired.pool, 'cpu')
      assert.equal(hired.factors.hiredPpm, 500_000, 'hired from 30 s before the epoch to its middle')
      assert.equal(hired.factors.hiredMilli, 1_500)
      const refused = detail.payouts.find((payout: any) => payout.deviceId === spotFailed.deviceId)
      assert.equal(refused.eligible, false)
      assert.equal(refused.ineligibleReasonCode, 'failed_spot_check')
      assert.match(refused.ineligibleReason, /opened rows do not match/)

      const earnedA = await balanceOf(ledgerAccounts.earnings(accounts.a.id).id)
      const earnedB = await balanceOf(ledgerAccounts.earnings(accounts.b.id).id)
      assert.equal(earnedA, expected.get(h100.deviceId))
      assert.equal(earnedB, expected.get(rtx.deviceId)! + expected.get(cpuHired.deviceId)!)

      const again = await coordinator.rewards.close(firstEpoch)
      assert.equal(again.computed, false)
      assert.equal(
        await coordinator.rewards.tick().then((results) => results.length),
        0,
        'nothing left to close',
      )
      assert.equal(await balanceOf(ledgerAccounts.earnings(accounts.a.id).id), earnedA, 'paid once')
      assert.equal(await balanceOf(ledgerAccounts.earnings(accounts.b.id).id), earnedB, 'paid once')
      assert.equal((await store.ledger.verify()).ok, true)

      // The supplier's statement shows the reward beside rentals, by device.
      const statement = (await call('GET', `/v1/earnings?deviceId=${h100.deviceId}`, accounts.a.key)).body
      assert.deepEqual(
        statement.lines.map((line: any) => [line.source, line.transfers]),
        [['reward', 1]],
      )
      const perDevice = (await call('GET', `/v1/rewards/devices/${h100.deviceId}`)).body
      assert.equal(perDevice.payouts[0].share, '0.571428571')
      assert.equal(
        'hostname' in perDevice.payouts[0],
        false,
        'finding 8: payouts name the device, not its host',
      )

      const summary = (await call('GET', '/v1/explorer/summary')).body
      assert.deepEqual(summary.devices, { enrolled: 4, connected: 4, verified: 4, hired: 0 })
      assert.deepEqual(summary.gpus, { enrolled: 4, connected: 4, verified: 4, hired: 0 })
      assert.equal(summary.rewards.epochsClosed, 1)
      assert.equal(summary.rewards.paidUnits, (earnedA + earnedB).toString())
      assert.equal(summary.ledger.rewardEarningsUnits, (earnedA + earnedB).toString())
      assert.equal(summary.clusters.total, 1)
      assert.ok(summary.computeHours.totalNodeHours > 0.016 && summary.computeHours.totalNodeHours < 0.018)
      assert.equal(summary.computeHours.daily.length, 30)
      assert.deepEqual(
        summary.computeHours.daily.slice(0, -1).filter((day: any) => day.nodeHours !== 0),
        [],
        'no service before today',
      )
      assert.equal(summary.computeHours.daily.at(-1).nodeHours, summary.computeHours.totalNodeHours)
      const device = (await call('GET', `/v1/explorer/devices/${spotFailed.deviceId}`)).body
      assert.deepEqual(
        device.verifications.map((row: any) => row.outcome),
        ['failed', 'passed'],
      )
      assert.equal(device.rewards[0].ineligibleReasonCode, 'failed_spot_check')
      assert.equal((await call('GET', '/v1/explorer/devices/dev_nope')).status, 404)
      assert.equal((await call('GET', '/v1/rewards/epochs/999999')).status, 404)
      assert.equal((await call('GET', '/v1/explorer/devices?limit=0')).status, 400)
    })

    it('over seeded epochs with machines dropping out, never pays twice and keeps the ledger exact', async () => {
      const random = seededRandom(0x5eed_1234)
      let mintedBefore = await store.rewards.totalEmitted()
      for (let round = 0; round < 5; round += 1) {
        // Some machines drop for a while inside the epoch (some past the grace window) and come back.
        const dropped = workers.filter(() => random.next() < 0.4)
        const dropAfterMs = Math.floor(random.next() * 30_000)
        await advance(dropAfterMs)
        for (const worker of dropped) worker.kill()
        await advance(Math.floor(random.next() * 25_000))
        for (const worker of dropped) await worker.connect(baseUrl)
        await advance(epochMs - dropAfterMs)
        const closes = 1 + Math.floor(random.next() * 3)
        for (let attempt = 0; attempt < closes; attempt += 1) await coordinator.rewards.tick()

        const epochs = (await call('GET', '/v1/rewards/epochs?limit=500')).body.epochs
        const minted = epochs.reduce((sum: bigint, epoch: any) => sum + BigInt(epoch.emissionUnits), 0n)
        const paid = epochs.reduce((sum: bigint, epoch: any) => sum + BigInt(epoch.paidUnits), 0n)
        for (const epoch of epochs) assert.ok(BigInt(epoch.paidUnits) <= BigInt(epoch.emissionUnits))
        assert.ok(minted > mintedBefore, `round ${round} closed an epoch`)
        mintedBefore = minted
        assert.equal(
          await balanceOf(ledgerAccounts.rewards().id),
          minted - paid,
          'the pool holds minted − paid',
        )
        const earned =
          (await balanceOf(ledgerAccounts.earnings(accounts.a.id).id)) +
          (await balanceOf(ledgerAccounts.earnings(accounts.b.id).id))
        assert.equal(earned, paid, 'suppliers hold exactly what was paid')
        const verification = await store.ledger.verify()
        assert.equal(verification.ok, true, `mismatched ${verification.mismatched.join(', ')}`)
      }
    })
  })
}
