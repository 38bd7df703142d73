import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Coordinator } from '@gpumesh/coordinator'
import type { Store } from '@gpumesh/store'
import {
  apiCaller,
  eventually,
  simulatedWorker,
  startTestCoordinator,
  storeBackends,
  type SimulatedWorker,
} from '@gpumesh/testing'

// Pricing through the API: a machine on automatic pricing is listed at the engine's price; a quote explains
// every factor; a longer rental is cheaper per hour; a supplier sets a device's pricing, and only their own.

for (const backend of storeBackends) {
  describe(`pricing through the API on ${backend.name}`, () => {
    let store: Store
    let cleanup: () => Promise<void>
    let coordinator: Coordinator
    let baseUrl: string
    let supplierKey: string
    let otherSupplierKey: string
    const workers: SimulatedWorker[] = []

    const call = apiCaller(() => baseUrl)
    const offerOf = async (deviceId: string) =>
      ((await call('GET', '/v1/offers?region=sim&limit=50')).body.offers as any[]).find(
        (offer) => offer.deviceId === deviceId,
      )

    before(async () => {
      ;({ store, cleanup } = await backend.open())
      coordinator = await startTestCoordinator(store, { marketRefreshMs: 50 })
      baseUrl = await coordinator.listen()
      const signup = async (name: string) =>
        (await call('POST', '/v1/accounts', undefined, { name, roles: ['supplier'] })).body.apiKey.key
      supplierKey = await signup('supplier')
      otherSupplierKey = await signup('other')
      workers.push(
        await simulatedWorker(baseUrl, supplierKey, { pricingMode: 'auto', pricePerGpuHourUsd: null }),
      )
      workers.push(await simulatedWorker(baseUrl, supplierKey, { pricePerGpuHourUsd: '0.50' }))
      workers.push(await simulatedWorker(baseUrl, supplierKey, { pricePerGpuHourUsd: null }))
    })
    after(async () => {
      for (const worker of workers) worker.close()
      await coordinator?.stop()
      await cleanup?.()
    })

    it('lists an automatically priced machine at the engine price, and one without a price not at all', async () => {
      const [auto, fixed, unpriced] = workers as [SimulatedWorker, SimulatedWorker, SimulatedWorker]
      // 8 CPU cores at 0.01 USD a core-hour, 60% of it, ×0.9 for no measured bandwidth tier, ×0.85 for
      // the lowest demand (nothing hired), and ×1.1 in peak hours (14:00–22:00 UTC, when the test runs then).
      // The hour is read on every poll: a run that crosses 14:00 or 22:00 UTC sees the new price.
      const expected = () => {
        const hour = new Date().getUTCHours()
        return hour >= 14 && hour < 22 ? '0.040392' : '0.03672'
      }
      const autoOffer = await eventually(async () => {
        const offer = await offerOf(auto.deviceId)
        return offer?.pricePerGpuHourUsd === expected() && offer
      }, 'the automatic offer at its engine price')
      assert.equal(autoOffer.pricingMode, 'auto')
      assert.equal(
        (await eventually(() => offerOf(fixed.deviceId), 'the fixed offer')).pricePerGpuHourUsd,
        '0.50',
      )
      assert.equal(await offerOf(unpriced.deviceId), undefined)
      const quote = await eventually(async () => {
        const reply = await call('GET', `/v1/devices/${unpriced.deviceId}/quote`, supplierKey)
        return reply.body.automatic?.pricePerGpuHourUsd ? reply : undefined
      }, 'the unpriced device in the index')
      assert.equal(quote.status, 200)
      assert.equal(quote.body.pricePerGpuHourUsd, null)
      assert.equal(quote.body.unpricedReason, 'the supplier has set no price')
      assert.ok(quote.body.automatic.pricePerGpuHourUsd, 'automatic pricing would list it')
    })

    it('quotes a cluster with every factor, cheaper per hour for a longer commitment, without an account', async () => {
      const [auto] = workers as [SimulatedWorker]
      const hour = await call('GET', `/v1/quotes?nodes=2&gpuModel=cpu&verifiedOnly=false`)
      assert.equal(hour.status, 200, JSON.stringify(hour.body))
      assert.equal(hour.body.placeable, true)
      assert.deepEqual(
        hour.body.quote.nodes.map((node: any) => node.deviceId).sort(),
        [workers[0]!.deviceId, workers[1]!.deviceId].sort(),
      )
      const autoNode = hour.body.quote.nodes.find((node: any) => node.deviceId === auto.deviceId)
      assert.deepEqual(
        autoNode.factors.map((factor: any) => factor.factor),
        ['reference', 'network_share', 'bandwidth', 'location', 'demand', 'peak_hours', 'commitment'],
      )
      const month = await call('GET', `/v1/quotes?nodes=2&gpuModel=cpu&verifiedOnly=false&durationHours=720`)
      const autoMonth = month.body.quote.nodes.find((node: any) => node.deviceId === auto.deviceId)
      assert.equal(autoMonth.factors.at(-1).multiplier, '0.8000', '20% off for a month')
      assert.ok(Number(autoMonth.pricePerGpuHourUsd) < Number(autoNode.pricePerGpuHourUsd))
      const fixedMonth = month.body.quote.nodes.find((node: any) => node.deviceId !== auto.deviceId)
      assert.equal(
        fixedMonth.pricePerGpuHourUsd,
        '0.50',
        'a fixed price is the supplier’s, whatever the length',
      )
      assert.equal(
        Number(month.body.pricePerHourUsd),
        Number(autoMonth.pricePerHourUsd) + Number(fixedMonth.pricePerHourUsd),
      )

      const bad = await call('GET', `/v1/quotes?nodes=0`)
      assert.equal(bad.status, 400)
      assert.match(JSON.stringify(bad.body), /nodes/)
    })

    it('lets a supplier set their own device pricing, and no one else', async () => {
      const [, fixed] = workers as [SimulatedWorker, SimulatedWorker]
      const path = `/v1/devices/${fixed.deviceId}/pricing`
      const stranger = await call('PUT', path, otherSupplierKey, {
        mode: 'fixed',
        pricePerGpuHourUsd: '9.00',
      })
      assert.equal(stranger.status, 404)
      const bad = await call('PUT', path, supplierKey, { mode: 'fixed', pricePerGpuHourUsd: '-1' })
      assert.equal(bad.status, 400)
      const set = await call('PUT', path, supplierKey, { mode: 'auto', minimumPricePerGpuHourUsd: '0.20' })
      assert.equal(set.status, 200, JSON.stringify(set.body))
      assert.equal(set.body.pricingMode, 'auto')
      assert.equal(
        set.body.pricePerGpuHourUsd,
        '0.20',
        'the minimum is above the engine price: it is the floor',
      )
      assert.equal(set.body.factors.at(-1).factor, 'floor')
      await eventually(
        async () => (await offerOf(fixed.deviceId))?.pricePerGpuHourUsd === '0.20',
        'repriced offer',
      )
      // The worker reconnects without pricing flags: what the supplier set stays.
      await fixed.connect(baseUrl)
      const device = await store.getDevice(fixed.deviceId)
      assert.deepEqual([device?.pricingMode, device?.askingPriceMicroUsd], ['auto', 200_000n])
      const unlisted = await call('PUT', path, supplierKey, { mode: 'fixed', pricePerGpuHourUsd: null })
      assert.equal(unlisted.body.pricePerGpuHourUsd, null)
      await eventually(async () => (await offerOf(fixed.deviceId)) === undefined, 'unlisted')
    })
  })
}
