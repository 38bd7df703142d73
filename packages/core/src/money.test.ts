import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { formatMicroUsd, parseUsdToMicro } from './money.ts'

describe('USD amounts', () => {
  it('parses exact decimals and refuses everything else', () => {
    assert.equal(parseUsdToMicro('1.25'), 1_250_000n)
    assert.equal(parseUsdToMicro('0.000001'), 1n)
    assert.equal(parseUsdToMicro('0'), 0n)
    for (const bad of ['', '-1', '1.', '.5', '1.0000001', '01', '1e3', 'NaN', '1,5', '10000000000']) {
      assert.equal(parseUsdToMicro(bad), null, bad)
    }
  })

  it('round-trips every amount exactly', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 999_999_999_999_999n }), (micro) => {
        assert.equal(parseUsdToMicro(formatMicroUsd(micro)), micro)
      }),
    )
  })
})
