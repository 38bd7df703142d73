import { formatGmtUnits, type Clock } from '@gpumesh/core'
import { available, heldForOf, ledgerAccounts } from '@gpumesh/ledger'
import type { WalletView } from '@gpumesh/protocol'
import type { Store } from '@gpumesh/store'

/** Clusters looked at for holds: far more than an account runs at once. */
const maxClustersWithHolds = 500

/** An account's wallet as the API shows it; the ledger account is made on first sight. */
export async function walletView(store: Store, clock: Clock, accountId: string): Promise<WalletView> {
  const spec = ledgerAccounts.user(accountId)
  await store.ledger.createAccounts([spec], clock.nowMs())
  const [account] = await store.ledger.getAccounts([spec.id])
  return {
    accountId,
    balanceGmt: formatGmtUnits(account!.creditsPosted - account!.debitsPosted),
    availableGmt: formatGmtUnits(available(account!)),
    heldGmt: formatGmtUnits(account!.debitsPending),
    holds: account!.debitsPending > 0n ? await holdsOf(store, accountId, account!.debitsPending) : [],
  }
}

/**
 * What holds an account's funds. Each escrow account receives the holds of one cluster, or of one caller's
 * inference requests, so its pending credits are that hold. What is left of the held total is a withdrawal
 * in flight on chain: the only other hold a wallet has.
 */
async function holdsOf(store: Store, accountId: string, heldUnits: bigint): Promise<WalletView['holds']> {
  const clusters = (await store.listClusters(accountId, maxClustersWithHolds)).filter(
    (cluster) => cluster.billingHoldId !== null,
  )
  const escrows = [
    ledgerAccounts.inferenceEscrow(accountId).id,
    ...clusters.map((cluster) => ledgerAccounts.escrow(cluster.id).id),
  ]
  const named = (await store.ledger.getAccounts(escrows))
    .filter((escrow) => escrow.creditsPending > 0n)
    .map((escrow) => ({ heldFor: heldForOf(escrow.id, null)!, amount: escrow.creditsPending }))
  const rest = heldUnits - named.reduce((sum, hold) => sum + hold.amount, 0n)
  if (rest > 0n) named.push({ heldFor: { type: 'withdrawal', id: null }, amount: rest })
  return named
    .sort((a, b) => (a.amount === b.amount ? 0 : a.amount > b.amount ? -1 : 1))
    .map((hold) => ({ heldFor: hold.heldFor, amountGmt: formatGmtUnits(hold.amount) }))
}
