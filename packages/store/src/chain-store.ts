import type { TransferRequest, TransferResult } from '@gpumesh/ledger'
import type { SqlDriver, SqlExecutor } from './driver.ts'
import type { LedgerStore } from './ledger-store.ts'

// What the chain settlement adapter keeps (migration 0019; docs/chain.md): deposit addresses, credited
// deposits and the transactions the vault signs. Ledger transfers and these rows are written in one
// transaction, so the ledger and this bookkeeping never disagree after a crash.

export type DepositAddressRecord = {
  readonly accountId: string
  readonly address: string
  readonly seed: string
  readonly createdAtMs: number
}

export type ChainDepositRecord = {
  readonly signature: string
  readonly instructionIndex: number
  readonly accountId: string
  readonly address: string
  readonly amount: bigint
  readonly transferId: string
  readonly creditedAtMs: number
}

export type OutgoingKind = 'withdrawal' | 'sweep'
/** signed: stored, maybe sent, not yet seen landed; landed, failed (landed with an error), expired: final. */
export type OutgoingState = 'signed' | 'landed' | 'failed' | 'expired'

export type OutgoingRecord = {
  /** For a withdrawal, its ledger hold's transfer id; for a sweep, `sweep:` and the deposit's transfer id. */
  readonly id: string
  readonly kind: OutgoingKind
  readonly accountId: string
  readonly source: string
  readonly destination: string
  readonly amount: bigint
  readonly signature: string
  readonly wireBase64: string
  readonly lastValidBlockHeight: bigint
  readonly state: OutgoingState
  readonly createdAtMs: number
  readonly resolvedAtMs: number | null
}

/** One deposit address's books: what was credited there and what left it by landed (or unresolved) sweeps. */
export type DepositAddressBooks = {
  readonly accountId: string
  readonly address: string
  readonly credited: bigint
  readonly sweptLanded: bigint
  readonly sweepsUnresolved: number
}

export type ChainStore = {
  getDepositAddress(accountId: string): Promise<DepositAddressRecord | undefined>
  /** Keeps the first address stored for the account (two coordinators may race) and returns it. */
  putDepositAddress(record: DepositAddressRecord): Promise<DepositAddressRecord>
  depositAddressesOf(addresses: readonly string[]): Promise<DepositAddressRecord[]>
  /** Credits a deposit: the ledger transfer and its row commit together; a second report answers `exists`. */
  creditDeposit(deposit: ChainDepositRecord, transfer: TransferRequest): Promise<TransferResult>
  listDeposits(signature: string): Promise<ChainDepositRecord[]>
  /** Stores a signed transaction unless one with this id exists; returns the stored one (the first wins). */
  putOutgoing(record: OutgoingRecord): Promise<OutgoingRecord>
  getOutgoing(id: string): Promise<OutgoingRecord | undefined>
  listUnresolved(limit: number): Promise<OutgoingRecord[]>
  /**
   * Marks a signed transaction final; `ledger` (a withdrawal's post or void) commits in the same transaction.
   * Answers false when it was already resolved (by another coordinator): nothing changes then.
   */
  resolveOutgoing(
    id: string,
    state: Exclude<OutgoingState, 'signed'>,
    nowMs: number,
    ledger: readonly TransferRequest[],
  ): Promise<boolean>
  /** Every deposit address with its credited and swept totals, for reconciliation. */
  depositBooks(): Promise<DepositAddressBooks[]>
  /** Unresolved withdrawals and their total, which the chain may or may not have paid yet. */
  withdrawalsInFlight(): Promise<{ count: number; amount: bigint }>
}

type DepositAddressRow = { account_id: string; address: string; seed: string; created_at_ms: bigint }
type DepositRow = {
  signature: string
  instruction_index: number
  account_id: string
  address: string
  amount: bigint
  transfer_id: string
  credited_at_ms: bigint
}
type OutgoingRow = {
  id: string
  kind: OutgoingKind
  account_id: string
  source: string
  destination: string
  amount: bigint
  signature: string
  wire_base64: string
  last_valid_block_height: bigint
  state: OutgoingState
  created_at_ms: bigint
  resolved_at_ms: bigint | null
}

const toAddress = (row: DepositAddressRow): DepositAddressRecord => ({
  accountId: row.account_id,
  address: row.address,
  seed: row.seed,
  createdAtMs: Number(row.created_at_ms),
})
const toDeposit = (row: DepositRow): ChainDepositRecord => ({
  signature: row.signature,
  instructionIndex: Number(row.instruction_index),
  accountId: row.account_id,
  address: row.address,
  amount: BigInt(row.amount),
  transferId: row.transfer_id,
  creditedAtMs: Number(row.credited_at_ms),
})
const toOutgoing = (row: OutgoingRow): OutgoingRecord => ({
  id: row.id,
  kind: row.kind,
  accountId: row.account_id,
  source: row.source,
  destination: row.destination,
  amount: BigInt(row.amount),
  signature: row.signature,
  wireBase64: row.wire_base64,
  lastValidBlockHeight: BigInt(row.last_valid_block_height),
  state: row.state,
  createdAtMs: Number(row.created_at_ms),
  resolvedAtMs: row.resolved_at_ms === null ? null : Number(row.resolved_at_ms),
})

