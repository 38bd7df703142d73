import { randomBytes } from 'node:crypto'
import {
  ConflictError,
  formatGmtUnits,
  formatUtcDay,
  millisecondsPerDay,
  GpumeshError,
  InsufficientFundsError,
  NotFoundError,
  parseGmtToUnits,
  ValidationError,
  type Clock,
  type WalletEntryKind,
} from '@gpumesh/core'
import {
  available,
  heldForOf,
  ledgerAccounts,
  walletEntryFilter,
  walletEntryKindOf,
  type Transfer,
  type TransferResult,
} from '@gpumesh/ledger'
import {
  CollectEarningsBody,
  EarningsQuery,
  EarningsTransfers,
  EarningsTransfersQuery,
  EarningsView,
  ErrorReply,
  LedgerAccountView,
  LedgerVerificationView,
  OperatorCreditBody,
  WalletAmountBody,
  WalletHistory,
  WalletHistoryQuery,
  type WalletTransferView,
  WalletWithdrawBody,
  WalletReceipt,
  WalletView,
} from '@gpumesh/protocol'
import type { Store } from '@gpumesh/store'
import type { FastifyReply, FastifyRequest } from 'fastify'
import Type from 'typebox'
import { authenticate, requireRole, type Principal } from '../principal.ts'
import { walletView } from './wallet.ts'
import type { App } from '../routes.ts'
import { faucetAccountId, type SettlementAdapter } from './settlement.ts'
import { HoldRefused, type ChainSettlement } from './chain/chain-settlement.ts'
import {
  faucetClaimTransferId,
  FaucetLimitedError,
  FaucetSourceCounter,
  KeyedSerializer,
  secondsUntilNextPeriod,
  withdrawableUnits,
  type FaucetLimits,
} from './faucet.ts'
import type { CoordinatorMetrics } from '../metrics.ts'

// Wallets and the ledger over HTTP. Every amount is validated at the edge (exact decimals, positive, at most
// 10^12 GMT); a request id makes deposits, withdrawals and claims safe to retry.

export type LedgerRouteComponents = {
  readonly store: Store
  readonly clock: Clock
  readonly settlement: SettlementAdapter
  /** Set on a chain-settled network: withdrawals pay an address on chain. */
  readonly chain?: ChainSettlement
  /** Units one faucet claim may take at most; 0: no faucet. */
  readonly faucetMaxClaimUnits: bigint
  readonly faucetLimits: FaucetLimits
  /** False: withdrawals leave every account at least the faucet GMT it received (see faucet.ts). */
  readonly faucetFundsWithdrawable: boolean
  /** The last verification's outcome, for GET /metrics. */
  readonly metrics?: Pick<CoordinatorMetrics, 'ledgerVerifyOk' | 'ledgerVerifiedAtSeconds'>
}

class FaucetEmptyError extends GpumeshError {
  readonly code = 'GPUMESH_ERR_FAUCET_EMPTY'
  readonly httpStatus = 409
}

const errors = { 400: ErrorReply, 401: ErrorReply, 403: ErrorReply, 404: ErrorReply, 409: ErrorReply }
const faucetErrors = { ...errors, 429: ErrorReply }
const secured = [{ apiKey: [] }]
/** Transfers one statement line lists at most: a device paid every minute has 1,440 a day. */
const maxStatementTransfers = 2_000

/**
 * A transfer as an account's statement shows it: positive into the account, negative out of it. A release
 * gives a hold's funds back, so it counts as in, though the ledger stores it with its hold's direction.
 */
function transferView(transfer: Transfer, own: string): WalletTransferView {
  const kind = walletEntryKindOf(transfer)
  const incoming = kind === 'release' ? transfer.debitAccountId === own : transfer.creditAccountId === own
  const counterparty = transfer.creditAccountId === own ? transfer.debitAccountId : transfer.creditAccountId
  return {
    id: transfer.id,
    kind,
    transferKind: transfer.kind,
    code: transfer.code,
    amountGmt: formatGmtUnits(incoming ? transfer.amount : -transfer.amount),
    heldFor:
      kind === 'hold' || kind === 'release' || kind === 'spend'
        ? heldForOf(counterparty, transfer.reference)
        : null,
    counterparty,
    reference: transfer.reference,
    createdAtMs: transfer.createdAtMs,
  }
}

