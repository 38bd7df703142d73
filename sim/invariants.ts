import { isActiveNode, isTerminalCluster } from '@gpumesh/clusters'
import { ledgerAccounts, type LedgerAccount } from '@gpumesh/ledger'
import type { ClusterRecord, Store } from '@gpumesh/store'

// What must hold after every step, read from the store (the source of truth), not from the controller's
// memory: the ledger verifies; no device is in two reservations; no hold outlives its cluster; each billing
// interval is charged at most once, and only once it is recorded billed; all money is accounted for.
// Clusters are re-read only when their billing moved or they ended, so a check stays cheap as runs grow.

export type KnownMoney = {
  readonly renterIds: readonly string[]
  readonly supplierIds: readonly string[]
  readonly clusterIds: readonly string[]
  /** Everything deposited into renters' wallets from outside. */
  readonly depositedUnits: bigint
}

/** What a step wrote that the checks read: a check reads only what a step may have changed. */
export type StepWrites = {
  /** Clusters, their nodes, reservations: the placement checks. */
  readonly placement: boolean
  /** Transfers, accounts, clusters' billing: the money checks. */
  readonly money: boolean
}

/** Store writes that can change what the checks read, by the checks they concern. */
const placementWrites = new Set([
  'createCluster',
  'updateCluster',
  'addClusterNode',
  'releaseClusterNode',
  'updateClusterNode',
  'releaseReservations',
  'reserveGang',
])
const moneyWrites = new Set([
  'createCluster',
  'updateCluster',
  'updateClusterBilling',
  'createTransfers',
  'createTransfersWith',
  'createAccounts',
])

/**
 * The store as the simulation's coordinators see it, noting each watched write (a proxy: the store's own
 * code runs unchanged).
 */
export function watchWrites(store: Store): { store: Store; takeWritten(): StepWrites } {
  let placement = true
  let money = true
  const watch = <T extends object>(target: T): T =>
    new Proxy(target, {
      get(object, key) {
        const value = (object as Record<string | symbol, unknown>)[key]
        if (key === 'ledger') return watch(value as object)
        if (typeof value !== 'function') return value
        // Hold expiry runs every tick and mostly finds nothing: only one that voided a hold counts.
        if (key === 'expirePending')
          return async (...args: unknown[]) => {
            const expired = await (value as (...args: unknown[]) => Promise<number>).apply(object, args)
            if (expired > 0) money = true
            return expired
          }
        if (typeof key === 'string' && (placementWrites.has(key) || moneyWrites.has(key)))
          return (...args: unknown[]) => {
            if (placementWrites.has(key)) placement = true
            if (moneyWrites.has(key)) money = true
            return (value as (...args: unknown[]) => unknown).apply(object, args)
          }
        return (value as (...args: unknown[]) => unknown).bind(object)
      },
    })
  return {
    store: watch(store),
    takeWritten() {
      const was = { placement, money }
      placement = false
      money = false
      return was
    },
  }
}

export class InvariantChecker {
  readonly #store: Store
  /** Per cluster, the billed intervals and state last checked: unchanged clusters are not re-read. */
  readonly #checked = new Map<string, string>()
  /** Ended clusters already checked after they ended: nothing about them changes any more. */
  readonly #settled = new Set<string>()

  constructor(store: Store) {
    this.#store = store
  }