export function createChainStore(driver: SqlDriver, ledger: LedgerStore): ChainStore {
  const outgoing = async (executor: SqlExecutor, id: string) => {
    const [row] = await executor.query<OutgoingRow>('SELECT * FROM chain_outgoing WHERE id = $1', [id])
    return row && toOutgoing(row)
  }
  return {
    async getDepositAddress(accountId) {
      const [row] = await driver.query<DepositAddressRow>(
        'SELECT * FROM chain_deposit_addresses WHERE account_id = $1',
        [accountId],
      )
      return row && toAddress(row)
    },
    async putDepositAddress(record) {
      await driver.execute(
        `INSERT INTO chain_deposit_addresses (account_id, address, seed, created_at_ms) VALUES ($1, $2, $3, $4)
         ON CONFLICT (account_id) DO NOTHING`,
        [record.accountId, record.address, record.seed, record.createdAtMs],
      )
      return (await this.getDepositAddress(record.accountId))!
    },
    async depositAddressesOf(addresses) {
      if (addresses.length === 0) return []
      const rows = await driver.query<DepositAddressRow>(
        'SELECT * FROM chain_deposit_addresses WHERE address = ANY ($1)',
        [addresses],
      )
      return rows.map(toAddress)
    },
    async creditDeposit(deposit, transfer) {
      const [result] = await ledger.createTransfersWith([transfer], deposit.creditedAtMs, async (tx) => {
        await tx.execute(
          `INSERT INTO chain_deposits (signature, instruction_index, account_id, address, amount, transfer_id, credited_at_ms)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`,
          [
            deposit.signature,
            deposit.instructionIndex,
            deposit.accountId,
            deposit.address,
            deposit.amount,
            deposit.transferId,
            deposit.creditedAtMs,
          ],
        )
      })
      return result!
    },
    async listDeposits(signature) {
      const rows = await driver.query<DepositRow>(
        'SELECT * FROM chain_deposits WHERE signature = $1 ORDER BY instruction_index',
        [signature],
      )
      return rows.map(toDeposit)
    },
    async putOutgoing(record) {
      await driver.execute(
        `INSERT INTO chain_outgoing (id, kind, account_id, source, destination, amount, signature, wire_base64,
           last_valid_block_height, state, created_at_ms, resolved_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (id) DO NOTHING`,
        [
          record.id,
          record.kind,
          record.accountId,
          record.source,
          record.destination,
          record.amount,
          record.signature,
          record.wireBase64,
          record.lastValidBlockHeight,
          record.state,
          record.createdAtMs,
          record.resolvedAtMs,
        ],
      )
      return (await outgoing(driver, record.id))!
    },
    getOutgoing: (id) => outgoing(driver, id),
    async listUnresolved(limit) {
      const rows = await driver.query<OutgoingRow>(
        `SELECT * FROM chain_outgoing WHERE state = 'signed' ORDER BY created_at_ms, id LIMIT $1`,
        [limit],
      )
      return rows.map(toOutgoing)
    },
    async resolveOutgoing(id, state, nowMs, batch) {
      let changed = false
      const mark = async (tx: SqlExecutor) => {
        changed =
          (await tx.execute(
            `UPDATE chain_outgoing SET state = $2, resolved_at_ms = $3 WHERE id = $1 AND state = 'signed'`,
            [id, state, nowMs],
          )) === 1
      }
      if (batch.length === 0) await driver.transaction(mark)
      else {
        const results = await ledger.createTransfersWith(batch, nowMs, mark)
        // Another coordinator resolving the same transaction the same way first is no refusal.
        const sameWay: readonly string[] =
          state === 'landed'
            ? ['ok', 'exists', 'pending_transfer_already_posted']
            : ['ok', 'exists', 'pending_transfer_already_voided', 'pending_transfer_expired']
        const refused = results.find((result) => !sameWay.includes(result))
        if (refused) throw new Error(`the ledger refused to resolve ${id}: ${refused}`)
      }
      return changed
    },
    async depositBooks() {
      const rows = await driver.query<{
        account_id: string
        address: string
        credited: bigint
        swept: bigint
        unresolved: bigint
      }>(
        `SELECT a.account_id, a.address,
           COALESCE((SELECT sum(d.amount) FROM chain_deposits d WHERE d.address = a.address), 0)::bigint AS credited,
           COALESCE((SELECT sum(o.amount) FROM chain_outgoing o
                      WHERE o.source = a.address AND o.kind = 'sweep' AND o.state = 'landed'), 0)::bigint AS swept,
           (SELECT count(*) FROM chain_outgoing o
             WHERE o.source = a.address AND o.kind = 'sweep' AND o.state = 'signed')::bigint AS unresolved
         FROM chain_deposit_addresses a ORDER BY a.account_id`,
      )
      return rows.map((row) => ({
        accountId: row.account_id,
        address: row.address,
        credited: BigInt(row.credited),
        sweptLanded: BigInt(row.swept),
        sweepsUnresolved: Number(row.unresolved),
      }))
    },
    async withdrawalsInFlight() {
      const [row] = await driver.query<{ count: bigint; amount: bigint }>(
        `SELECT count(*)::bigint AS count, COALESCE(sum(amount), 0)::bigint AS amount
         FROM chain_outgoing WHERE kind = 'withdrawal' AND state = 'signed'`,
      )
      return { count: Number(row!.count), amount: BigInt(row!.amount) }
    },
  }
}