export function registerLedgerRoutes(app: App, components: LedgerRouteComponents): void {
  const { store, clock, settlement } = components
  const principalOf = (request: FastifyRequest): Promise<Principal> => authenticate(request, store, clock)
  const units = (text: string, field: string) => {
    const amount = parseGmtToUnits(text)
    if (amount === null || amount <= 0n)
      throw new ValidationError([{ field, message: 'must be a positive GMT amount' }])
    return amount
  }
  const transferId = (kind: string, accountId: string, requestId: string | undefined) =>
    `${kind}:${accountId}:${requestId ?? randomBytes(12).toString('hex')}`
  const wallet = (accountId: string) => walletView(store, clock, accountId)
  const faucetSources = new FaucetSourceCounter(components.faucetLimits)
  /** Withdrawals of one account run one at a time when faucet GMT is held back, so the check holds. */
  const withdrawals = new KeyedSerializer()
  const faucetClaims = new KeyedSerializer()
  const accountAlreadyClaimed = (nowMs: number) => {
    const retryAfterSeconds = secondsUntilNextPeriod(nowMs, components.faucetLimits.periodMs)
    return new FaucetLimitedError(
      `this account already claimed from the faucet this period; try again in ${retryAfterSeconds} s`,
      retryAfterSeconds,
    )
  }
  const refuseFaucetClaim = (reply: FastifyReply, error: FaucetLimitedError): never => {
    void reply.header('retry-after', String(error.retryAfterSeconds))
    throw error
  }
  /** Turns a refused transfer into the error the caller sees; `exists` is a replay and answers as the first did. */
  const check = async (
    result: TransferResult,
    accountId: string,
    amount: bigint,
    emptyMeansFaucet = false,
  ) => {
    if (result === 'ok' || result === 'exists') return
    if (result === 'exceeds_credits') {
      if (emptyMeansFaucet) throw new FaucetEmptyError('the faucet has run dry; an operator can refill it')
      const current = await wallet(accountId)
      const shortfall = amount - (parseGmtToUnits(current.availableGmt) ?? 0n)
      throw new InsufficientFundsError(
        `not enough GMT: ${current.availableGmt} available, ${formatGmtUnits(amount)} needed`,
        { shortfallGmt: formatGmtUnits(shortfall), availableGmt: current.availableGmt },
      )
    }
    if (result === 'exists_with_different_payload')
      throw new ConflictError('this requestId was already used for a different request')
    throw new ValidationError([{ field: 'amountGmt', message: `refused by the ledger: ${result}` }])
  }

  app.get(
    '/v1/wallet',
    {
      schema: {
        tags: ['wallet'],
        summary: "The caller's GMT balance",
        security: secured,
        response: { 200: WalletView, ...errors },
      },
    },
    async (request) => wallet((await principalOf(request)).accountId),
  )

  app.get(
    '/v1/wallet/history',
    {
      schema: {
        tags: ['wallet'],
        summary: "The caller's wallet transfers, newest first",
        security: secured,
        querystring: WalletHistoryQuery,
        response: { 200: WalletHistory, ...errors },
      },
    },
    async (request) => {
      const { accountId } = await principalOf(request)
      const own = ledgerAccounts.user(accountId).id
      const kinds = request.query.kind?.split(',') as WalletEntryKind[] | undefined
      const transfers = await store.ledger.listTransfers(
        own,
        request.query.limit ?? 100,
        kinds ? walletEntryFilter(kinds) : undefined,
      )
      return { transfers: transfers.map((transfer) => transferView(transfer, own)) }
    },
  )

  const uncollected = async (accountId: string) => {
    const [account] = await store.ledger.getAccounts([ledgerAccounts.earnings(accountId).id])
    return account ? available(account) : 0n
  }

  app.get(
    '/v1/earnings',
    {
      schema: {
        tags: ['wallet'],
        summary: "A supplier's earnings per device, UTC day and source (rental, inference, reward)",
        security: secured,
        querystring: EarningsQuery,
        response: { 200: EarningsView, ...errors },
      },
    },
    async (request) => {
      const { accountId } = await principalOf(request)
      const days = request.query.days ?? 30
      const todayStartMs = Math.floor(clock.nowMs() / millisecondsPerDay) * millisecondsPerDay
      const summary = await store.ledger.creditsByReferenceAndDay(
        ledgerAccounts.earnings(accountId).id,
        todayStartMs - (days - 1) * millisecondsPerDay,
      )
      const lines = summary.filter(
        (line) => request.query.deviceId === undefined || line.reference === request.query.deviceId,
      )
      return {
        accountId,
        uncollectedGmt: formatGmtUnits(await uncollected(accountId)),
        periodTotalGmt: formatGmtUnits(lines.reduce((sum, line) => sum + line.amount, 0n)),
        lines: lines.map((line) => ({
          deviceId: line.reference,
          day: formatUtcDay(line.dayStartMs),
          source: line.code,
          amountGmt: formatGmtUnits(line.amount),
          transfers: line.transfers,
        })),
      }
    },
  )

  app.get(
    '/v1/earnings/transfers',
    {
      schema: {
        tags: ['wallet'],
        summary: 'The ledger transfers behind one line of the earnings statement',
        security: secured,
        querystring: EarningsTransfersQuery,
        response: { 200: EarningsTransfers, ...errors },
      },
    },
    async (request) => {
      const { accountId } = await principalOf(request)
      const fromMs = Date.parse(`${request.query.day}T00:00:00Z`)
      if (Number.isNaN(fromMs)) throw new ValidationError([{ field: 'day', message: 'not a calendar day' }])
      const own = ledgerAccounts.earnings(accountId).id
      const transfers = await store.ledger.listCredits(
        own,
        {
          reference: request.query.deviceId ?? null,
          fromMs,
          toMs: fromMs + millisecondsPerDay,
          ...(request.query.source === undefined ? {} : { code: request.query.source }),
        },
        maxStatementTransfers,
      )
      return { transfers: transfers.map((transfer) => transferView(transfer, own)) }
    },
  )

  app.post(
    '/v1/earnings/collect',
    {
      schema: {
        tags: ['wallet'],
        summary: 'Move earnings into the wallet, from where they can be spent or withdrawn',
        security: secured,
        body: CollectEarningsBody,
        response: { 200: WalletReceipt, ...errors },
      },
    },
    async (request) => {
      const { accountId } = await principalOf(request)
      const amount =
        request.body.amountGmt === undefined
          ? await uncollected(accountId)
          : units(request.body.amountGmt, 'amountGmt')
      if (amount === 0n) throw new ConflictError('there are no earnings to collect')
      const earnings = ledgerAccounts.earnings(accountId)
      await store.ledger.createAccounts([earnings, ledgerAccounts.user(accountId)], clock.nowMs())
      const id = transferId('collect', accountId, request.body.requestId)
      const [result] = await store.ledger.createTransfers(
        [
          {
            id,
            kind: 'single',
            debitAccountId: earnings.id,
            creditAccountId: ledgerAccounts.user(accountId).id,
            amount,
            code: 'collect',
            reference: 'earnings collected',
          },
        ],
        clock.nowMs(),
      )
      if (result === 'exceeds_credits') {
        const have = await uncollected(accountId)
        throw new InsufficientFundsError(
          `not enough earnings: ${formatGmtUnits(have)} GMT uncollected, ${formatGmtUnits(amount)} asked for`,
          { shortfallGmt: formatGmtUnits(amount - have), availableGmt: formatGmtUnits(have) },
        )
      }
      await check(result!, accountId, amount)
      return { transferId: id, wallet: await wallet(accountId) }
    },
  )

  app.post(
    '/v1/wallet/withdraw',
    {
      schema: {
        tags: ['wallet'],
        summary: `Withdraw GMT through the ${settlement.name} settlement adapter`,
        security: secured,
        body: WalletWithdrawBody,
        response: { 200: WalletReceipt, ...errors },
      },
    },
    async (request) => {
      const { accountId } = await principalOf(request)
      const amount = units(request.body.amountGmt, 'amountGmt')
      if (components.faucetFundsWithdrawable) return withdraw(accountId, amount, request.body)
      return withdrawals.run(accountId, async () => {
        const id = transferId('withdraw', accountId, request.body.requestId)
        const replay =
          request.body.requestId !== undefined && (await store.ledger.listTransfersById([id])).length > 0
        if (replay) return withdraw(accountId, amount, request.body)
        const [account] = await store.ledger.getAccounts([ledgerAccounts.user(accountId).id])
        const faucetReceived = await store.ledger.sumCredits(ledgerAccounts.user(accountId).id, 'faucet')
        const withdrawable = withdrawableUnits(account ? available(account) : 0n, faucetReceived)
        if (amount > withdrawable)
          throw new InsufficientFundsError(
            `not enough withdrawable GMT: ${formatGmtUnits(withdrawable)} may be withdrawn, ${formatGmtUnits(amount)} asked for (this network keeps the ${formatGmtUnits(faucetReceived)} GMT from its faucet out of withdrawals)`,
            {
              shortfallGmt: formatGmtUnits(amount - withdrawable),
              availableGmt: formatGmtUnits(withdrawable),
              faucetReceivedGmt: formatGmtUnits(faucetReceived),
            },
          )
        return withdraw(accountId, amount, request.body)
      })
    },
  )

  /** Pays a withdrawal out through the chain or the local settlement adapter. */
  async function withdraw(accountId: string, amount: bigint, body: WalletWithdrawBody) {
    const id = transferId('withdraw', accountId, body.requestId)
    const { chain } = components
    if (chain) {
      if (body.to === undefined)
        throw new ValidationError([{ field: 'to', message: 'the address to pay on chain is required' }])
      try {
        const paid = await chain.withdrawTo({
          accountId,
          amountUnits: amount,
          transferId: id,
          reference: 'withdrawal',
          nowMs: clock.nowMs(),
          destination: body.to,
        })
        return { transferId: id, wallet: await wallet(accountId), signature: paid.signature }
      } catch (error) {
        if (!(error instanceof HoldRefused)) throw error
        await check(error.result, accountId, amount)
        throw error
      }
    }
    await check(
      await settlement.withdraw({
        accountId,
        amountUnits: amount,
        transferId: id,
        reference: 'withdrawal',
        nowMs: clock.nowMs(),
      }),
      accountId,
      amount,
    )
    return { transferId: id, wallet: await wallet(accountId) }
  }

  app.post(
    '/v1/wallet/faucet',
    {
      schema: {
        tags: ['wallet'],
        summary:
          'Claim GMT from the development faucet (off on production networks): one claim per account per period',
        security: secured,
        body: WalletAmountBody,
        response: { 200: WalletReceipt, ...faucetErrors },
      },
    },
    async (request, reply) => {
      const principal = await principalOf(request)
      // Faucet money is for renting (docs/billing.md#who-may-use-the-faucet-and-withdraw).
      requireRole(principal, 'renter')
      const { accountId } = principal
      if (components.faucetMaxClaimUnits === 0n) throw new ConflictError('this network has no faucet')
      const amount = units(request.body.amountGmt, 'amountGmt')
      if (amount > components.faucetMaxClaimUnits)
        throw new ValidationError([
          {
            field: 'amountGmt',
            message: `at most ${formatGmtUnits(components.faucetMaxClaimUnits)} GMT per claim`,
          },
        ])
      // One claim of an account at a time here, so its concurrent claims are refused by the account check
      // below without taking the source's claims meanwhile.
      return faucetClaims.run(accountId, () =>
        claimFromFaucet(request.ip, accountId, amount, request.body, reply),
      )
    },
  )

  /** The claim a request id already made: by its reference, or by its id as claims were named before limits. */
  async function earlierFaucetClaim(accountId: string, requestId: string, nowMs: number) {
    const user = ledgerAccounts.user(accountId).id
    const filter = { reference: `request ${requestId}`, fromMs: 0, toMs: nowMs + 1, code: 'faucet' }
    const [claimed] = await store.ledger.listCredits(user, filter, 1)
    if (claimed) return claimed
    const [named] = await store.ledger.listTransfersById([`faucet:${accountId}:${requestId}`])
    return named
  }

  async function claimFromFaucet(
    source: string,
    accountId: string,
    amount: bigint,
    body: WalletAmountBody,
    reply: FastifyReply,
  ) {
    const { periodMs } = components.faucetLimits
    const nowMs = clock.nowMs()
    // The period's one claim is one transfer id, and the request id rides in its reference, so a retry of
    // a claim that succeeded (in any period) answers as it did while any other claim this period is refused.
    const id = faucetClaimTransferId(accountId, nowMs, periodMs)
    const reference = body.requestId === undefined ? undefined : `request ${body.requestId}`
    if (body.requestId !== undefined) {
      const replayed = await earlierFaucetClaim(accountId, body.requestId, nowMs)
      if (replayed) {
        if (replayed.amount !== amount)
          throw new ConflictError('this requestId was already used for a different request')
        return { transferId: replayed.id, wallet: await wallet(accountId) }
      }
    }
    if ((await store.ledger.listTransfersById([id])).length > 0)
      refuseFaucetClaim(reply, accountAlreadyClaimed(nowMs))
    try {
      faucetSources.reserve(source, nowMs)
    } catch (error) {
      if (error instanceof FaucetLimitedError) refuseFaucetClaim(reply, error)
      throw error
    }
    let result: TransferResult | undefined
    try {
      await store.ledger.createAccounts([ledgerAccounts.user(accountId)], nowMs)
      ;[result] = await store.ledger.createTransfers(
        [
          {
            id,
            kind: 'single',
            debitAccountId: faucetAccountId,
            creditAccountId: ledgerAccounts.user(accountId).id,
            amount,
            code: 'faucet',
            ...(reference === undefined ? {} : { reference }),
          },
        ],
        nowMs,
      )
    } finally {
      if (result !== 'ok') faucetSources.release(source, nowMs)
    }
    if (result === 'exists' || result === 'exists_with_different_payload') {
      // A concurrent claim of this account took the period's transfer id first.
      refuseFaucetClaim(reply, accountAlreadyClaimed(nowMs))
    }
    await check(result!, accountId, amount, true)
    return { transferId: id, wallet: await wallet(accountId) }
  }

  app.post(
    '/v1/operator/credits',
    {
      schema: {
        tags: ['ledger'],
        summary: "Credit an account's wallet by hand (operators); the transfer records who and why",
        security: secured,
        body: OperatorCreditBody,
        response: { 200: WalletReceipt, ...errors },
      },
    },
    async (request) => {
      const principal = await principalOf(request)
      requireRole(principal, 'operator')
      const { accountId, reason } = request.body
      if (!(await store.getAccount(accountId)))
        throw new ValidationError([{ field: 'accountId', message: 'no such account' }])
      const amount = units(request.body.amountGmt, 'amountGmt')
      const id = transferId('credit', accountId, request.body.requestId)
      await check(
        await settlement.deposit({
          accountId,
          amountUnits: amount,
          transferId: id,
          reference: `operator ${principal.accountId} (key ${principal.apiKeyId}): ${reason}`,
          nowMs: clock.nowMs(),
        }),
        accountId,
        amount,
      )
      return { transferId: id, wallet: await wallet(accountId) }
    },
  )

  app.post(
    '/v1/operator/faucet',
    {
      schema: {
        tags: ['ledger'],
        summary: 'Fund the development faucet (operators)',
        security: secured,
        body: WalletAmountBody,
        response: { 200: Type.Object({ transferId: Type.String(), faucetGmt: Type.String() }), ...errors },
      },
    },
    async (request) => {
      const principal = await principalOf(request)
      requireRole(principal, 'operator')
      const amount = units(request.body.amountGmt, 'amountGmt')
      const id = transferId('fund-faucet', principal.accountId, request.body.requestId)
      const [result] = await store.ledger.createTransfers(
        [
          {
            id,
            kind: 'single',
            debitAccountId: ledgerAccounts.settlement().id,
            creditAccountId: faucetAccountId,
            amount,
            code: 'faucet_funding',
            reference: `operator ${principal.accountId}`,
          },
        ],
        clock.nowMs(),
      )
      await check(result!, principal.accountId, amount)
      const [faucet] = await store.ledger.getAccounts([faucetAccountId])
      return { transferId: id, faucetGmt: formatGmtUnits(faucet!.creditsPosted - faucet!.debitsPosted) }
    },
  )

  app.get(
    '/v1/ledger/accounts/:id',
    {
      schema: {
        tags: ['ledger'],
        summary: "One ledger account's totals, e.g. platform:fee (operators)",
        security: secured,
        params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 160 }) }),
        response: { 200: LedgerAccountView, ...errors },
      },
    },
    async (request) => {
      requireRole(await principalOf(request), 'operator')
      const [account] = await store.ledger.getAccounts([request.params.id])
      if (!account) throw new NotFoundError(`no ledger account ${request.params.id}`)
      return {
        id: account.id,
        kind: account.kind,
        balanceGmt: formatGmtUnits(account.creditsPosted - account.debitsPosted),
        heldGmt: formatGmtUnits(account.debitsPending),
        debitsPostedGmt: formatGmtUnits(account.debitsPosted),
        creditsPostedGmt: formatGmtUnits(account.creditsPosted),
        debitsPendingGmt: formatGmtUnits(account.debitsPending),
        creditsPendingGmt: formatGmtUnits(account.creditsPending),
      }
    },
  )

  app.get(
    '/v1/ledger/verify',
    {
      schema: {
        tags: ['ledger'],
        summary: 'Recompute every balance from the transfers and compare with the stored totals (operators)',
        security: secured,
        response: { 200: LedgerVerificationView, 401: ErrorReply, 403: ErrorReply },
      },
    },
    async (request) => {
      requireRole(await principalOf(request), 'operator')
      const startedAt = performance.now()
      const verification = await store.ledger.verify()
      components.metrics?.ledgerVerifyOk.set(verification.ok ? 1 : 0)
      components.metrics?.ledgerVerifiedAtSeconds.set(components.clock.nowMs() / 1000)
      return {
        ...verification,
        mismatched: [...verification.mismatched],
        overdrawn: [...verification.overdrawn],
        postedSum: verification.postedSum.toString(),
        pendingSum: verification.pendingSum.toString(),
        tookMs: Math.round(performance.now() - startedAt),
      }
    },
  )
}
