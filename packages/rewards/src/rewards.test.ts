import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import {
  computeEpochPayouts,
  coveredMs,
  defaultRewardPolicy,
  epochEmissionUnits,
  formatShare,
  monthlyEmissionUnits,
  type EpochDeviceRecord,
  type RewardPolicy,
} from './index.ts'

const policy: RewardPolicy = { ...defaultRewardPolicy, genesisMs: 0 }
const epoch = 10
const start = epoch * policy.epochLengthMs
const end = start + policy.epochLengthMs
const hour = policy.epochLengthMs

function device(overrides: Partial<EpochDeviceRecord> = {}): EpochDeviceRecord {
  return {
    deviceId: 'dev_a',
    accountId: 'acc_a',
    blocked: false,
    lastPassedVerificationAtMs: start - 60_000,
    failedSpotCheck: null,
    onlineIntervals: [[start - hour, end + hour]],
    hiredIntervals: [],
    bandwidthTier: 'medium',
    gpuModelKeys: ['h100'],
    ...overrides,
  }
}

const modelKeys = [...Object.keys(policy.gpuModelMilli), 'unknown-gpu']
const arbInterval = fc
  .tuple(fc.integer({ min: start - hour, max: end + hour }), fc.integer({ min: 0, max: 2 * hour }))
  .map(([from, length]): [number, number] => [from, from + length])
const arbRecord = (index: number) =>
  fc.record({
    deviceId: fc.constant(`dev_${index}`),
    accountId: fc.constantFrom('acc_1', 'acc_2', 'acc_3'),
    blocked: fc.boolean(),
    lastPassedVerificationAtMs: fc.option(fc.integer({ min: start - 2 * 86_400_000, max: end + hour })),
    failedSpotCheck: fc.option(fc.record({ atMs: fc.constant(end), reason: fc.constant('wrong product') }), {
      freq: 8,
    }),
    onlineIntervals: fc.array(arbInterval, { maxLength: 4 }),
    hiredIntervals: fc.array(arbInterval, { maxLength: 3 }),
    bandwidthTier: fc.constantFrom('low' as const, 'medium' as const, 'high' as const, null),
    gpuModelKeys: fc.array(fc.constantFrom(...modelKeys), { maxLength: 8 }),
  })
const arbRecords = fc
  .integer({ min: 0, max: 12 })
  .chain((count) => fc.tuple(...Array.from({ length: count }, (_, index) => arbRecord(index))))
const arbEmission = fc.bigInt({ min: 0n, max: 10n ** 15n })

