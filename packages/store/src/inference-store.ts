import type { TransferRequest, TransferResult } from '@gpumesh/ledger'
import type { SqlDriver } from './driver.ts'
import type { LedgerStore } from './ledger-store.ts'

// Inference in the database: which devices their suppliers opted in to serve models, and each request's
// receipt. Receipts are written in the same transaction as the ledger transfers that charged them, so a
// receipt always traces to money that moved, and money never moves for a receipt that is not kept.

export type DeviceServingRecord = {
  readonly deviceId: string
  readonly enabled: boolean
  /** micro-USD per GPU-hour; null: the device's rental price is its floor. */
  readonly minPriceMicroUsd: bigint | null
}

export type InferenceReceiptRecord = {
  readonly id: string
  readonly accountId: string
  readonly apiKeyId: string
  readonly modelId: string
  /** name:version */
  readonly model: string
  readonly endpoint: string
  readonly deviceId: string
  readonly supplierAccountId: string
  readonly promptTokens: number
  readonly completionTokens: number
  readonly inputPerMillionUnits: bigint
  readonly outputPerMillionUnits: bigint
  readonly amountUnits: bigint
  readonly feeUnits: bigint
  readonly batchId: string
  /** The transfers that moved this request's money; null where none did (a request that cost nothing). */
  readonly supplierTransferId: string | null
  readonly feeTransferId: string | null
  readonly holdPostTransferId: string | null
  /** The id the gateway answered with (its x-request-id header and log lines); null on older receipts. */
  readonly requestId: string | null
  readonly createdAtMs: number
}

export type InferenceModelTotals = {
  readonly model: string
  readonly requests: number
  readonly promptTokens: number
  readonly completionTokens: number
  readonly spentUnits: bigint
  readonly supplierEarningsUnits: bigint
}

export type ArtifactRefusal = {
  readonly deviceId: string
  readonly model: string
  readonly path: string
  readonly expectedSha256: string
  readonly receivedSha256: string | null
  readonly atMs: number
}

export type InferenceStore = {
  setServing(record: DeviceServingRecord, nowMs: number): Promise<void>
  /** Opted-in devices' choices; with ids, only those devices'. */
  listServing(deviceIds?: readonly string[]): Promise<DeviceServingRecord[]>
  /** Charges a batch of finished requests: the transfers and their receipts commit together or not at all. */
  settle(
    transfers: readonly TransferRequest[],
    receipts: readonly InferenceReceiptRecord[],
    nowMs: number,
  ): Promise<TransferResult[]>
  getReceipt(id: string): Promise<InferenceReceiptRecord | undefined>
  /** A caller's receipts, newest first, after the cursor (createdAtMs, id) of the previous page. */
  listReceipts(
    accountId: string,
    limit: number,
    after?: { createdAtMs: number; id: string },
  ): Promise<InferenceReceiptRecord[]>
  modelTotals(): Promise<InferenceModelTotals[]>
  recordArtifactRefusal(refusal: ArtifactRefusal): Promise<void>
  listArtifactRefusals(limit: number): Promise<ArtifactRefusal[]>
}

type ReceiptRow = {
  id: string
  account_id: string
  api_key_id: string
  model_id: string
  model: string
  endpoint: string
  device_id: string
  supplier_account_id: string
  prompt_tokens: number
  completion_tokens: number
  input_per_million: bigint | string
  output_per_million: bigint | string
  amount: bigint | string
  fee: bigint | string
  batch_id: string
  supplier_transfer_id: string | null
  fee_transfer_id: string | null
  hold_post_transfer_id: string | null
  request_id: string | null
  created_at_ms: bigint | string
}

