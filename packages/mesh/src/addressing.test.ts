import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import {
  clusterNamespaceName,
  clusterSubnet,
  maxClusterSubnets,
  meshInterfaceName,
  nodeAddress,
  planMesh,
} from './addressing.ts'

describe('overlay addressing', () => {
  it('gives every cluster its own /24 inside 100.64.0.0/10', () => {
    assert.equal(clusterSubnet(0), '100.64.0.0/24')
    assert.equal(clusterSubnet(257), '100.65.1.0/24')
    assert.equal(clusterSubnet(maxClusterSubnets - 1), '100.127.255.0/24')
    assert.throws(() => clusterSubnet(maxClusterSubnets))
    assert.equal(nodeAddress('100.65.1.0/24', 0), '100.65.1.1')
    assert.equal(nodeAddress('100.65.1.0/24', 253), '100.65.1.254')
    assert.throws(() => nodeAddress('100.65.1.0/24', 254))
  })

  it('names interfaces and namespaces within Linux limits, distinct per cluster and device', () => {
    fc.assert(
      fc.property(
        fc.string({ minLength: 1, maxLength: 30 }),
        fc.string({ minLength: 1, maxLength: 30 }),
        (cluster, device) => {
          const name = meshInterfaceName(cluster, device)
          assert.ok(name.length <= 15 && /^[a-z0-9]+$/.test(name))
          assert.ok(clusterNamespaceName(cluster, device).length <= 15)
        },
      ),
    )
    assert.notEqual(meshInterfaceName('cls_a', 'dev_1'), meshInterfaceName('cls_b', 'dev_1'))
    assert.notEqual(meshInterfaceName('cls_a', 'dev_1'), meshInterfaceName('cls_a', 'dev_2'))
  })

  it('peers every member with all the others, never itself', () => {
    const members = ['a', 'b', 'c'].map((id, index) => ({
      deviceId: id,
      publicKey: `key-${id}`,
      endpoint: `10.0.0.${index + 1}:51820`,
    }))
    const plans = planMesh('cls_1', 3, members, 51820)
    assert.equal(plans.get('a')!.overlayAddress, '100.64.3.1')
    assert.deepEqual(
      plans.get('b')!.peers.map((peer) => [peer.publicKey, peer.overlayAddress]),
      [
        ['key-a', '100.64.3.1'],
        ['key-c', '100.64.3.3'],
      ],
    )
  })
})