describe('epoch payouts', () => {
  it('never pay out more than the epoch emission, in total or per pool', () => {
    fc.assert(
      fc.property(arbRecords, arbEmission, (records, emission) => {
        const result = computeEpochPayouts(policy, epoch, emission, records)
        const total = result.payouts.reduce((sum, payout) => sum + payout.amountUnits, 0n)
        assert.equal(total, result.paidUnits)
        assert.ok(total <= emission, `${total} > ${emission}`)
        for (const pool of result.pools) {
          const paid = result.payouts
            .filter((p) => p.pool === pool.pool)
            .reduce((s, p) => s + p.amountUnits, 0n)
          assert.equal(paid, pool.paidUnits)
          assert.ok(paid <= pool.emissionUnits)
        }
        assert.equal(
          result.pools.reduce((sum, pool) => sum + pool.emissionUnits, 0n),
          emission,
          'the pools share the whole emission',
        )
      }),
    )
  })

  it('pay nothing to an ineligible device, and a reason to each one', () => {
    fc.assert(
      fc.property(arbRecords, arbEmission, (records, emission) => {
        const result = computeEpochPayouts(policy, epoch, emission, records)
        for (const payout of result.payouts) {
          if (!payout.eligible) {
            assert.equal(payout.amountUnits, 0n)
            assert.equal(payout.score, 0n)
            assert.ok(payout.ineligibleReasonCode && payout.ineligibleReason)
          }
          const record = records.find((r) => r.deviceId === payout.deviceId)!
          if (record.blocked || record.failedSpotCheck || record.lastPassedVerificationAtMs === null) {
            assert.equal(payout.eligible, false)
          }
        }
      }),
    )
  })

  it('never pay a device less when it doubles its hired hours, all else equal', () => {
    const arbHired = fc
      .tuple(fc.integer({ min: 0, max: hour / 2 }), fc.integer({ min: 0, max: hour / 2 }))
      .map(([offset, length]): [number, number] => [start + offset, start + offset + length])
    fc.assert(
      fc.property(arbRecords, arbHired, arbEmission, (others, [from, to], emission) => {
        const before = device({ deviceId: 'dev_me', hiredIntervals: [[from, to]] })
        const after = device({ deviceId: 'dev_me', hiredIntervals: [[from, to + (to - from)]] })
        const paidBefore = computeEpochPayouts(policy, epoch, emission, [...others, before]).payouts.at(-1)!
        const paidAfter = computeEpochPayouts(policy, epoch, emission, [...others, after]).payouts.at(-1)!
        assert.ok(
          paidAfter.amountUnits >= paidBefore.amountUnits,
          `${paidAfter.amountUnits} < ${paidBefore.amountUnits}`,
        )
      }),
    )
  })

  it('give the same result for the same inputs', () => {
    fc.assert(
      fc.property(arbRecords, arbEmission, (records, emission) => {
        assert.deepEqual(
          computeEpochPayouts(policy, epoch, emission, records),
          computeEpochPayouts(policy, epoch, emission, records),
        )
      }),
    )
  })

  it('compute a payout that can be checked by hand', () => {
    // Two H100 devices, both online all epoch: one hired half the epoch on a high tier, one idle on medium.
    const hired = device({
      deviceId: 'dev_hired',
      bandwidthTier: 'high',
      hiredIntervals: [[start, start + hour / 2]],
    })
    const idle = device({ deviceId: 'dev_idle' })
    const emission = 1_000_000_000n
    const result = computeEpochPayouts(policy, epoch, emission, [hired, idle])
    const [a, b] = result.payouts
    // hardware 2000 × bandwidth 1200 × hired (1000 + 1000 × 0.5) × uptime 1e6
    assert.equal(a!.score, 2_000n * 1_200n * 1_500n * 1_000_000n)
    assert.equal(b!.score, 2_000n * 1_000n * 1_000n * 1_000_000n)
    const gpuPool = (emission * 9_000n) / 10_000n
    assert.equal(a!.amountUnits, (gpuPool * a!.score) / (a!.score + b!.score))
    assert.equal(a!.amountUnits, 578_571_428n)
    assert.equal(b!.amountUnits, 321_428_571n)
    assert.equal(formatShare(a!.score, a!.score + b!.score), '0.642857142')
    assert.equal(result.pools[1]!.paidUnits, 0n, 'no CPU device: the CPU pool is not paid')
  })

  it('forgive a restart shorter than the grace window, but not a long outage', () => {
    const restart = device({
      onlineIntervals: [
        [start - hour, start + 20 * 60_000],
        [start + 23 * 60_000, end],
      ],
    })
    const outage = device({
      onlineIntervals: [
        [start - hour, start + 20 * 60_000],
        [start + 40 * 60_000, end],
      ],
    })
    const [afterRestart, afterOutage] = computeEpochPayouts(policy, epoch, 1_000_000n, [
      restart,
      outage,
    ]).payouts
    assert.equal(afterRestart!.eligible, true)
    assert.equal(afterRestart!.factors.uptimePpm, 950_000n, 'the uptime factor is what was measured')
    assert.equal(afterOutage!.eligible, false)
    assert.equal(afterOutage!.ineligibleReasonCode, 'offline')
  })

  it('refuse a device whose last pass is too old, one that failed a spot check, and an unsupported GPU', () => {
    const stale = device({ lastPassedVerificationAtMs: start - 2 * 86_400_000 })
    const spotted = device({ failedSpotCheck: { atMs: end, reason: 'product mismatch' } })
    const unknown = device({ gpuModelKeys: ['gtx-750'] })
    const codes = computeEpochPayouts(policy, epoch, 1_000_000n, [stale, spotted, unknown]).payouts.map(
      (payout) => payout.ineligibleReasonCode,
    )
    assert.deepEqual(codes, ['not_verified', 'failed_spot_check', 'unsupported_hardware'])
  })

  it('measure covered time as the union of overlapping intervals', () => {
    assert.equal(
      coveredMs(
        [
          [0, 10],
          [5, 20],
          [30, 40],
        ],
        0,
        35,
      ),
      25,
    )
  })
})

describe('emission schedule', () => {
  it('disinflates every month and never emits past the cap', () => {
    const small: RewardPolicy = {
      ...policy,
      epochLengthMs: 10 * 86_400_000,
      emission: { ...policy.emission, capUnits: 60_000_000n, firstMonthUnits: 9_000_000n },
    }
    let emitted = 0n
    let previousMonth = monthlyEmissionUnits(small, 0)
    for (let epochIndex = 0; epochIndex < 600; epochIndex += 1) {
      const units = epochEmissionUnits(small, epochIndex, emitted)
      assert.ok(units >= 0n)
      emitted += units
      assert.ok(emitted <= small.emission.capUnits)
    }
    assert.equal(emitted, small.emission.capUnits, 'over 16 years the cap is reached')
    for (let month = 1; month < 50; month += 1) {
      const units = monthlyEmissionUnits(small, month)
      assert.ok(units <= previousMonth)
      previousMonth = units
    }
  })

  it('emits an hour of the first month as the hour-long share of it', () => {
    const units = epochEmissionUnits(policy, 0, 0n)
    assert.equal(units, (policy.emission.firstMonthUnits * 3_600_000n) / BigInt(policy.emission.monthMs))
    assert.equal(epochEmissionUnits(policy, 0, policy.emission.capUnits - 5n), 5n)
  })
})
