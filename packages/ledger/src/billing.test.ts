import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import {
  holdFor,
  intervalCharges,
  intervalCount,
  lastSettledInterval,
  servedMs,
  splitCharge,
  usdToGmtUnits,
  type BillingWindow,
  type ServicePeriod,
} from './billing.ts'

const minute = 60_000

describe('billing arithmetic', () => {
  it('converts micro-USD to GMT units at the configured rate, rounding down', () => {
    assert.equal(usdToGmtUnits(1_500_000n, 1_000_000n), 1_500_000n)
    assert.equal(usdToGmtUnits(1_500_000n, 2_500_000n), 3_750_000n)
    assert.equal(usdToGmtUnits(1n, 999_999n), 0n)
  })

  it('holds enough for the whole duration, rounding up', () => {
    assert.equal(holdFor(3_600_000n, 3_600_000), 3_600_000n)
    assert.equal(holdFor(1n, 1), 1n)
    assert.equal(holdFor(1_000_000n, 90 * minute), 1_500_000n)
  })

  it('splits a charge into fee (rounded down) and the supplier share', () => {
    assert.deepEqual(splitCharge(1_000n, 1_000), { fee: 100n, supplier: 900n })
    assert.deepEqual(splitCharge(9n, 1_000), { fee: 0n, supplier: 9n })
  })

  it('counts only the served time inside the window', () => {
    const periods: ServicePeriod[] = [
      { deviceId: 'a', startedAtMs: 0, endedAtMs: 10 },
      { deviceId: 'a', startedAtMs: 20, endedAtMs: null },
      { deviceId: 'b', startedAtMs: 0, endedAtMs: 100 },
    ]
    assert.equal(servedMs(periods, 'a', 5, 30), 5 + 10)
    assert.equal(servedMs(periods, 'a', 0, 1_000), 10 + 980)
    assert.equal(servedMs(periods, 'c', 0, 1_000), 0)
  })

  it('settles whole intervals, and the partial last one only after the end', () => {
    const running: BillingWindow = { readyAtMs: 1_000, intervalMs: minute, endMs: Number.POSITIVE_INFINITY }
    assert.equal(lastSettledInterval(running, 999), 0)
    assert.equal(lastSettledInterval(running, 1_000 + minute - 1), 0)
    assert.equal(lastSettledInterval(running, 1_000 + 3 * minute), 3)
    const ended: BillingWindow = { ...running, endMs: 1_000 + 2.5 * minute }
    assert.equal(intervalCount(ended), 3)
    assert.equal(lastSettledInterval(ended, 1_000 + 2 * minute + 1), 2)
    assert.equal(lastSettledInterval(ended, 1_000 + 2.5 * minute), 3)
    assert.equal(lastSettledInterval(ended, 1_000 + 99 * minute), 3)
  })

  it('charges a node only for the minutes it served, at its own price', () => {
    // Ready at 0. Node a serves all 3 minutes at 60,000,000 units an hour (1,000,000 a minute); node b, at
    // twice that, serves minute 1, is down in minute 2 and is back for the second half of minute 3.
    const window: BillingWindow = { readyAtMs: 0, intervalMs: minute, endMs: 3 * minute }
    const nodes = [
      { deviceId: 'a', pricePerHourUnits: 60_000_000n },
      { deviceId: 'b', pricePerHourUnits: 120_000_000n },
    ]
    const periods: ServicePeriod[] = [
      { deviceId: 'a', startedAtMs: -5_000, endedAtMs: null },
      { deviceId: 'b', startedAtMs: 0, endedAtMs: minute },
      { deviceId: 'b', startedAtMs: 2.5 * minute, endedAtMs: 3.5 * minute },
    ]
    assert.deepEqual(intervalCharges(window, 1, nodes, periods), [
      { deviceId: 'a', amount: 1_000_000n },
      { deviceId: 'b', amount: 2_000_000n },
    ])
    assert.deepEqual(intervalCharges(window, 2, nodes, periods), [{ deviceId: 'a', amount: 1_000_000n }])
    assert.deepEqual(intervalCharges(window, 3, nodes, periods), [
      { deviceId: 'a', amount: 1_000_000n },
      { deviceId: 'b', amount: 1_000_000n },
    ])
  })

  it('over any slicing, a node pays exactly floor(price × served / 1 h), and never outside the window', () => {
    const period = fc
      .tuple(fc.integer({ min: -50_000, max: 500_000 }), fc.option(fc.nat(300_000), { nil: null }))
      .map(([start, length]) => ({ startedAtMs: start, endedAtMs: length === null ? null : start + length }))
    fc.assert(
      fc.property(
        fc.bigInt({ min: 0n, max: 10n ** 12n }),
        fc.integer({ min: 1, max: 120_000 }),
        fc.integer({ min: 1, max: 600_000 }),
        fc.array(period, { maxLength: 5 }),
        (price, intervalMs, endMs, raw) => {
          const periods = raw
            .sort((a, b) => a.startedAtMs - b.startedAtMs)
            // A node's periods never overlap: each starts after the previous one closed.
            .reduce<ServicePeriod[]>((kept, next) => {
              const last = kept.at(-1)
              if (last && (last.endedAtMs === null || next.startedAtMs < last.endedAtMs)) return kept
              return [...kept, { deviceId: 'n', ...next }]
            }, [])
          const window: BillingWindow = { readyAtMs: 0, intervalMs, endMs }
          const count = intervalCount(window)
          let total = 0n
          for (let interval = 1; interval <= count; interval += 1) {
            const charges = intervalCharges(
              window,
              interval,
              [{ deviceId: 'n', pricePerHourUnits: price }],
              periods,
            )
            for (const charge of charges) {
              assert.ok(charge.amount > 0n)
              total += charge.amount
            }
          }
          assert.equal(total, (price * BigInt(servedMs(periods, 'n', 0, endMs))) / 3_600_000n)
        },
      ),
    )
  })
})
