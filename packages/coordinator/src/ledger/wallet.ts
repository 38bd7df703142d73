import { formatGmtUnits, type Clock } from '@gpumesh/core'
import { available, ledgerAccounts } from '@gpumesh/ledger'
import type { Store } from '@gpumesh/store'

/** An account's wallet as the API shows it; the ledger account is made on first sight. */
export async function walletView(store: Store, clock: Clock, accountId: string) {
  const spec = ledgerAccounts.user(accountId)
  await store.ledger.createAccounts([spec], clock.nowMs())
  const [account] = await store.ledger.getAccounts([spec.id])
  return {
    accountId,
    balanceGmt: formatGmtUnits(account!.creditsPosted - account!.debitsPosted),
    availableGmt: formatGmtUnits(available(account!)),
    heldGmt: formatGmtUnits(account!.debitsPending),
  }
}
