import { sha256 } from '@noble/hashes/sha2.js'

// Each cluster's private network: a /24 out of 100.64.0.0/10 (shared address space, never routed on the
// internet), one address per node. Interface and namespace names are derived from ids, unique per
// machine, and short enough for Linux (15 characters).

export const overlayPrefixLength = 24
/** 100.64.0.0/10 holds 2^14 /24 subnets. */
export const maxClusterSubnets = 1 << 14
/** .0 is the network and .255 broadcast; .1 to .254 are nodes. */
export const maxNodesPerSubnet = 254

export function clusterSubnet(subnetIndex: number): string {
  if (!Number.isInteger(subnetIndex) || subnetIndex < 0 || subnetIndex >= maxClusterSubnets) {
    throw new RangeError(`subnet index ${subnetIndex} is outside 0..${maxClusterSubnets - 1}`)
  }
  return `100.${64 + (subnetIndex >> 8)}.${subnetIndex & 255}.0/${overlayPrefixLength}`
}

/** The overlay address of a node (0-based) in a cluster subnet, without prefix length. */
export function nodeAddress(subnet: string, nodeIndex: number): string {
  if (!Number.isInteger(nodeIndex) || nodeIndex < 0 || nodeIndex >= maxNodesPerSubnet) {
    throw new RangeError(`node index ${nodeIndex} is outside 0..${maxNodesPerSubnet - 1}`)
  }
  const [a, b, c] = subnet.split('/')[0]!.split('.')
  return `${a}.${b}.${c}.${nodeIndex + 1}`
}

function shortHash(text: string, length: number): string {
  const digest = sha256(new TextEncoder().encode(text))
  let value = 0n
  for (const byte of digest.slice(0, 8)) value = (value << 8n) | BigInt(byte)
  return value.toString(36).padStart(length, '0').slice(-length)
}

/** wireguard-go's control socket is named after the interface in one directory shared by all namespaces. */
export function meshInterfaceName(clusterId: string, deviceId: string): string {
  return `gmw${shortHash(`${clusterId}/${deviceId}`, 11)}`
}

/** The network namespace a cluster's node runs in on a supplier machine. */
export function clusterNamespaceName(clusterId: string, deviceId: string): string {
  return `gmc-${shortHash(`${clusterId}/${deviceId}`, 11)}`
}

export type MeshPeer = {
  readonly publicKey: string
  /**
   * host:port where the peer's WireGuard listens (its machine's address). Absent for a renter's client, which
   * is behind NAT and reaches the nodes itself; WireGuard learns its address from its first handshake.
   */
  readonly endpoint?: string
  readonly overlayAddress: string
}

/** What one node's interface needs: its own address and every other member as a peer. */
export type MeshPlan = {
  readonly interfaceName: string
  readonly namespace: string
  readonly overlayAddress: string
  readonly prefixLength: number
  readonly listenPort: number
  readonly peers: readonly MeshPeer[]
}

export type MeshMember = { readonly deviceId: string; readonly publicKey: string; readonly endpoint: string }

/** Every member's plan for a cluster: addresses by position in `members`, each peering with all others. */
export function planMesh(
  clusterId: string,
  subnetIndex: number,
  members: readonly MeshMember[],
  listenPort: number,
): Map<string, MeshPlan> {
  if (members.length > maxNodesPerSubnet)
    throw new RangeError(`a cluster has at most ${maxNodesPerSubnet} nodes`)
  const subnet = clusterSubnet(subnetIndex)
  const addresses = members.map((_, index) => nodeAddress(subnet, index))
  const plans = new Map<string, MeshPlan>()
  members.forEach((member, index) => {
    plans.set(member.deviceId, {
      interfaceName: meshInterfaceName(clusterId, member.deviceId),
      namespace: clusterNamespaceName(clusterId, member.deviceId),
      overlayAddress: addresses[index]!,
      prefixLength: overlayPrefixLength,
      listenPort,
      peers: members
        .map((peer, peerIndex) => ({
          publicKey: peer.publicKey,
          endpoint: peer.endpoint,
          overlayAddress: addresses[peerIndex]!,
        }))
        .filter((_, peerIndex) => peerIndex !== index),
    })
  })
  return plans
}
