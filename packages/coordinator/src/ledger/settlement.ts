import type { TransferResult } from '@gpumesh/ledger'
import { ledgerAccounts } from '@gpumesh/ledger'
import type { Store } from '@gpumesh/store'

// Where GMT enters and leaves the ledger. The ledger only ever sees transfers to and from the settlement
// account; an adapter decides when they happen. The local adapter ships here: an operator-funded faucet for
// development networks, and manual credits by an operator (each transfer names the operator and the reason:
// the audit record). An on-chain adapter would make the same transfers when it sees a deposit confirmed on
// chain, and pay withdrawals out on chain, without touching the ledger.

export type SettlementRequest = {
  readonly accountId: string
  readonly amountUnits: bigint
  /** The transfer id: the same id again moves nothing twice. */
  readonly transferId: string
  readonly reference: string
  readonly nowMs: number
  /** For a withdrawal on chain: the owner address to pay (the chain adapter pays its token account). */
  readonly destination?: string
}

export type SettlementAdapter = {
  readonly name: string
  /** Money in from outside: credits the user's account. */
  deposit(request: SettlementRequest): Promise<TransferResult>
  /** Money out: debits the user's account, to be paid out by the adapter. */
  withdraw(request: SettlementRequest): Promise<TransferResult>
}

/** The faucet's own account, funded by an operator from the settlement account. */
export const faucetAccountId = 'platform:faucet'

export function localSettlement(store: Store): SettlementAdapter {
  const user = (accountId: string) => ledgerAccounts.user(accountId)
  return {
    name: 'local',
    async deposit(request) {
      await store.ledger.createAccounts([user(request.accountId)], request.nowMs)
      const [result] = await store.ledger.createTransfers(
        [
          {
            id: request.transferId,
            kind: 'single',
            debitAccountId: ledgerAccounts.settlement().id,
            creditAccountId: user(request.accountId).id,
            amount: request.amountUnits,
            code: 'deposit',
            reference: request.reference,
          },
        ],
        request.nowMs,
      )
      return result!
    },
    async withdraw(request) {
      await store.ledger.createAccounts([user(request.accountId)], request.nowMs)
      const [result] = await store.ledger.createTransfers(
        [
          {
            id: request.transferId,
            kind: 'single',
            debitAccountId: user(request.accountId).id,
            creditAccountId: ledgerAccounts.settlement().id,
            amount: request.amountUnits,
            code: 'withdrawal',
            reference: request.reference,
          },
        ],
        request.nowMs,
      )
      return result!
    },
  }
}