  /**
   * The first broken invariant, described; undefined when all hold. `full` adds ledger verify, which reads
   * every transfer: the caller runs it every few steps and at the end (see docs/architecture.md, sim/).
   */
  async check(
    known: KnownMoney,
    { full, written }: { full: boolean; written: StepWrites },
  ): Promise<string | undefined> {
    const placement = full || written.placement
    const money = full || written.money
    if (!placement && !money) return undefined
    const active = await this.#store.listActiveClusters()
    return (
      (full ? await this.#ledgerVerifies() : undefined) ??
      (placement ? await this.#placement(active) : undefined) ??
      (money ? await this.#billing(active, known.clusterIds) : undefined) ??
      (money ? await this.#moneyConserved(known) : undefined)
    )
  }

  async #ledgerVerifies(): Promise<string | undefined> {
    const verification = await this.#store.ledger.verify()
    if (verification.ok) return undefined
    return `ledger does not verify: mismatched [${verification.mismatched.join(', ')}], overdrawn [${verification.overdrawn.join(', ')}], posted sum ${verification.postedSum}, pending sum ${verification.pendingSum}`
  }

  /** Active clusters every time; an ended one until it has been seen ended and settled once. */
  /** No device in two reservations, or reserved without being an active node, or a node without one. */
  async #placement(active: readonly ClusterRecord[]): Promise<string | undefined> {
    const reserved = await this.#store.listReservedDeviceIds()
    const reservedSet = new Set(reserved)
    if (reservedSet.size !== reserved.length) return `a device is reserved twice: [${reserved.join(', ')}]`
    const heldBy = new Map<string, string>()
    for (const cluster of active) {
      for (const node of await this.#store.listClusterNodes(cluster.id)) {
        if (!isActiveNode(node)) continue
        const other = heldBy.get(node.deviceId)
        if (other) return `device ${node.deviceId} is an active node of both ${other} and ${cluster.id}`
        heldBy.set(node.deviceId, cluster.id)
        if (!reservedSet.has(node.deviceId))
          return `device ${node.deviceId} is an active node of ${cluster.id} (${node.phase}) without a reservation`
      }
    }
    for (const deviceId of reservedSet)
      if (!heldBy.has(deviceId))
        return `device ${deviceId} is reserved but no active cluster has it as a node`
    return undefined
  }

  /** Each cluster's charges: active ones, and ended ones until they were seen settled. */
  async #billing(
    active: readonly ClusterRecord[],
    clusterIds: readonly string[],
  ): Promise<string | undefined> {
    const activeIds = new Set(active.map((cluster) => cluster.id))
    const ended: ClusterRecord[] = []
    for (const clusterId of clusterIds) {
      if (activeIds.has(clusterId) || this.#settled.has(clusterId)) continue
      const cluster = await this.#store.getCluster(clusterId)
      if (!cluster) return `cluster ${clusterId} was created but is not in the store`
      ended.push(cluster)
    }
    // Every escrow in one read: a charge changes its escrow's sums even when the cluster record is unchanged.
    const escrows = new Map(
      (
        await this.#store.ledger.getAccounts(
          [...active, ...ended].map((cluster) => ledgerAccounts.escrow(cluster.id).id),
        )
      ).map((account) => [account.id, account]),
    )
    for (const cluster of [...active, ...ended]) {
      const broken = await this.#billedOnce(cluster, escrows.get(ledgerAccounts.escrow(cluster.id).id))
      if (broken) return broken
      if (isTerminalCluster(cluster)) this.#settled.add(cluster.id)
    }
    return undefined
  }

  async #billedOnce(cluster: ClusterRecord, escrow: LedgerAccount | undefined): Promise<string | undefined> {
    const clusterId = cluster.id
    if (!escrow) return `cluster ${clusterId} has no escrow account`
    const escrowId = escrow.id
    const ended = isTerminalCluster(cluster)
    const mark = `${cluster.billedIntervals}|${cluster.state}|${cluster.billingHoldId}|${escrow.creditsPosted}|${escrow.debitsPosted}|${escrow.creditsPending}`
    if (this.#checked.get(clusterId) === mark) return undefined
    if (ended && cluster.billingHoldId !== null)
      return `cluster ${clusterId} is ${cluster.state} but still records hold ${cluster.billingHoldId}`
    if (ended && escrow.creditsPending !== 0n)
      return `cluster ${clusterId} is ${cluster.state} but ${escrow.creditsPending} units are still held for it`
    const seen = new Set<string>()
    for (const transfer of await this.#store.ledger.listTransfers(escrowId, 100_000)) {
      if (transfer.code !== 'usage') continue
      // What a charge is for comes first: a second charge for one interval is the worse bug, whatever its id.
      const what = transfer.reference ?? transfer.id
      if (seen.has(what)) return `cluster ${clusterId}: ${what} was charged twice`
      seen.add(what)
      const interval = Number(/^bill:[^:]+:(\d+)$/.exec(transfer.id)?.[1] ?? Number.NaN)
      if (!(interval >= 1 && interval <= cluster.billedIntervals))
        return `cluster ${clusterId}: charge ${transfer.id} is not one of its ${cluster.billedIntervals} billed intervals`
    }
    // Each charge is paid out to suppliers and the fee in the batch that makes it: the escrow keeps nothing.
    const kept = escrow.creditsPosted - escrow.debitsPosted
    if (kept !== 0n)
      return `cluster ${clusterId}'s escrow keeps ${kept} units after its charges were paid out`
    this.#checked.set(clusterId, mark)
    return undefined
  }

  async #moneyConserved(known: KnownMoney): Promise<string | undefined> {
    const ids = [
      ...known.renterIds.map((id) => ledgerAccounts.user(id).id),
      ...known.supplierIds.map((id) => ledgerAccounts.earnings(id).id),
      ...known.clusterIds.map((id) => ledgerAccounts.escrow(id).id),
      ledgerAccounts.fee().id,
      ledgerAccounts.settlement().id,
    ]
    let inside = 0n
    let settlement = 0n
    for (const account of await this.#store.ledger.getAccounts(ids)) {
      const balance = account.creditsPosted - account.debitsPosted
      if (account.id === ledgerAccounts.settlement().id) settlement = balance
      else inside += balance
    }
    if (inside !== known.depositedUnits || settlement !== -known.depositedUnits)
      return `money not conserved: ${known.depositedUnits} units deposited, ${inside} inside the network, settlement at ${settlement}`
    return undefined
  }
}
