import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import {
  faucetClaimTransferId,
  FaucetLimitedError,
  FaucetSourceCounter,
  KeyedSerializer,
  secondsUntilNextPeriod,
  withdrawableUnits,
} from './faucet.ts'

const dayMs = 86_400_000

describe('faucet limits', () => {
  it('names one claim transfer per account and period', () => {
    const first = faucetClaimTransferId('acc_a', 5 * dayMs, dayMs)
    assert.equal(faucetClaimTransferId('acc_a', 6 * dayMs - 1, dayMs), first, 'same period')
    assert.notEqual(faucetClaimTransferId('acc_a', 6 * dayMs, dayMs), first, 'next period')
    assert.notEqual(faucetClaimTransferId('acc_b', 5 * dayMs, dayMs), first, 'other account')
  })

  it('says how long until the next period, at least a second', () => {
    assert.equal(secondsUntilNextPeriod(5 * dayMs, dayMs), 86_400)
    assert.equal(secondsUntilNextPeriod(6 * dayMs - 1_500, dayMs), 2)
    assert.equal(secondsUntilNextPeriod(6 * dayMs - 1, dayMs), 1)
  })

  it('gives a source its claims per period, refuses past them with Retry-After, and gives back released ones', () => {
    const counter = new FaucetSourceCounter({ periodMs: dayMs, claimsPerSourcePerPeriod: 2 })
    const nowMs = 10 * dayMs + 1_000
    counter.reserve('10.0.0.1', nowMs)
    counter.reserve('10.0.0.1', nowMs)
    assert.throws(
      () => counter.reserve('10.0.0.1', nowMs),
      (error: unknown) => error instanceof FaucetLimitedError && error.retryAfterSeconds === 86_399,
    )
    counter.reserve('10.0.0.2', nowMs)
    counter.release('10.0.0.1', nowMs)
    counter.reserve('10.0.0.1', nowMs)
    assert.throws(() => counter.reserve('10.0.0.1', nowMs), FaucetLimitedError)
    counter.reserve('10.0.0.1', 11 * dayMs)
  })

  it('does not count sources when the limit is 0, and forgets the oldest past its bound', () => {
    const unlimited = new FaucetSourceCounter({ periodMs: dayMs, claimsPerSourcePerPeriod: 0 })
    for (let index = 0; index < 10; index++) unlimited.reserve('10.0.0.1', 0)
    assert.equal(unlimited.size, 0)
    const bounded = new FaucetSourceCounter({ periodMs: dayMs, claimsPerSourcePerPeriod: 1 }, 2)
    for (const source of ['a', 'b', 'c']) bounded.reserve(source, 0)
    assert.equal(bounded.size, 2)
    bounded.reserve('a', 0)
    assert.throws(() => bounded.reserve('c', 0), FaucetLimitedError)
  })

  it('leaves faucet GMT out of what may be withdrawn', () => {
    assert.equal(withdrawableUnits(1_500n, 1_000n), 500n)
    assert.equal(withdrawableUnits(800n, 1_000n), 0n)
    assert.equal(withdrawableUnits(800n, 0n), 800n)
  })

  it('runs tasks for one key one at a time, in order, and others alongside', async () => {
    const serializer = new KeyedSerializer()
    const events: string[] = []
    const task = (name: string, ms: number) => () =>
      new Promise<string>((resolve) => {
        events.push(`${name} start`)
        setTimeout(() => {
          events.push(`${name} end`)
          resolve(name)
        }, ms)
      })
    const failing = serializer.run('a', () => Promise.reject(new Error('first fails')))
    const results = await Promise.all([
      serializer.run('a', task('a1', 20)),
      serializer.run('a', task('a2', 1)),
      serializer.run('b', task('b1', 1)),
      failing.catch((error: Error) => error.message),
    ])
    assert.deepEqual(results, ['a1', 'a2', 'b1', 'first fails'])
    assert.ok(events.indexOf('a1 end') < events.indexOf('a2 start'), events.join(', '))
    assert.ok(events.indexOf('b1 end') < events.indexOf('a1 end'), 'b does not wait for a')
  })
})
