import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { bandwidthTierFor, bandwidthTierThresholdsMbps } from './bandwidth.ts'

describe('bandwidthTierFor', () => {
  it('gives each tier exactly at its minimums, and the tier below just under them', () => {
    assert.equal(bandwidthTierFor(100, 75), 'low')
    assert.equal(bandwidthTierFor(99.999, 75), null)
    assert.equal(bandwidthTierFor(100, 74.999), null)
    assert.equal(bandwidthTierFor(400, 300), 'medium')
    assert.equal(bandwidthTierFor(399.999, 300), 'low')
    assert.equal(bandwidthTierFor(400, 299.999), 'low')
    assert.equal(bandwidthTierFor(800, 300), 'high')
    assert.equal(bandwidthTierFor(799.999, 300), 'medium')
    assert.equal(bandwidthTierFor(800, 299.999), 'low')
  })

  it('needs both directions: the slower one decides', () => {
    assert.equal(bandwidthTierFor(10_000, 80), 'low')
    assert.equal(bandwidthTierFor(10_000, 50), null)
    assert.equal(bandwidthTierFor(150, 10_000), 'low')
    assert.equal(bandwidthTierFor(500, 10_000), 'medium')
  })

  it('gives no tier to zero, negative or broken measurements', () => {
    assert.equal(bandwidthTierFor(0, 0), null)
    assert.equal(bandwidthTierFor(-1, 1000), null)
    assert.equal(bandwidthTierFor(Number.NaN, 1000), null)
    assert.equal(bandwidthTierFor(1000, Number.NaN), null)
  })

  it('keeps the thresholds ordered, so a higher tier always implies the lower ones', () => {
    const { low, medium, high } = bandwidthTierThresholdsMbps
    assert.ok(low.downloadMbps < medium.downloadMbps && medium.downloadMbps < high.downloadMbps)
    assert.ok(low.uploadMbps <= medium.uploadMbps && medium.uploadMbps <= high.uploadMbps)
  })
})
