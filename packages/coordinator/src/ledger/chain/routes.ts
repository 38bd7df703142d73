import { ConflictError, formatGmtUnits } from '@gpumesh/core'
import {
  ChainVerificationView,
  DepositAddressView,
  DepositReportBody,
  DepositReportView,
  ErrorReply,
} from '@gpumesh/protocol'
import type { Store } from '@gpumesh/store'
import type { Clock } from '@gpumesh/core'
import { authenticate, requireRole } from '../../principal.ts'
import { walletView } from '../wallet.ts'
import type { App } from '../../routes.ts'
import type { ChainSettlement } from './chain-settlement.ts'

// The chain's own routes (docs/chain.md): an account's deposit address, reporting (or scanning for) a deposit,
// and reconciling the ledger with the chain. On a network without a chain they answer 409.

export type ChainRouteComponents = {
  readonly store: Store
  readonly clock: Clock
  readonly chain: ChainSettlement | undefined
}

const errors = { 400: ErrorReply, 401: ErrorReply, 403: ErrorReply, 409: ErrorReply, 503: ErrorReply }
const secured = [{ apiKey: [] }]

export function registerChainRoutes(app: App, components: ChainRouteComponents): void {
  const { store, clock } = components
  const chainOrRefuse = () => {
    if (!components.chain)
      throw new ConflictError(
        'this network settles GMT in its ledger only: there is no chain to deposit from',
      )
    return components.chain
  }
  const wallet = (accountId: string) => walletView(store, clock, accountId)

  app.get(
    '/v1/wallet/deposit-address',
    {
      schema: {
        tags: ['wallet'],
        summary: "The caller's own GMT deposit address on chain (created on first ask)",
        security: secured,
        response: { 200: DepositAddressView, ...errors },
      },
    },
    async (request) => {
      const chain = chainOrRefuse()
      const { accountId } = await authenticate(request, store, clock)
      return {
        accountId,
        address: await chain.depositAddress(accountId),
        mint: chain.mint,
        commitment: chain.commitment,
      }
    },
  )

  app.post(
    '/v1/wallet/deposits',
    {
      schema: {
        tags: ['wallet'],
        summary: 'Credit a GMT transfer to your deposit address (by signature, or by scanning the address)',
        security: secured,
        body: DepositReportBody,
        response: { 200: DepositReportView, ...errors },
      },
    },
    async (request) => {
      const chain = chainOrRefuse()
      const { accountId } = await authenticate(request, store, clock)
      const outcome = request.body.signature
        ? await chain.creditDeposit(request.body.signature)
        : await chain.scanDeposits(accountId)
      // A reported signature must pay the caller's own address: no one learns of, or credits, another's.
      const credits =
        outcome.status === 'credited' ? outcome.credits.filter((c) => c.accountId === accountId) : []
      if (request.body.signature && outcome.status === 'credited' && credits.length === 0)
        throw new ConflictError('that transaction pays no deposit address of yours')
      return {
        status:
          outcome.status === 'unconfirmed'
            ? ('unconfirmed' as const)
            : credits.some((credit) => credit.newlyCredited) || request.body.signature
              ? ('credited' as const)
              : ('none' as const),
        credits: credits.map((credit) => ({
          transferId: credit.transferId,
          signature: credit.transferId.split(':')[1]!,
          amountGmt: formatGmtUnits(credit.amountUnits),
          newlyCredited: credit.newlyCredited,
        })),
        wallet: await wallet(accountId),
      }
    },
  )

  app.get(
    '/v1/ledger/verify-chain',
    {
      schema: {
        tags: ['ledger'],
        summary: "Compare what the ledger says the vault holds with the chain's balances (operators)",
        security: secured,
        response: { 200: ChainVerificationView, ...errors },
      },
    },
    async (request) => {
      requireRole(await authenticate(request, store, clock), 'operator')
      const chain = chainOrRefuse()
      const startedAt = performance.now()
      const verification = await chain.verify()
      return {
        ok: verification.ok,
        vaultAddress: verification.vaultAddress,
        ledgerGmt: formatGmtUnits(verification.ledgerUnits),
        chainGmt: formatGmtUnits(verification.chainUnits),
        vaultChainGmt: formatGmtUnits(verification.vaultChainUnits),
        depositAddresses: verification.depositAddresses,
        mismatches: verification.mismatches.map((mismatch) => ({
          kind: mismatch.kind,
          address: mismatch.address,
          accountId: mismatch.accountId,
          ledgerGmt: formatGmtUnits(mismatch.ledgerUnits),
          chainGmt: mismatch.chainUnits === null ? null : formatGmtUnits(mismatch.chainUnits),
          detail: mismatch.detail,
        })),
        tookMs: Math.round(performance.now() - startedAt),
      }
    },
  )
}