const toReceipt = (row: ReceiptRow): InferenceReceiptRecord => ({
  id: row.id,
  accountId: row.account_id,
  apiKeyId: row.api_key_id,
  modelId: row.model_id,
  model: row.model,
  endpoint: row.endpoint,
  deviceId: row.device_id,
  supplierAccountId: row.supplier_account_id,
  promptTokens: Number(row.prompt_tokens),
  completionTokens: Number(row.completion_tokens),
  inputPerMillionUnits: BigInt(row.input_per_million),
  outputPerMillionUnits: BigInt(row.output_per_million),
  amountUnits: BigInt(row.amount),
  feeUnits: BigInt(row.fee),
  batchId: row.batch_id,
  supplierTransferId: row.supplier_transfer_id,
  feeTransferId: row.fee_transfer_id,
  holdPostTransferId: row.hold_post_transfer_id,
  requestId: row.request_id,
  createdAtMs: Number(row.created_at_ms),
})

export function createInferenceStore(driver: SqlDriver, ledger: LedgerStore): InferenceStore {
  return {
    async setServing(record, nowMs) {
      await driver.execute(
        `INSERT INTO device_serving (device_id, enabled, min_price_micro_usd, updated_at_ms) VALUES ($1, $2, $3, $4)
         ON CONFLICT (device_id) DO UPDATE SET enabled = $2, min_price_micro_usd = $3, updated_at_ms = $4`,
        [record.deviceId, record.enabled, record.minPriceMicroUsd?.toString() ?? null, nowMs],
      )
    },

    async listServing(deviceIds) {
      const rows = await driver.query<{
        device_id: string
        enabled: boolean
        min_price_micro_usd: bigint | string | null
      }>(
        deviceIds
          ? 'SELECT device_id, enabled, min_price_micro_usd FROM device_serving WHERE device_id = ANY($1::text[])'
          : 'SELECT device_id, enabled, min_price_micro_usd FROM device_serving WHERE enabled',
        deviceIds ? [[...deviceIds]] : [],
      )
      return rows.map((row) => ({
        deviceId: row.device_id,
        enabled: row.enabled,
        minPriceMicroUsd: row.min_price_micro_usd === null ? null : BigInt(row.min_price_micro_usd),
      }))
    },

    settle(transfers, receipts, nowMs) {
      return ledger.createTransfersWith(transfers, nowMs, async (tx) => {
        if (receipts.length === 0) return
        // A batch retried after an unknown outcome finds its receipts stored: only new ones count in totals.
        const inserted = await tx.query<{
          model: string
          prompt_tokens: number
          completion_tokens: number
          amount: string
          fee: string
        }>(
          `INSERT INTO inference_receipts (id, account_id, api_key_id, model_id, model, endpoint, device_id,
             supplier_account_id, prompt_tokens, completion_tokens, input_per_million, output_per_million, amount,
             fee, batch_id, supplier_transfer_id, fee_transfer_id, hold_post_transfer_id, created_at_ms,
             request_id)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
             $8::text[], $9::int[], $10::int[], $11::bigint[], $12::bigint[], $13::bigint[], $14::bigint[],
             $15::text[], $16::text[], $17::text[], $18::text[], $19::bigint[], $20::text[])
           ON CONFLICT (id) DO NOTHING
           RETURNING model, prompt_tokens, completion_tokens, amount::text, fee::text`,
          [
            receipts.map((r) => r.id),
            receipts.map((r) => r.accountId),
            receipts.map((r) => r.apiKeyId),
            receipts.map((r) => r.modelId),
            receipts.map((r) => r.model),
            receipts.map((r) => r.endpoint),
            receipts.map((r) => r.deviceId),
            receipts.map((r) => r.supplierAccountId),
            receipts.map((r) => r.promptTokens),
            receipts.map((r) => r.completionTokens),
            receipts.map((r) => r.inputPerMillionUnits.toString()),
            receipts.map((r) => r.outputPerMillionUnits.toString()),
            receipts.map((r) => r.amountUnits.toString()),
            receipts.map((r) => r.feeUnits.toString()),
            receipts.map((r) => r.batchId),
            receipts.map((r) => r.supplierTransferId),
            receipts.map((r) => r.feeTransferId),
            receipts.map((r) => r.holdPostTransferId),
            receipts.map((r) => String(r.createdAtMs)),
            receipts.map((r) => r.requestId),
          ],
        )
        const totals = new Map<
          string,
          { requests: number; prompt: number; completion: number; spent: bigint; earned: bigint }
        >()
        for (const row of inserted) {
          const total = totals.get(row.model) ?? {
            requests: 0,
            prompt: 0,
            completion: 0,
            spent: 0n,
            earned: 0n,
          }
          total.requests += 1
          total.prompt += Number(row.prompt_tokens)
          total.completion += Number(row.completion_tokens)
          total.spent += BigInt(row.amount)
          total.earned += BigInt(row.amount) - BigInt(row.fee)
          totals.set(row.model, total)
        }
        if (totals.size === 0) return
        const models = [...totals.keys()].sort()
        await tx.execute(
          `INSERT INTO inference_model_totals AS t (model, requests, prompt_tokens, completion_tokens, spent, supplier_earnings)
           SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[])
           ON CONFLICT (model) DO UPDATE SET requests = t.requests + excluded.requests,
             prompt_tokens = t.prompt_tokens + excluded.prompt_tokens,
             completion_tokens = t.completion_tokens + excluded.completion_tokens,
             spent = t.spent + excluded.spent, supplier_earnings = t.supplier_earnings + excluded.supplier_earnings`,
          [
            models,
            models.map((model) => String(totals.get(model)!.requests)),
            models.map((model) => String(totals.get(model)!.prompt)),
            models.map((model) => String(totals.get(model)!.completion)),
            models.map((model) => totals.get(model)!.spent.toString()),
            models.map((model) => totals.get(model)!.earned.toString()),
          ],
        )
      })
    },

    async getReceipt(id) {
      const rows = await driver.query<ReceiptRow>('SELECT * FROM inference_receipts WHERE id = $1', [id])
      return rows[0] && toReceipt(rows[0])
    },

    async listReceipts(accountId, limit, after) {
      const rows = after
        ? await driver.query<ReceiptRow>(
            `SELECT * FROM inference_receipts WHERE account_id = $1 AND (created_at_ms, id) < ($2, $3)
             ORDER BY created_at_ms DESC, id DESC LIMIT $4`,
            [accountId, after.createdAtMs, after.id, limit],
          )
        : await driver.query<ReceiptRow>(
            `SELECT * FROM inference_receipts WHERE account_id = $1 ORDER BY created_at_ms DESC, id DESC LIMIT $2`,
            [accountId, limit],
          )
      return rows.map(toReceipt)
    },

    async modelTotals() {
      const rows = await driver.query<{
        model: string
        requests: string
        prompt_tokens: string
        completion_tokens: string
        spent: string
        supplier_earnings: string
      }>(
        `SELECT model, requests::text, prompt_tokens::text, completion_tokens::text, spent::text,
           supplier_earnings::text FROM inference_model_totals ORDER BY model`,
      )
      return rows.map((row) => ({
        model: row.model,
        requests: Number(row.requests),
        promptTokens: Number(row.prompt_tokens),
        completionTokens: Number(row.completion_tokens),
        spentUnits: BigInt(row.spent),
        supplierEarningsUnits: BigInt(row.supplier_earnings),
      }))
    },

    async recordArtifactRefusal(refusal) {
      await driver.execute(
        `INSERT INTO artifact_refusals (device_id, model, path, expected_sha256, received_sha256, at_ms)
         VALUES ($1, $2, $3, $4, $5, $6)`,
        [
          refusal.deviceId,
          refusal.model,
          refusal.path,
          refusal.expectedSha256,
          refusal.receivedSha256,
          refusal.atMs,
        ],
      )
    },

    async listArtifactRefusals(limit) {
      const rows = await driver.query<{
        device_id: string
        model: string
        path: string
        expected_sha256: string
        received_sha256: string | null
        at_ms: string | bigint
      }>('SELECT * FROM artifact_refusals ORDER BY id DESC LIMIT $1', [limit])
      return rows.map((row) => ({
        deviceId: row.device_id,
        model: row.model,
        path: row.path,
        expectedSha256: row.expected_sha256,
        receivedSha256: row.received_sha256,
        atMs: Number(row.at_ms),
      }))
    },
  }
}
