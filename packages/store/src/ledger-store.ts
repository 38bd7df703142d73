import { millisecondsPerDay } from '@gpumesh/core'
import {
  expiryVoid,
  planBatch,
  recomputeBalances,
  resolutionOf,
  type LedgerAccount,
  type LedgerAccountSpec,
  type PendingState,
  type Transfer,
  type TransferKind,
  type TransferMatch,
  type TransferRequest,
  type TransferResult,
} from '@gpumesh/ledger'
import type { SqlDriver, SqlExecutor, SqlParam } from './driver.ts'
import { retryWhen } from './retry.ts'

// The ledger in the database. A batch locks the accounts it touches (in id order, so batches never deadlock
// each other), reads the transfers it names, lets planBatch decide, and writes the transfers and the new
// totals with a few set-based statements, all in one transaction: committed whole or not at all, and an
// account is never overdrawn (a CHECK constraint refuses it as well).

export type LedgerStore = {
  /** Creates the accounts that do not exist yet. */
  createAccounts(specs: readonly LedgerAccountSpec[], nowMs: number): Promise<void>
  getAccounts(ids: readonly string[]): Promise<LedgerAccount[]>
  /** One result per request, in order; the batch commits whole or not at all. */
  createTransfers(batch: readonly TransferRequest[], nowMs: number): Promise<TransferResult[]>
  /**
   * As createTransfers, and when every transfer is created (or already existed) `alongside` writes what the
   * transfers are for in the same transaction: both commit, or neither.
   */
  createTransfersWith(
    batch: readonly TransferRequest[],
    nowMs: number,
    alongside: (tx: SqlExecutor) => Promise<void>,
  ): Promise<TransferResult[]>
  /** The newest transfer's sequence number (0 with none): its growth is the ledger's transfer rate. */
  lastTransferSeq(): Promise<bigint>
  /** Voids pending transfers past their timeout (each by its own `expire:` transfer); returns how many. */
  expirePending(nowMs: number, limit?: number): Promise<number>
  /** Pending transfers with `code`, created before `createdBeforeMs`, neither posted, voided nor expired. */
  listUnresolvedPending(code: string, createdBeforeMs: number, limit: number): Promise<Transfer[]>
  /** An account's transfers, newest first; with a filter, only those matching any of `any` and none of `none`. */
  listTransfers(
    accountId: string,
    limit: number,
    filter?: { readonly any: readonly TransferMatch[]; readonly none: readonly TransferMatch[] },
  ): Promise<Transfer[]>
  pendingState(transferId: string): Promise<PendingState | undefined>
  listTransfersById(ids: readonly string[]): Promise<Transfer[]>
  /**
   * What was credited to an account since `sinceMs`, summed per reference (for a supplier's earnings: the
   * device), UTC day and code, newest day first.
   */
  creditsByReferenceAndDay(accountId: string, sinceMs: number): Promise<CreditSummary[]>
  /** The transfers behind one CreditSummary line, oldest first, at most `limit`. */
  listCredits(
    accountId: string,
    filter: { reference: string | null; fromMs: number; toMs: number; code?: string },
    limit: number,
  ): Promise<Transfer[]>
  /** The sum of every single transfer with this code credited to the account (0 with none). */
  sumCredits(accountId: string, code: string): Promise<bigint>
  /** Recomputes every total from the transfers and compares; see LedgerVerification. */
  verify(): Promise<LedgerVerification>
}

export type CreditSummary = {
  readonly reference: string | null
  readonly dayStartMs: number
  readonly code: string
  readonly amount: bigint
  readonly transfers: number
}

export type LedgerVerification = {
  readonly ok: boolean
  readonly accounts: number
  readonly transfers: number
  /** Accounts whose stored totals differ from those recomputed from transfers. */
  readonly mismatched: readonly string[]
  /** Σ(credits − debits) over all accounts, posted and pending: zero in a double-entry ledger. */
  readonly postedSum: bigint
  readonly pendingSum: bigint
  /** Accounts below zero that may not be. */
  readonly overdrawn: readonly string[]
}

/** A transfer id used by two concurrent batches: the later one is retried and then answers `exists`. */
const isTransferIdTaken = (error: unknown): boolean => {
  const { code, constraint } = error as { code?: string; constraint?: string }
  return (
    code === '23505' && (constraint === 'ledger_transfers_pkey' || constraint === 'ledger_transfers_resolves')
  )
}
const isDeadlock = (error: unknown): boolean => (error as { code?: string }).code === '40P01'
const maxBatchAttempts = 5

type AccountRow = {
  id: string
  kind: string
  allow_negative: boolean
  debits_pending: bigint
  debits_posted: bigint
  credits_pending: bigint
  credits_posted: bigint
}
type TransferRow = {
  id: string
  kind: TransferKind
  debit_account_id: string
  credit_account_id: string
  amount: bigint
  pending_id: string | null
  timeout_ms: bigint
  code: string
  reference: string | null
  created_at_ms: bigint
}

