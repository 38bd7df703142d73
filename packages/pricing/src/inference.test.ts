import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import {
  chargeForUsage,
  defaultInferencePricingPolicy,
  maxChargeFor,
  quoteTokenPrices,
  splitInferenceCharge,
  type ServingReplicaCost,
  type TokenPrices,
} from './inference.ts'
import { defaultPricingPolicy } from './policy.ts'

const policy = defaultInferencePricingPolicy
const demandPolicy = defaultPricingPolicy
/** 1 GMT = 1 USD: a micro-USD is a GMT unit. */
const parity = 1_000_000n

const rtx4090: ServingReplicaCost = {
  deviceId: 'dev-4090',
  minPricePerGpuHourMicroUsd: 300_000n,
  gpuCount: 1,
  outputTokensPerSecond: 60,
}
const h100Pair: ServingReplicaCost = {
  deviceId: 'dev-h100x2',
  minPricePerGpuHourMicroUsd: 2_000_000n,
  gpuCount: 2,
  outputTokensPerSecond: 1_500.5004,
}

const quote = (replicas: readonly ServingReplicaCost[], utilizationBp?: number, gmtUnitsPerUsd = parity) =>
  quoteTokenPrices(policy, replicas, utilizationBp, demandPolicy, gmtUnitsPerUsd)

/** One replica's cost per million output tokens: the first step of a quote of it alone. */
const replicaCost = (replica: ServingReplicaCost) => quote([replica])!.factors[0]!.perMillionOutputMicroUsd

