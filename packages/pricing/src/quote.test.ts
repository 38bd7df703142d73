import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { defaultPricingPolicy, type PricingPolicy } from './policy.ts'
import {
  commitmentDiscountBp,
  demandMultiplierBp,
  isPeakHour,
  quoteDevice,
  type MarketConditions,
  type PricedDevice,
} from './quote.ts'

const policy = defaultPricingPolicy
const quietMarket: MarketConditions = { utilizationBp: () => 7_000, hourUtc: 3 }
const h100: PricedDevice = {
  gpuModel: 'h100',
  gpuCount: 8,
  cpuCores: 96,
  catalogFp32TflopsPerGpu: 67,
  measuredFp32Tflops: 8 * 67,
  bandwidthTier: 'medium',
  region: 'eu-west',
  pricing: { mode: 'auto', askingPriceMicroUsd: null },
}

describe('pricing engine', () => {
  it('quotes a fixed price as the supplier set it, and nothing without one', () => {
    const fixed = quoteDevice(
      policy,
      { ...h100, pricing: { mode: 'fixed', askingPriceMicroUsd: 2_100_000n } },
      quietMarket,
      1,
    )
    assert.equal(fixed.priced && fixed.pricePerGpuHourMicroUsd, 2_100_000n)
    assert.deepEqual(fixed.priced && fixed.factors.map((factor) => factor.factor), ['fixed'])
    const unset = quoteDevice(
      policy,
      { ...h100, pricing: { mode: 'fixed', askingPriceMicroUsd: null } },
      quietMarket,
      1,
    )
    assert.deepEqual(unset, {
      priced: false,
      mode: 'fixed',
      reason: 'the supplier has set no price',
      policyVersion: '2026-12',
    })
  })

  it('explains an automatic price factor by factor, each step rounded down', () => {
    const quote = quoteDevice(policy, h100, { utilizationBp: () => 9_000, hourUtc: 15 }, 200)
    assert.ok(quote.priced)
    // 2.99 × 60% = 1.794; measured at its data sheet ×1.0; medium tier ×1.0; eu-west ×1.0;
    // 90% hired vs a 70% target: 1 + 0.2 × 0.5 = ×1.10; 15:00 is a peak hour ×1.10; 200 h: 10% off.
    assert.deepEqual(
      quote.factors.map((factor) => [factor.factor, factor.multiplierBp, factor.priceAfterMicroUsd]),
      [
        ['reference', null, 2_990_000n],
        ['network_share', 6_000, 1_794_000n],
        ['performance', 10_000, 1_794_000n],
        ['bandwidth', 10_000, 1_794_000n],
        ['location', 10_000, 1_794_000n],
        ['demand', 11_000, 1_973_400n],
        ['peak_hours', 11_000, 2_170_740n],
        ['commitment', 9_000, 1_953_666n],
      ],
    )
    assert.equal(quote.pricePerGpuHourMicroUsd, 1_953_666n)
  })

  it('prices a slow or unmeasured card lower, never below its floor', () => {
    const slow = quoteDevice(policy, { ...h100, measuredFp32Tflops: 8 * 20 }, quietMarket, 1)
    const unmeasured = quoteDevice(policy, { ...h100, measuredFp32Tflops: null }, quietMarket, 1)
    const honest = quoteDevice(policy, h100, quietMarket, 1)
    assert.ok(slow.priced && unmeasured.priced && honest.priced)
    assert.equal(
      slow.factors.find((factor) => factor.factor === 'performance')?.multiplierBp,
      5_000,
      'clamped',
    )
    assert.ok(slow.pricePerGpuHourMicroUsd < unmeasured.pricePerGpuHourMicroUsd)
    assert.ok(unmeasured.pricePerGpuHourMicroUsd < honest.pricePerGpuHourMicroUsd)

    const withMinimum = quoteDevice(
      policy,
      { ...h100, measuredFp32Tflops: 8 * 20, pricing: { mode: 'auto', askingPriceMicroUsd: 1_500_000n } },
      quietMarket,
      1,
    )
    assert.ok(withMinimum.priced)
    assert.equal(withMinimum.pricePerGpuHourMicroUsd, 1_500_000n)
    assert.equal(withMinimum.factors.at(-1)?.factor, 'floor')
  })

  it('floors a card without a minimum at what it would earn mining', () => {
    const cheapPolicy: PricingPolicy = { ...policy, networkShareBp: 100 }
    const rtx = {
      ...h100,
      gpuModel: 'rtx-4090',
      gpuCount: 1,
      catalogFp32TflopsPerGpu: 82.6,
      measuredFp32Tflops: 80,
    }
    const quote = quoteDevice(cheapPolicy, rtx, quietMarket, 1)
    assert.ok(quote.priced)
    assert.equal(quote.pricePerGpuHourMicroUsd, 90_000n)
    assert.match(quote.factors.at(-1)!.detail, /mining/)
  })

  it('prices CPU nodes per core, and refuses an unknown model without a minimum', () => {
    const cpu = quoteDevice(
      policy,
      {
        ...h100,
        gpuModel: 'cpu',
        gpuCount: 0,
        cpuCores: 16,
        catalogFp32TflopsPerGpu: null,
        measuredFp32Tflops: null,
      },
      quietMarket,
      1,
    )
    assert.ok(cpu.priced)
    assert.equal(cpu.factors[0]!.priceAfterMicroUsd, 160_000n)
    assert.ok(!cpu.factors.some((factor) => factor.factor === 'performance'))
    const unknown = quoteDevice(policy, { ...h100, gpuModel: 'mystery-9000' }, quietMarket, 1)
    assert.equal(unknown.priced, false)
    const unknownWithMinimum = quoteDevice(
      policy,
      { ...h100, gpuModel: 'mystery-9000', pricing: { mode: 'auto', askingPriceMicroUsd: 700_000n } },
      quietMarket,
      1,
    )
    assert.equal(unknownWithMinimum.priced && unknownWithMinimum.pricePerGpuHourMicroUsd, 700_000n)
  })

  it('steps and clamps the demand factor, and knows peak hours across midnight', () => {
    assert.equal(demandMultiplierBp(policy, undefined), 10_000)
    assert.equal(demandMultiplierBp(policy, 7_000), 10_000)
    assert.equal(demandMultiplierBp(policy, 7_100), 10_000, 'a 0.5% move stays on its step')
    assert.equal(demandMultiplierBp(policy, 10_000), 11_500)
    assert.equal(demandMultiplierBp(policy, 0), 8_500, 'clamped at the minimum')
    assert.equal(commitmentDiscountBp(policy, 23.9), 0)
    assert.equal(commitmentDiscountBp(policy, 24), 500)
    assert.equal(commitmentDiscountBp(policy, 10_000), 2_000)
    const night = { ...policy, peak: { startHourUtc: 22, endHourUtc: 2, multiplierBp: 11_000 } }
    assert.deepEqual(
      [21, 22, 23, 0, 1, 2].map((hour) => isPeakHour(night, hour)),
      [false, true, true, true, true, false],
    )
  })

  it('holds its promises over any device and market', () => {
    const device = fc.record({
      gpuModel: fc.constantFrom('h100', 'a100-80gb', 'rtx-4090', 't4', 'cpu', 'unknown-gpu'),
      gpuCount: fc.integer({ min: 0, max: 8 }),
      cpuCores: fc.integer({ min: 1, max: 256 }),
      catalogFp32TflopsPerGpu: fc.option(fc.double({ min: 1, max: 100, noNaN: true }), { nil: null }),
      measuredFp32Tflops: fc.option(fc.double({ min: 0, max: 2_000, noNaN: true }), { nil: null }),
      bandwidthTier: fc.constantFrom('low' as const, 'medium' as const, 'high' as const, null),
      region: fc.constantFrom('eu-west', 'us-east'),
      pricing: fc.record({
        mode: fc.constantFrom('fixed' as const, 'auto' as const),
        askingPriceMicroUsd: fc.option(fc.bigInt({ min: 0n, max: 20_000_000n }), { nil: null }),
      }),
    })
    fc.assert(
      fc.property(
        device,
        fc.integer({ min: 0, max: 10_000 }),
        fc.integer({ min: 0, max: 10_000 }),
        fc.integer({ min: 0, max: 23 }),
        fc.double({ min: 0.01, max: 2_000, noNaN: true }),
        fc.double({ min: 0.01, max: 2_000, noNaN: true }),
        (device, lowBp, highBp, hourUtc, hoursA, hoursB) => {
          const [low, high] = lowBp <= highBp ? [lowBp, highBp] : [highBp, lowBp]
          const [short, long] = hoursA <= hoursB ? [hoursA, hoursB] : [hoursB, hoursA]
          const at = (utilizationBp: number, hours: number) =>
            quoteDevice(policy, device, { utilizationBp: () => utilizationBp, hourUtc }, hours)
          const base = at(low, short)
          assert.deepEqual(at(low, short), base, 'deterministic')
          if (!base.priced) return
          const price = (quote: ReturnType<typeof at>) => (quote.priced ? quote.pricePerGpuHourMicroUsd : -1n)
          assert.ok(price(at(high, short)) >= price(base), 'more demand never lowers the price')
          assert.ok(price(at(low, long)) <= price(base), 'a longer commitment never raises it')
          assert.equal(base.factors.at(-1)!.priceAfterMicroUsd, base.pricePerGpuHourMicroUsd)
          const minimum = device.pricing.askingPriceMicroUsd
          if (device.pricing.mode === 'auto' && minimum !== null)
            assert.ok(base.pricePerGpuHourMicroUsd >= minimum, 'never below the supplier minimum')
        },
      ),
    )
  })
})