/** The SQL of `transferMatches` (packages/ledger), each value a parameter appended to `params`. */
function matchesSql(
  filter: { readonly any: readonly TransferMatch[]; readonly none: readonly TransferMatch[] },
  params: SqlParam[],
): string {
  const parameter = (value: SqlParam) => `$${params.push(value)}`
  const one = (match: TransferMatch) =>
    [
      `kind = ${parameter(match.transferKind)}`,
      ...(match.codes ? [`code = ANY(${parameter(match.codes)}::text[])`] : []),
      ...(match.exceptCodes ? [`code <> ALL(${parameter(match.exceptCodes)}::text[])`] : []),
      ...(match.idPrefix ? [`starts_with(id, ${parameter(match.idPrefix)})`] : []),
      ...(match.exceptIdPrefix ? [`NOT starts_with(id, ${parameter(match.exceptIdPrefix)})`] : []),
    ].join(' AND ')
  const anyOf = (matches: readonly TransferMatch[]) => matches.map((match) => `(${one(match)})`).join(' OR ')
  return (
    [
      ...(filter.any.length > 0 ? [`(${anyOf(filter.any)})`] : []),
      ...(filter.none.length > 0 ? [`NOT (${anyOf(filter.none)})`] : []),
    ].join(' AND ') || 'TRUE'
  )
}

