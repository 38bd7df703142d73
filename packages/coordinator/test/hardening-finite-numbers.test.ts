import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Coordinator } from '@gpumesh/coordinator'
import { ledgerAccounts } from '@gpumesh/ledger'
import type { Store } from '@gpumesh/store'
import {
  apiCaller,
  enrollTestDevice,
  eventually,
  insertOperatorKey,
  simulatedWorker,
  startTestCoordinator,
  storeBackends,
  type SimulatedWorker,
} from '@gpumesh/testing'

// Issue 22, finding 2: "Infinity", "-Infinity", "1e400", "0x10" and "  7" passed every integer and number
// check (ajv coerced query text and JSON bodies alike), which gave 500s, a cluster hold no cluster owned,
// and a speedtest record that broke its device's explorer page. Each repro of the finding, on both stores.

const billing = { clusterBillingEnabled: true, gmtPerUsd: '1', platformFeeBasisPoints: 1_000 }

for (const backend of storeBackends) {
  describe(`finding 2 (finite numbers only) on ${backend.name}`, () => {
    let store: Store
    let cleanup: () => Promise<void>
    let coordinator: Coordinator
    let baseUrl: string
    let operatorKey: string
    let renterKey: string
    let renterAccountId: string
    let supplierKey: string
    const workers: SimulatedWorker[] = []
    const call = apiCaller(() => baseUrl)
    const post = (path: string, key: string | undefined, text: string) =>
      fetch(`${baseUrl}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}) },
        body: text,
      }).then(async (response) => ({ status: response.status, body: (await response.json()) as any }))
    const heldGmt = async () => (await call('GET', '/v1/wallet', renterKey)).body.heldGmt as string
    const fields = (body: any): string[] => body.details.issues.map((issue: { field: string }) => issue.field)

    before(async () => {
      ;({ store, cleanup } = await backend.open())
      coordinator = await startTestCoordinator(store, billing)
      baseUrl = await coordinator.listen()
      operatorKey = await insertOperatorKey(store)
      const renter = await call('POST', '/v1/accounts', undefined, { name: 'renter', roles: ['renter'] })
      renterKey = renter.body.apiKey.key
      renterAccountId = renter.body.account.id
      const supplier = await call('POST', '/v1/accounts', undefined, {
        name: 'supplier',
        roles: ['supplier'],
      })
      supplierKey = supplier.body.apiKey.key
      const credited = await call('POST', '/v1/operator/credits', operatorKey, {
        accountId: renterAccountId,
        amountGmt: '100',
        reason: 'test funds',
      })
      assert.equal(credited.status, 200, JSON.stringify(credited.body))
    })
    after(async () => {
      for (const worker of workers) worker.close()
      await coordinator?.stop()
      await cleanup?.()
    })

    it('refuses non-decimal query numbers with a 400 naming the field', async () => {
      const cases: [string, string | undefined, string][] = [
        ['/v1/quotes?nodes=Infinity', undefined, 'querystring.nodes'],
        ['/v1/quotes?nodes=0x10', undefined, 'querystring.nodes'],
        ['/v1/quotes?nodes=%20%207', undefined, 'querystring.nodes'],
        ['/v1/quotes?nodes=1e400', undefined, 'querystring.nodes'],
        ['/v1/rewards/epochs?before=1e308', undefined, 'querystring.before'],
        ['/v1/explorer/devices?limit=Infinity', undefined, 'querystring.limit'],
        ['/v1/wallet/history?limit=Infinity', renterKey, 'querystring.limit'],
        ['/v1/earnings?days=Infinity', supplierKey, 'querystring.days'],
        ['/v1/explorer/devices?limit=99999999999999999999', undefined, 'querystring.limit'],
      ]
      for (const [path, key, field] of cases) {
        const reply = await call('GET', path, key)
        assert.equal(reply.status, 400, `${path}: ${JSON.stringify(reply.body)}`)
        assert.deepEqual(fields(reply.body), [field], path)
      }
      // Plain decimal text still works, and bounds still apply after parsing.
      assert.equal((await call('GET', '/v1/explorer/devices?limit=5')).status, 200)
      assert.equal((await call('GET', '/v1/explorer/devices?limit=0')).status, 400)
    })

    it('does not coerce JSON bodies and refuses non-finite JSON numbers', async () => {
      for (const text of [
        '{"nodes":"Infinity","gpusPerNode":1,"durationHours":1}',
        '{"nodes":"7","gpusPerNode":1,"durationHours":1}',
        '{"nodes":1e400,"gpusPerNode":1,"durationHours":1}',
        '{"nodes":-1e400,"gpusPerNode":1,"durationHours":1}',
      ]) {
        const reply = await post('/v1/clusters/dry-run', renterKey, text)
        assert.equal(reply.status, 400, `${text}: ${JSON.stringify(reply.body)}`)
        assert.deepEqual(fields(reply.body), ['nodes'], text)
      }
    })

    it('refuses {"nodes":"-Infinity"} on POST /v1/clusters without holding anything', async () => {
      const reply = await post(
        '/v1/clusters',
        renterKey,
        '{"nodes":"-Infinity","gpusPerNode":0,"durationHours":1}',
      )
      assert.equal(reply.status, 400, JSON.stringify(reply.body))
      assert.equal(await heldGmt(), '0.000000')
    })

    it('releases the hold when recording the cluster fails after the hold was taken', async () => {
      workers.push(await simulatedWorker(baseUrl, supplierKey))
      await eventually(async () => (await call('GET', '/v1/offers?region=sim')).body.total === 1, 'on offer')
      // The same coordinator code over a store whose createCluster fails once, as a database error would.
      let failures = 1
      const failing = new Proxy(store, {
        get(target, property) {
          if (property === 'createCluster' && failures > 0) {
            failures -= 1
            return async () => {
              throw new Error('simulated store failure')
            }
          }
          const value = Reflect.get(target, property, target) as unknown
          return typeof value === 'function' ? value.bind(target) : value
        },
      })
      const faulty = await startTestCoordinator(failing, { ...billing, runBackgroundLoops: false })
      try {
        await faulty.tick()
        const created = await faulty.app.inject({
          method: 'POST',
          url: '/v1/clusters',
          headers: { authorization: `Bearer ${renterKey}` },
          payload: { nodes: 1, gpuModel: 'cpu', verifiedOnly: false },
        })
        assert.equal(created.statusCode, 500, created.body)
        assert.equal(failures, 0, 'the failure was injected at createCluster')
        assert.equal(await heldGmt(), '0.000000', 'the hold was released')
      } finally {
        await faulty.stop()
      }
    })

    it('releases, at start-up, old holds that no cluster owns, and leaves young ones', async () => {
      const nowMs = Date.now()
      const user = ledgerAccounts.user(renterAccountId).id
      const hold = (clusterId: string, createdAtMs: number) =>
        store.ledger.createTransfers(
          [
            {
              id: `hold:${clusterId}:0`,
              kind: 'pending',
              debitAccountId: user,
              creditAccountId: ledgerAccounts.escrow(clusterId).id,
              amount: 1_000_000n,
              timeoutMs: 86_400_000,
              code: 'hold',
              reference: clusterId,
            },
          ],
          createdAtMs,
        )
      await store.ledger.createAccounts(
        [ledgerAccounts.escrow('cls_orphaned'), ledgerAccounts.escrow('cls_in_flight')],
        nowMs,
      )
      assert.deepEqual(await hold('cls_orphaned', nowMs - 10 * 60_000), ['ok'])
      assert.deepEqual(await hold('cls_in_flight', nowMs), ['ok'])
      assert.equal(await heldGmt(), '2.000000')
      // buildCoordinator starts the cluster controller, which sweeps.
      const restarted = await startTestCoordinator(store, { ...billing, runBackgroundLoops: false })
      try {
        assert.equal(await store.ledger.pendingState('hold:cls_orphaned:0'), 'voided')
        assert.equal(await heldGmt(), '1.000000', 'the young hold is left to its create')
      } finally {
        await restarted.stop()
      }
    })

    it('shows null for a non-finite speedtest figure already stored, instead of a 500', async () => {
      const supplierAccountId = (await call('GET', '/v1/me', supplierKey)).body.account.id
      await enrollTestDevice(store, 'dev_infinite', supplierAccountId, Date.now())
      await store.insertSpeedtestResult({
        id: 'spd_infinite',
        deviceId: 'dev_infinite',
        measuredAtMs: Date.now(),
        latencyMs: Number.NEGATIVE_INFINITY,
        jitterMs: Number.POSITIVE_INFINITY,
        downloadMbps: 100,
        uploadMbps: 50,
        bandwidthTier: null,
        compute: null,
      })
      const page = await call('GET', '/v1/explorer/devices/dev_infinite')
      assert.equal(page.status, 200, JSON.stringify(page.body))
      assert.equal(page.body.speedtest.latencyMs, null)
      assert.equal(page.body.speedtest.downloadMbps, 100)
    })
  })
}
