import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { formatGmtUnits, parseGmtToUnits } from '@gpumesh/core'
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

// Clusters paid from the renter's wallet: refused before anything is reserved when the wallet is short; a
// hold at deploy; charges only once ready, every interval, for the time each node was serving (a machine
// that died is not charged after it died); suppliers and the platform fee credited as time is charged; the
// unused hold released at an early end; every interval charged once across a coordinator restart. Balances
// are checked against figures computed here by hand from the times the store recorded.

const intervalMs = 400
const billing = {
  clusterBillingEnabled: true,
  billingIntervalMs: intervalMs,
  gmtPerUsd: '1',
  platformFeeBasisPoints: 1_000,
}

for (const backend of storeBackends) {
  describe(`cluster billing on ${backend.name}`, () => {
    let store: Store
    let cleanup: () => Promise<void>
    let coordinator: Coordinator
    let baseUrl: string
    let operatorKey: string
    let supplierKey: string
    let supplierAccountId: string
    let renterKey: string
    let renterAccountId: string
    const workers: SimulatedWorker[] = []

    const call = apiCaller(() => baseUrl)
    const offers = async () => (await call('GET', '/v1/offers?region=sim&limit=50')).body.total as number
    const units = (gmt: string) => parseGmtToUnits(gmt)!
    const balanceOf = async (id: string) => {
      const [account] = await store.ledger.getAccounts([id])
      return account ? account.creditsPosted - account.debitsPosted : 0n
    }

    before(async () => {
      ;({ store, cleanup } = await backend.open())
      coordinator = await startTestCoordinator(store, billing)
      baseUrl = await coordinator.listen()
      operatorKey = await insertOperatorKey(store)
      const supplier = await call('POST', '/v1/accounts', undefined, {
        name: 'supplier',
        roles: ['supplier'],
      })
      supplierKey = supplier.body.apiKey.key
      supplierAccountId = supplier.body.account.id
      const renter = await call('POST', '/v1/accounts', undefined, { name: 'renter', roles: ['renter'] })
      renterKey = renter.body.apiKey.key
      renterAccountId = renter.body.account.id
      for (let index = 0; index < 3; index += 1) workers.push(await simulatedWorker(baseUrl, supplierKey))
      await eventually(async () => (await offers()) === 3, 'three machines on offer')
    })
    after(async () => {
      for (const worker of workers) worker.close()
      await coordinator?.stop()
      await cleanup?.()
    })

    it('refuses a cluster the wallet cannot pay for, stating the shortfall, before reserving anything', async () => {
      const refused = await call('POST', '/v1/clusters', renterKey, {
        nodes: 2,
        gpuModel: 'cpu',
        verifiedOnly: false,
      })
      assert.equal(refused.status, 409)
      assert.equal(refused.body.code, 'GPUMESH_ERR_INSUFFICIENT_FUNDS')
      // Two nodes at 0.50 USD an hour each, for the default hour, at 1 GMT per USD.
      assert.equal(refused.body.details.shortfallGmt, '1.000000')
      assert.equal(await offers(), 3, 'no machine was reserved')
      assert.deepEqual((await call('GET', '/v1/clusters', renterKey)).body.clusters, [])
    })

    it('holds at deploy, charges each node for the time it served, pays supplier and fee, releases the rest', async () => {
      const credited = await call('POST', '/v1/operator/credits', operatorKey, {
        accountId: renterAccountId,
        amountGmt: '10',
        reason: 'test funds',
      })
      assert.equal(credited.status, 200)
      const created = await call('POST', '/v1/clusters', renterKey, {
        nodes: 2,
        gpuModel: 'cpu',
        verifiedOnly: false,
      })
      assert.equal(created.status, 201, JSON.stringify(created.body))
      const clusterId = created.body.id
      assert.equal(created.body.pricePerHourUsd, '1.00')
      const held = (await call('GET', '/v1/wallet', renterKey)).body
      assert.deepEqual(held, {
        accountId: renterAccountId,
        balanceGmt: '10.000000',
        availableGmt: '9.000000',
        heldGmt: '1.000000',
        holds: [{ heldFor: { type: 'cluster', id: clusterId }, amountGmt: '1.000000' }],
      })

      await eventually(async () => {
        const view = (await call('GET', `/v1/clusters/${clusterId}`, renterKey)).body
        return view.state === 'ready' && view
      }, 'ready')
      const intervalsBilled = async () => (await store.getCluster(clusterId))!.billedIntervals
      await eventually(async () => (await intervalsBilled()) >= 2, 'two intervals billed', 15_000)

      // A machine dies: its node is lost and replaced, and it is charged only for the time it served.
      const members = new Set((await store.listClusterNodes(clusterId)).map((node) => node.deviceId))
      const victim = workers.find((worker) => members.has(worker.deviceId) && worker !== workers[0])!
      victim.kill()
      await eventually(async () => {
        const nodes = await store.listClusterNodes(clusterId)
        const lost = nodes.find((node) => node.deviceId === victim.deviceId)?.phase === 'lost'
        return lost && nodes.filter((node) => node.phase === 'ray_joined').length === 2
      }, 'the lost node replaced')

      // A coordinator stopped in the middle of billing: the next one bills on from where the store says.
      await coordinator.stop()
      coordinator = await startTestCoordinator(store, billing)
      baseUrl = await coordinator.listen()
      for (const worker of workers) if (worker !== victim) await worker.connect(baseUrl)
      const afterRestart = await intervalsBilled()
      await eventually(
        async () => (await intervalsBilled()) >= afterRestart + 2,
        'two more intervals',
        15_000,
      )

      const terminated = await call('POST', `/v1/clusters/${clusterId}/terminate`, renterKey)
      assert.equal(terminated.status, 200)
      await eventually(
        async () => (await call('GET', `/v1/clusters/${clusterId}`, renterKey)).body.state === 'terminated',
        'terminated',
      )

      // Every charge is a `bill:` transfer naming its interval: each interval once, 1..n with no gap.
      const history = (await call('GET', '/v1/wallet/history?limit=500', renterKey)).body.transfers as any[]
      const bills = history.filter((line) => line.id.startsWith(`bill:${clusterId}:`))
      const intervals = bills.map((line) => Number(line.id.split(':').at(-1))).sort((a, b) => a - b)
      const n = intervals.length
      assert.ok(n >= 4, `${n} intervals billed`)
      assert.deepEqual(
        intervals,
        Array.from({ length: n }, (_, index) => index + 1),
      )

      // By hand, from what the store recorded: when the cluster was ready, when billing ended, and when
      // each node was serving. Each node costs 0.5 GMT an hour = 500,000 units; its charge up to time t is
      // floor(500000 × served ms up to t / 3600000); interval k charges the difference at its two ends, and
      // 10% of each node's interval charge (rounded down) is the fee.
      const cluster = (await store.getCluster(clusterId))!
      const readyAtMs = cluster.readyAtMs!
      const endMs = cluster.billedUntilMs!
      const terminating = (await store.listClusterEvents(clusterId, 0n, 500)).find(
        (event) => event.kind === 'state_changed' && event.message.startsWith('terminating'),
      )!
      assert.ok(Math.abs(endMs - terminating.atMs) < 1_000, 'billed until termination began')
      assert.equal(
        n,
        Math.ceil((endMs - readyAtMs) / intervalMs),
        'the last, partial interval is charged too',
      )
      const periods = await store.listClusterNodeService(clusterId)
      const victimPeriods = periods.filter((period) => period.deviceId === victim.deviceId)
      const victimNode = (await store.listClusterNodes(clusterId)).find(
        (node) => node.deviceId === victim.deviceId,
      )!
      assert.equal(victimPeriods.length, 1)
      assert.ok(victimPeriods[0]!.endedAtMs! <= victimNode.leftAtMs!, 'not charged once it was gone')
      const served = (deviceId: string, untilMs: number) => {
        let total = 0
        for (const period of periods) {
          if (period.deviceId !== deviceId) continue
          const from = Math.max(period.startedAtMs, readyAtMs)
          const to = Math.min(period.endedAtMs ?? untilMs, untilMs)
          if (to > from) total += to - from
        }
        return total
      }
      const upTo = (deviceId: string, k: number) =>
        (500_000n * BigInt(served(deviceId, Math.min(readyAtMs + k * intervalMs, endMs)))) / 3_600_000n
      const devices = [...new Set(periods.map((period) => period.deviceId))]
      assert.equal(devices.length, 3, 'two nodes and the replacement served')
      let charged = 0n
      let fees = 0n
      for (let k = 1; k <= n; k += 1) {
        for (const deviceId of devices) {
          const charge = upTo(deviceId, k) - upTo(deviceId, k - 1)
          charged += charge
          fees += (charge * 1_000n) / 10_000n
        }
      }
      assert.ok(charged > 0n)
      const wallet = (await call('GET', '/v1/wallet', renterKey)).body
      assert.equal(units(wallet.balanceGmt), 10_000_000n - charged)
      assert.equal(wallet.heldGmt, '0.000000', 'the unused hold was released')
      assert.equal(wallet.availableGmt, wallet.balanceGmt)
      assert.equal(await balanceOf(`earnings:${supplierAccountId}`), charged - fees)
      assert.equal(await balanceOf('platform:fee'), fees)
      assert.equal(await balanceOf(`escrow:${clusterId}`), 0n)
      const verified = await call('GET', '/v1/ledger/verify', operatorKey)
      assert.equal(verified.body.ok, true)

      // Statements: the cluster's cost so far, and the supplier's earnings per device and day, each line
      // tracing to the transfers that make it.
      const view = (await call('GET', `/v1/clusters/${clusterId}`, renterKey)).body
      assert.deepEqual(view.billing, {
        chargedGmt: formatGmtUnits(charged),
        heldGmt: '0.000000',
        intervalsCharged: n,
        billedUntilMs: endMs,
      })
      const statement = (await call('GET', '/v1/earnings?days=2', supplierKey)).body
      assert.equal(statement.uncollectedGmt, formatGmtUnits(charged - fees))
      assert.equal(statement.periodTotalGmt, formatGmtUnits(charged - fees))
      assert.deepEqual(
        [...new Set(statement.lines.map((line: any) => line.deviceId))].sort(),
        [...devices].sort(),
        'a line per device that served',
      )
      for (const line of statement.lines) {
        assert.equal(line.source, 'rental')
        const trace = (
          await call('GET', `/v1/earnings/transfers?day=${line.day}&deviceId=${line.deviceId}`, supplierKey)
        ).body.transfers as any[]
        assert.equal(trace.length, line.transfers)
        assert.equal(
          formatGmtUnits(trace.reduce((sum, transfer) => sum + units(transfer.amountGmt), 0n)),
          line.amountGmt,
        )
        assert.ok(trace.every((transfer) => transfer.id.startsWith(`pay:${clusterId}:`)))
      }
      // Earnings are a supplier's: a renter's key is refused them (route access, issue 22 finding 3).
      assert.equal((await call('GET', '/v1/earnings', renterKey)).status, 403, 'only one’s own')
      const collected = await call('POST', '/v1/earnings/collect', supplierKey, {})
      assert.equal(collected.status, 200)
      assert.equal(collected.body.wallet.balanceGmt, formatGmtUnits(charged - fees))
      assert.equal((await call('GET', '/v1/earnings', supplierKey)).body.uncollectedGmt, '0.000000')
      assert.equal((await call('POST', '/v1/earnings/collect', supplierKey, {})).status, 409)
      await victim.connect(baseUrl)
    })
  })
}