export function createLedgerStore(driver: SqlDriver): LedgerStore {
  const transferColumns =
    'id, kind, debit_account_id, credit_account_id, amount, pending_id, timeout_ms, code, reference, created_at_ms'

  const readTransfers = async (tx: SqlExecutor, ids: readonly string[]) => {
    if (ids.length === 0) return new Map<string, Transfer>()
    const rows = await tx.query<TransferRow>(
      `SELECT ${transferColumns} FROM ledger_transfers WHERE id = ANY($1::text[])`,
      [ids],
    )
    return new Map(rows.map((row) => [row.id, toTransfer(row)]))
  }

  const createTransfersOnce = (
    batch: readonly TransferRequest[],
    nowMs: number,
    alongside?: (tx: SqlExecutor) => Promise<void>,
  ) =>
    driver.transaction(async (tx) => {
      const named = new Set<string>()
      for (const request of batch) {
        named.add(request.id)
        if (request.pendingId) named.add(request.pendingId)
      }
      const existing = await readTransfers(tx, [...named])
      const accountIds = new Set<string>()
      for (const request of batch) {
        if (request.debitAccountId) accountIds.add(request.debitAccountId)
        if (request.creditAccountId) accountIds.add(request.creditAccountId)
        const pending = request.pendingId ? existing.get(request.pendingId) : undefined
        if (pending) {
          accountIds.add(pending.debitAccountId)
          accountIds.add(pending.creditAccountId)
        }
      }
      const accountRows = await tx.query<AccountRow>(
        `SELECT id, kind, allow_negative, debits_pending, debits_posted, credits_pending, credits_posted
         FROM ledger_accounts WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE`,
        [[...accountIds].sort()],
      )
      const accounts = new Map(accountRows.map((row) => [row.id, toAccount(row)]))
      // Read after the locks: a concurrent batch resolving the same pending transfer has committed by now.
      const pendingIds = [...existing.values()]
        .filter((transfer) => transfer.kind === 'pending')
        .map((t) => t.id)
      const pendingStates = new Map<string, PendingState>()
      if (pendingIds.length > 0) {
        const resolutions = await tx.query<{ pending_id: string; kind: TransferKind; code: string }>(
          'SELECT pending_id, kind, code FROM ledger_transfers WHERE pending_id = ANY($1::text[])',
          [pendingIds],
        )
        for (const row of resolutions) pendingStates.set(row.pending_id, resolutionOf(row))
      }
      const outcome = planBatch({ accounts, existing, pendingStates, nowMs }, batch)
      if (outcome.created.length > 0) {
        const created = outcome.created
        await tx.execute(
          // In batch order, so seq (creation order) follows the batch.
          `INSERT INTO ledger_transfers (${transferColumns})
           SELECT ${transferColumns} FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[],
             $6::text[], $7::bigint[], $8::text[], $9::text[], $10::bigint[]) WITH ORDINALITY
             AS t(id, kind, debit_account_id, credit_account_id, amount, pending_id, timeout_ms, code, reference,
                  created_at_ms, position)
           ORDER BY position`,
          [
            created.map((t) => t.id),
            created.map((t) => t.kind),
            created.map((t) => t.debitAccountId),
            created.map((t) => t.creditAccountId),
            created.map((t) => t.amount.toString()),
            created.map((t) => t.pendingId),
            created.map((t) => String(t.timeoutMs)),
            created.map((t) => t.code),
            created.map((t) => t.reference),
            created.map((t) => String(t.createdAtMs)),
          ],
        )
        const changed = [...outcome.accounts.values()]
        await tx.execute(
          `UPDATE ledger_accounts a SET debits_pending = v.debits_pending, debits_posted = v.debits_posted,
             credits_pending = v.credits_pending, credits_posted = v.credits_posted
           FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[])
             AS v(id, debits_pending, debits_posted, credits_pending, credits_posted)
           WHERE a.id = v.id`,
          [
            changed.map((account) => account.id),
            changed.map((account) => account.debitsPending.toString()),
            changed.map((account) => account.debitsPosted.toString()),
            changed.map((account) => account.creditsPending.toString()),
            changed.map((account) => account.creditsPosted.toString()),
          ],
        )
      }
      if (alongside && outcome.results.every((result) => result === 'ok' || result === 'exists'))
        await alongside(tx)
      return [...outcome.results]
    })

  const store: LedgerStore = {
    async createAccounts(specs, nowMs) {
      if (specs.length === 0) return
      await driver.execute(
        `INSERT INTO ledger_accounts (id, kind, owner_id, allow_negative, created_at_ms)
         SELECT id, kind, owner_id, allow_negative, $5 FROM unnest($1::text[], $2::text[], $3::text[], $4::boolean[])
           AS a(id, kind, owner_id, allow_negative)
         ON CONFLICT (id) DO NOTHING`,
        [
          specs.map((spec) => spec.id),
          specs.map((spec) => spec.kind),
          specs.map((spec) => spec.ownerId),
          specs.map((spec) => spec.allowNegative),
          nowMs,
        ],
      )
    },

    async getAccounts(ids) {
      const rows = await driver.query<AccountRow>(
        `SELECT id, kind, allow_negative, debits_pending, debits_posted, credits_pending, credits_posted
         FROM ledger_accounts WHERE id = ANY($1::text[]) ORDER BY id`,
        [[...ids]],
      )
      return rows.map(toAccount)
    },

    async lastTransferSeq() {
      const [row] = await driver.query<{ seq: bigint | null }>('SELECT max(seq) AS seq FROM ledger_transfers')
      return BigInt(row?.seq ?? 0)
    },
    createTransfers(batch, nowMs) {
      if (batch.length === 0) return Promise.resolve([])
      return retryWhen(
        () => createTransfersOnce(batch, nowMs),
        (error) => isTransferIdTaken(error) || isDeadlock(error),
        maxBatchAttempts,
      )
    },

    createTransfersWith(batch, nowMs, alongside) {
      return retryWhen(
        () => createTransfersOnce(batch, nowMs, alongside),
        (error) => isTransferIdTaken(error) || isDeadlock(error),
        maxBatchAttempts,
      )
    },

    async expirePending(nowMs, limit = 1_000) {
      const rows = await driver.query<TransferRow>(
        `SELECT ${transferColumns} FROM ledger_transfers p
         WHERE p.kind = 'pending' AND p.timeout_ms > 0 AND p.created_at_ms + p.timeout_ms <= $1
           AND NOT EXISTS (SELECT 1 FROM ledger_transfers r WHERE r.pending_id = p.id)
         ORDER BY p.created_at_ms LIMIT $2`,
        [nowMs, limit],
      )
      let expired = 0
      // One batch per pending transfer: one that was resolved meanwhile must not undo the others.
      for (const row of rows) {
        const [result] = await store.createTransfers([expiryVoid(toTransfer(row))], nowMs)
        if (result === 'ok') expired += 1
      }
      return expired
    },

    async listUnresolvedPending(code, createdBeforeMs, limit) {
      const rows = await driver.query<TransferRow>(
        `SELECT ${transferColumns} FROM ledger_transfers p
         WHERE p.kind = 'pending' AND p.code = $1 AND p.created_at_ms < $2
           AND NOT EXISTS (SELECT 1 FROM ledger_transfers r WHERE r.pending_id = p.id)
         ORDER BY p.created_at_ms LIMIT $3`,
        [code, createdBeforeMs, limit],
      )
      return rows.map(toTransfer)
    },

    async listTransfers(accountId, limit, filter) {
      const params: SqlParam[] = [accountId, limit]
      const where = filter ? matchesSql(filter, params) : 'TRUE'
      const rows = await driver.query<TransferRow>(
        `SELECT ${transferColumns} FROM ledger_transfers
         WHERE (debit_account_id = $1 OR credit_account_id = $1) AND ${where} ORDER BY seq DESC LIMIT $2`,
        params,
      )
      return rows.map(toTransfer)
    },

    async listTransfersById(ids) {
      return [...(await readTransfers(driver, ids)).values()]
    },

    async creditsByReferenceAndDay(accountId, sinceMs) {
      const rows = await driver.query<{
        reference: string | null
        day: bigint
        code: string
        amount: bigint
        transfers: bigint
      }>(
        `SELECT reference, created_at_ms / $3 AS day, code, sum(amount)::bigint AS amount, count(*) AS transfers
         FROM ledger_transfers
         WHERE credit_account_id = $1 AND kind = 'single' AND created_at_ms >= $2
         GROUP BY reference, created_at_ms / $3, code
         ORDER BY day DESC, reference, code`,
        [accountId, sinceMs, millisecondsPerDay],
      )
      return rows.map((row) => ({
        reference: row.reference,
        dayStartMs: Number(row.day) * millisecondsPerDay,
        code: row.code,
        amount: BigInt(row.amount),
        transfers: Number(row.transfers),
      }))
    },

    async sumCredits(accountId, code) {
      const [row] = await driver.query<{ amount: string }>(
        `SELECT COALESCE(sum(amount), 0)::text AS amount FROM ledger_transfers
         WHERE credit_account_id = $1 AND kind = 'single' AND code = $2`,
        [accountId, code],
      )
      return BigInt(row?.amount ?? '0')
    },

    async listCredits(accountId, filter, limit) {
      const rows = await driver.query<TransferRow>(
        `SELECT ${transferColumns} FROM ledger_transfers
         WHERE credit_account_id = $1 AND kind = 'single' AND reference IS NOT DISTINCT FROM $2
           AND created_at_ms >= $3 AND created_at_ms < $4 AND ($5::text IS NULL OR code = $5)
         ORDER BY seq LIMIT $6`,
        [accountId, filter.reference, filter.fromMs, filter.toMs, filter.code ?? null, limit],
      )
      return rows.map(toTransfer)
    },

    async pendingState(transferId) {
      const [transfer] = await driver.query<{ kind: TransferKind }>(
        'SELECT kind FROM ledger_transfers WHERE id = $1',
        [transferId],
      )
      if (transfer?.kind !== 'pending') return undefined
      const [resolution] = await driver.query<{ kind: TransferKind; code: string }>(
        'SELECT kind, code FROM ledger_transfers WHERE pending_id = $1',
        [transferId],
      )
      return resolution ? resolutionOf(resolution) : 'pending'
    },

    async verify() {
      // One snapshot of both tables, so totals and transfers are read at the same moment.
      return driver.transaction(async (tx) => {
        if (driver.kind === 'postgres') await tx.execute('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ')
        const accounts = (
          await tx.query<AccountRow>(
            'SELECT id, kind, allow_negative, debits_pending, debits_posted, credits_pending, credits_posted FROM ledger_accounts',
          )
        ).map(toAccount)
        const transfers = (
          await tx.query<TransferRow>(`SELECT ${transferColumns} FROM ledger_transfers ORDER BY seq`)
        ).map(toTransfer)
        const recomputed = recomputeBalances(
          accounts.map((account) => account.id),
          transfers,
        )
        const mismatched: string[] = []
        const overdrawn: string[] = []
        let postedSum = 0n
        let pendingSum = 0n
        for (const account of accounts) {
          const totals = recomputed.get(account.id)!
          if (
            totals.debitsPending !== account.debitsPending ||
            totals.debitsPosted !== account.debitsPosted ||
            totals.creditsPending !== account.creditsPending ||
            totals.creditsPosted !== account.creditsPosted
          )
            mismatched.push(account.id)
          postedSum += account.creditsPosted - account.debitsPosted
          pendingSum += account.creditsPending - account.debitsPending
          if (
            !account.flags.allowNegative &&
            account.creditsPosted - account.debitsPosted - account.debitsPending < 0n
          )
            overdrawn.push(account.id)
        }
        return {
          ok: mismatched.length === 0 && overdrawn.length === 0 && postedSum === 0n && pendingSum === 0n,
          accounts: accounts.length,
          transfers: transfers.length,
          mismatched,
          postedSum,
          pendingSum,
          overdrawn,
        }
      })
    },
  }
  return store
}

function toAccount(row: AccountRow): LedgerAccount {
  return {
    id: row.id,
    kind: row.kind,
    flags: { allowNegative: row.allow_negative },
    debitsPending: BigInt(row.debits_pending),
    debitsPosted: BigInt(row.debits_posted),
    creditsPending: BigInt(row.credits_pending),
    creditsPosted: BigInt(row.credits_posted),
  }
}

function toTransfer(row: TransferRow): Transfer {
  return {
    id: row.id,
    kind: row.kind,
    debitAccountId: row.debit_account_id,
    creditAccountId: row.credit_account_id,
    amount: BigInt(row.amount),
    pendingId: row.pending_id,
    timeoutMs: Number(row.timeout_ms),
    code: row.code,
    reference: row.reference,
    createdAtMs: Number(row.created_at_ms),
  }
}
