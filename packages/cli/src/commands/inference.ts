import type { InferenceReceipt } from '@gpumesh/protocol'
import type { Command } from 'commander'
import { clientFrom, UsageError, type ConnectionFlags } from '../credentials.ts'
import { printJson, printTable } from '../output.ts'
import { connectionOptions } from './account.ts'

// `gpumesh inference`: what is served and what it cost. The requests themselves go through any OpenAI client
// pointed at the coordinator's /v1 (see docs/inference.md).

/** Receipts per request: the coordinator's maximum. */
const receiptPageLimit = 500
/** Receipts one listing gathers at most, page by page; --cursor goes on from there. */
const maxReceiptsListed = 100_000
/** What GET /v1/inference/receipts returns as nextCursor: createdAtMs:id. */
const receiptCursorPattern = /^[0-9]{1,16}:[A-Za-z0-9_-]{1,64}$/

export function registerInferenceCommands(program: Command): void {
  const inference = program
    .command('inference')
    .description('models served by idle devices through the OpenAI-compatible gateway, and your receipts')
  connectionOptions(inference.command('models').description('the models being served now, with their prices'))
    .option('--json', 'machine-readable output')
    .action(async (flags: ConnectionFlags & { json?: boolean }) => {
      const served = await clientFrom(flags, false).servedModels()
      if (flags.json) return printJson(served)
      printTable(
        ['model', 'tasks', 'replicas', 'context', 'GMT/M input', 'GMT/M output'],
        served.data.map((model) => [
          model.id,
          model.tasks.join(','),
          String(model.replicas),
          String(model.context_tokens),
          model.pricing.input_per_million_gmt,
          model.pricing.output_per_million_gmt,
        ]),
      )
    })
  connectionOptions(inference.command('receipts').description('your inference requests, newest first'))
    .option(
      '--limit <n>',
      `how many (default 50, at most ${maxReceiptsListed}); pages of 500 are fetched`,
      '50',
    )
    .option('--cursor <cursor>', 'start after this receipt: the cursor a previous listing printed')
    .option('--json', 'machine-readable output')
    .action(async (flags: ConnectionFlags & { limit: string; cursor?: string; json?: boolean }) => {
      const limit = Number(flags.limit)
      if (!Number.isInteger(limit) || limit < 1 || limit > maxReceiptsListed)
        throw new UsageError(`--limit must be 1 to ${maxReceiptsListed}`)
      if (flags.cursor !== undefined && !receiptCursorPattern.test(flags.cursor))
        throw new UsageError(
          `--cursor must be a cursor a previous listing printed (createdAtMs:id), not ${flags.cursor}`,
        )
      const client = clientFrom(flags, true)
      const receipts: InferenceReceipt[] = []
      let cursor = flags.cursor ?? null
      do {
        const page = await client.inferenceReceipts({
          limit: Math.min(receiptPageLimit, limit - receipts.length),
          ...(cursor === null ? {} : { cursor }),
        })
        receipts.push(...page.receipts)
        cursor = page.nextCursor
      } while (cursor !== null && receipts.length < limit)
      if (flags.json) return printJson({ receipts, nextCursor: cursor })
      printTable(
        ['receipt', 'when', 'model', 'tokens in/out', 'GMT', 'device'],
        receipts.map((receipt) => [
          receipt.id,
          new Date(receipt.createdAtMs).toISOString().slice(0, 19).replace('T', ' '),
          receipt.model,
          `${receipt.promptTokens}/${receipt.completionTokens}`,
          receipt.amountGmt,
          receipt.deviceId,
        ]),
      )
      if (cursor !== null) process.stdout.write(`more: gpumesh inference receipts --cursor ${cursor}\n`)
    })
  connectionOptions(
    inference.command('receipt <id>').description('one receipt, with the ledger transfers that charged it'),
  ).action(async (id: string, flags: ConnectionFlags) => {
    printJson(await clientFrom(flags, true).inferenceReceipt(id))
  })
  connectionOptions(
    inference
      .command('serve <device-id>')
      .description('opt one of your devices in or out of serving models while idle (suppliers)'),
  )
    .option('--off', 'stop serving models on it')
    .option('--min-price <usd>', 'lowest price per GPU-hour it serves for (default: its rental price)')
    .action(async (deviceId: string, flags: ConnectionFlags & { off?: boolean; minPrice?: string }) => {
      const view = await clientFrom(flags, true).setDeviceServing(deviceId, {
        enabled: !flags.off,
        ...(flags.minPrice === undefined ? {} : { minPricePerGpuHourUsd: flags.minPrice }),
      })
      printJson(view)
    })
}