describe('inference token prices', () => {
  it('prices a model at its costliest replica, explained step by step, each step rounded up', () => {
    const prices = quote([h100Pair, rtx4090], 9_000, 1_234_567n)
    assert.ok(prices)
    // rtx4090: 0.30 USD/h, 60 tok/s = 60,000 milli-tokens/s, busy 50%:
    //   ceil(300,000 × 1 × 1e6 × 10,000 × 1,000 / (3,600 × 60,000 × 5,000)) = ceil(3e18 / 1.08e12)
    //   = ceil(2,777,777.7…) = 2,777,778 micro-USD per million output tokens.
    // h100Pair: 2 × 2.00 USD/h, 1,500.5004 tok/s floors to 1,500,500 milli-tokens/s:
    //   ceil(2,000,000 × 2 × 1e13 / (3,600 × 1,500,500 × 5,000)) = ceil(4e19 / 2.7009e13) = 1,480,988: cheaper.
    // Demand: 90% hired vs a 70% target: 1 + 0.2 × 0.5 = ×1.10; ceil(2,777,778 × 1.1) = ceil(3,055,555.8) = 3,055,556.
    assert.deepEqual(
      prices.factors.map((factor) => [factor.name, factor.multiplierBp, factor.perMillionOutputMicroUsd]),
      [
        ['replica', undefined, 2_777_778n],
        ['demand', 11_000, 3_055_556n],
      ],
    )
    assert.match(prices.factors[0]!.detail, /^dev-4090, the costliest of 2 replicas: 0\.30 USD per GPU-hour/)
    assert.match(prices.factors[0]!.detail, /60 output tokens\/s, busy 50%/)
    // Output: ceil(3,055,556 × 1,234,567 / 1e6) = ceil(3,772,288.604252) = 3,772,289 units.
    // Input: ceil(3,772,289 × 2,500 / 10,000) = ceil(943,072.25) = 943,073 units.
    assert.equal(prices.outputPerMillionUnits, 3_772_289n)
    assert.equal(prices.inputPerMillionUnits, 943_073n)
    assert.equal(prices.policyVersion, 'inference-2026-12')
    assert.equal(replicaCost(h100Pair), 1_480_988n)
    // 1,000 prompt + 250 output tokens: ceil((1,000 × 943,073 + 250 × 3,772,289) / 1e6)
    //   = ceil(1,886,145,250 / 1e6) = ceil(1,886.14525) = 1,887 units, once for the request.
    assert.equal(chargeForUsage(prices, { promptTokens: 1_000, completionTokens: 250 }), 1_887n)
  })

  it('prices nothing without a replica', () => {
    assert.equal(quote([]), undefined)
  })

  it('never prices below the policy minimum, and treats a CPU-only node as one GPU', () => {
    // One H100 at 2.00 USD/h making 100,000 tok/s: ceil(2e6 × 1e13 / (3,600 × 1e8 × 5,000)) = ceil(11,111.1…)
    // = 11,112 micro-USD, under the 100,000 (0.10 USD) minimum.
    const fast = { ...rtx4090, minPricePerGpuHourMicroUsd: 2_000_000n, outputTokensPerSecond: 100_000 }
    const prices = quote([fast])
    assert.ok(prices)
    assert.deepEqual(
      prices.factors.map((factor) => [factor.name, factor.perMillionOutputMicroUsd]),
      [
        ['replica', 11_112n],
        ['minimum', 100_000n],
        ['demand', 100_000n],
      ],
    )
    // At parity: 100,000 units out; input ceil(100,000 × 0.25) = 25,000.
    assert.equal(prices.outputPerMillionUnits, 100_000n)
    assert.equal(prices.inputPerMillionUnits, 25_000n)
    assert.equal(replicaCost({ ...fast, gpuCount: 0 }), replicaCost({ ...fast, gpuCount: 1 }))
  })

  it('lets low demand discount the price, but never below the costliest supplier minimum', () => {
    const prices = quote([rtx4090], 0)
    assert.ok(prices)
    // 0% hired: clamped at ×0.85; ceil(2,777,778 × 0.85) = ceil(2,361,111.3) = 2,361,112, back up to 2,777,778.
    assert.deepEqual(
      prices.factors.map((factor) => [factor.name, factor.multiplierBp, factor.perMillionOutputMicroUsd]),
      [
        ['replica', undefined, 2_777_778n],
        ['demand', 8_500, 2_361_112n],
        ['floor', undefined, 2_777_778n],
      ],
    )
    assert.equal(prices.outputPerMillionUnits, 2_777_778n)
  })

  it('rounds a tiny price up: an output price above zero makes input cost at least a unit', () => {
    const free = { ...rtx4090, minPricePerGpuHourMicroUsd: 0n }
    const cheapPolicy = { ...policy, minOutputPerMillionMicroUsd: 1n }
    // A free replica and a 1 micro-USD minimum, at 2 GMT units per USD: output ceil(1 × 2 / 1e6) = 1 unit;
    // input ceil(1 × 0.25) = 1 unit.
    const tiny = quoteTokenPrices(cheapPolicy, [free], undefined, demandPolicy, 2n)
    assert.equal(tiny?.outputPerMillionUnits, 1n)
    assert.equal(tiny?.inputPerMillionUnits, 1n)
    const prompting = quoteTokenPrices({ ...cheapPolicy, inputShareBp: 0 }, [free], 7_000, demandPolicy, 2n)
    assert.equal(prompting?.inputPerMillionUnits, 1n, 'at least one unit while output costs anything')
    const nothing = quoteTokenPrices(
      { ...policy, minOutputPerMillionMicroUsd: 0n },
      [free],
      7_000,
      demandPolicy,
      2n,
    )
    assert.equal(nothing?.outputPerMillionUnits, 0n)
    assert.equal(nothing?.inputPerMillionUnits, 0n)
  })

  it('charges once per request, rounded up, and bounds it before the model runs', () => {
    const prices = { inputPerMillionUnits: 250_000n, outputPerMillionUnits: 1_000_000n }
    assert.equal(chargeForUsage(prices, { promptTokens: 0, completionTokens: 0 }), 0n)
    // One prompt token: ceil(250,000 / 1e6) = 1 unit.
    assert.equal(chargeForUsage(prices, { promptTokens: 1, completionTokens: 0 }), 1n)
    // 4 prompt tokens: exactly 1 unit; 5: ceil(1.25) = 2.
    assert.equal(chargeForUsage(prices, { promptTokens: 4, completionTokens: 0 }), 1n)
    assert.equal(chargeForUsage(prices, { promptTokens: 5, completionTokens: 0 }), 2n)
    // A 8,192-token context and 1,024 output tokens: 8,192 × 0.25 + 1,024 × 1 = 3,072 units.
    assert.equal(maxChargeFor(prices, 8_192, 1_024), 3_072n)
  })

  it('splits a charge: the fee rounded down, the supplier the rest', () => {
    // 1,887 × 5% = 94.35: 94 to the platform, 1,793 to the supplier.
    assert.deepEqual(splitInferenceCharge(1_887n, 500), { fee: 94n, supplier: 1_793n })
    assert.deepEqual(splitInferenceCharge(0n, 500), { fee: 0n, supplier: 0n })
    assert.deepEqual(splitInferenceCharge(10n, 10_000), { fee: 10n, supplier: 0n })
  })

  it('refuses inputs that would price garbage, naming the field', () => {
    const prices = { inputPerMillionUnits: 1n, outputPerMillionUnits: 1n }
    assert.throws(() => chargeForUsage(prices, { promptTokens: -1, completionTokens: 0 }), {
      name: 'RangeError',
      message: /promptTokens/,
    })
    assert.throws(() => chargeForUsage(prices, { promptTokens: 0, completionTokens: 1.5 }), {
      name: 'RangeError',
      message: /completionTokens/,
    })
    assert.throws(() => chargeForUsage(prices, { promptTokens: Number.NaN, completionTokens: 0 }), RangeError)
    assert.throws(() => maxChargeFor(prices, 4_096.5, 1), { name: 'RangeError', message: /contextTokens/ })
    assert.throws(() => maxChargeFor(prices, 1, -3), { name: 'RangeError', message: /maxOutputTokens/ })
    assert.throws(
      () =>
        chargeForUsage({ ...prices, outputPerMillionUnits: -1n }, { promptTokens: 1, completionTokens: 1 }),
      {
        name: 'RangeError',
        message: /outputPerMillionUnits/,
      },
    )
    for (const [bad, field] of [
      [{ outputTokensPerSecond: Number.NaN }, 'outputTokensPerSecond'],
      [{ outputTokensPerSecond: Number.POSITIVE_INFINITY }, 'outputTokensPerSecond'],
      [{ outputTokensPerSecond: -1 }, 'outputTokensPerSecond'],
      [{ gpuCount: 1.5 }, 'gpuCount'],
      [{ gpuCount: -1 }, 'gpuCount'],
      [{ minPricePerGpuHourMicroUsd: -1n }, 'minPricePerGpuHourMicroUsd'],
    ] as const)
      assert.throws(() => quote([rtx4090, { ...rtx4090, deviceId: 'dev-bad', ...bad }]), {
        name: 'RangeError',
        message: new RegExp(`dev-bad: ${field}`),
      })
    assert.throws(() => quote([rtx4090], Number.NaN), { name: 'RangeError', message: /utilizationBp/ })
    assert.throws(() => quote([rtx4090], 7_000, 0n), { name: 'RangeError', message: /gmtUnitsPerUsd/ })
    assert.throws(
      () => quoteTokenPrices({ ...policy, targetBusyBp: 0 }, [rtx4090], 7_000, demandPolicy, parity),
      {
        name: 'RangeError',
        message: /targetBusyBp/,
      },
    )
    assert.throws(
      () => quoteTokenPrices({ ...policy, inputShareBp: 2_500.5 }, [rtx4090], 7_000, demandPolicy, parity),
      { name: 'RangeError', message: /inputShareBp/ },
    )
    assert.throws(() => splitInferenceCharge(-1n, 500), { name: 'RangeError', message: /charge/ })
    assert.throws(() => splitInferenceCharge(1n, 10_001), { name: 'RangeError', message: /feeBasisPoints/ })
    // A replica slower than a milli-token a second is priced as one milli-token a second, not divided by zero.
    assert.equal(
      replicaCost({ ...rtx4090, outputTokensPerSecond: 0 }),
      replicaCost({ ...rtx4090, outputTokensPerSecond: 0.001 }),
    )
  })

  const replica = fc.record({
    deviceId: fc.constantFrom('dev-a', 'dev-b', 'dev-c'),
    minPricePerGpuHourMicroUsd: fc.bigInt({ min: 0n, max: 20_000_000n }),
    gpuCount: fc.integer({ min: 0, max: 8 }),
    outputTokensPerSecond: fc.double({ min: 0, max: 100_000, noNaN: true }),
  })
  const replicas = fc.array(replica, { minLength: 1, maxLength: 6 })
  const utilization = fc.option(fc.integer({ min: 0, max: 10_000 }), { nil: undefined })
  const rate = fc.bigInt({ min: 1n, max: 100_000_000n })
  const output = (prices: TokenPrices | undefined) => prices!.outputPerMillionUnits

  it('holds its promises over any replicas and market', () => {
    fc.assert(
      fc.property(
        replicas,
        utilization,
        rate,
        fc.nat(),
        fc.bigInt({ min: 0n, max: 5_000_000n }),
        fc.double({ min: 1, max: 10, noNaN: true }),
        (replicas, utilizationBp, gmtUnitsPerUsd, pick, raise, speedup) => {
          const at = (list: readonly ServingReplicaCost[], bp = utilizationBp) =>
            quote(list, bp, gmtUnitsPerUsd)
          const base = at(replicas)
          assert.ok(base)
          assert.deepEqual(at(replicas), base, 'deterministic')
          const reversed = at([...replicas].reverse())!
          assert.equal(
            reversed.outputPerMillionUnits,
            base.outputPerMillionUnits,
            'replica order does not matter',
          )
          assert.equal(reversed.inputPerMillionUnits, base.inputPerMillionUnits)

          const finalMicroUsd = base.factors.at(-1)!.perMillionOutputMicroUsd
          for (const each of replicas)
            assert.ok(finalMicroUsd >= replicaCost(each), 'every supplier minimum is met')
          assert.ok(finalMicroUsd >= policy.minOutputPerMillionMicroUsd)
          assert.ok(base.outputPerMillionUnits * 1_000_000n >= finalMicroUsd * gmtUnitsPerUsd, 'converted up')
          assert.ok(base.inputPerMillionUnits <= base.outputPerMillionUnits, 'prefill is cheaper')
          assert.ok(base.inputPerMillionUnits >= 1n)

          const index = pick % replicas.length
          const changed = (change: Partial<ServingReplicaCost>) =>
            replicas.map((each, i) => (i === index ? { ...each, ...change } : each))
          const target = replicas[index]!
          assert.ok(
            output(at(changed({ minPricePerGpuHourMicroUsd: target.minPricePerGpuHourMicroUsd + raise }))) >=
              base.outputPerMillionUnits,
            'a higher floor never lowers the price',
          )
          assert.ok(
            output(at(changed({ outputTokensPerSecond: target.outputTokensPerSecond * speedup }))) <=
              base.outputPerMillionUnits,
            'a faster replica never raises it',
          )
          assert.ok(
            output(at([...replicas, target])) === base.outputPerMillionUnits,
            'a twin changes nothing',
          )
        },
      ),
    )
  })

  it('never lowers the price as utilization rises', () => {
    fc.assert(
      fc.property(
        replicas,
        fc.integer({ min: 0, max: 10_000 }),
        fc.integer({ min: 0, max: 10_000 }),
        rate,
        (replicas, a, b, gmtUnitsPerUsd) => {
          const [low, high] = a <= b ? [a, b] : [b, a]
          const at = (bp: number) => quote(replicas, bp, gmtUnitsPerUsd)!
          assert.ok(at(high).outputPerMillionUnits >= at(low).outputPerMillionUnits)
          assert.ok(at(high).inputPerMillionUnits >= at(low).inputPerMillionUnits)
        },
      ),
    )
  })

  const prices = fc
    .record({
      outputPerMillionUnits: fc.bigInt({ min: 0n, max: 100_000_000n }),
      shareBp: fc.integer({ min: 0, max: 10_000 }),
    })
    .map(({ outputPerMillionUnits, shareBp }) => ({
      outputPerMillionUnits,
      inputPerMillionUnits: (outputPerMillionUnits * BigInt(shareBp)) / 10_000n,
    }))
  const usage = fc.record({
    promptTokens: fc.integer({ min: 0, max: 2_000_000 }),
    completionTokens: fc.integer({ min: 0, max: 200_000 }),
  })

  it('charges exactly: splitting a request never saves more than a unit, nor costs less', () => {
    fc.assert(
      fc.property(prices, usage, usage, (prices, a, b) => {
        const whole = chargeForUsage(prices, {
          promptTokens: a.promptTokens + b.promptTokens,
          completionTokens: a.completionTokens + b.completionTokens,
        })
        const parts = chargeForUsage(prices, a) + chargeForUsage(prices, b)
        assert.ok(parts >= whole, 'rounded once per request: two requests never cost less than one')
        assert.ok(parts <= whole + 1n, 'and never more than a unit more')
      }),
    )
  })

  it('never charges more than it held, and splits a charge back exactly', () => {
    fc.assert(
      fc.property(
        prices,
        usage,
        fc.integer({ min: 0, max: 2_000_000 }),
        fc.integer({ min: 0, max: 200_000 }),
        fc.integer({ min: 0, max: 10_000 }),
        (prices, used, extraContext, extraOutput, feeBp) => {
          const held = maxChargeFor(
            prices,
            used.promptTokens + extraContext,
            used.completionTokens + extraOutput,
          )
          const charge = chargeForUsage(prices, used)
          assert.ok(charge <= held)
          const { fee, supplier } = splitInferenceCharge(charge, feeBp)
          assert.equal(fee + supplier, charge)
          assert.ok(fee >= 0n && supplier >= 0n)
          assert.ok(fee * 10_000n <= charge * BigInt(feeBp), 'the fee is rounded down')
        },
      ),
    )
  })
})
