import type { Command } from 'commander'
import { clientFrom, UsageError, type ConnectionFlags } from '../credentials.ts'
import { printJson, printTable } from '../output.ts'
import { connectionOptions } from './account.ts'

// `gpumesh inference`: what is served and what it cost. The requests themselves go through any OpenAI client
// pointed at the coordinator's /v1 (see docs/inference.md).

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
    .option('--limit <n>', 'how many (default 50)', '50')
    .option('--json', 'machine-readable output')
    .action(async (flags: ConnectionFlags & { limit: string; json?: boolean }) => {
      const limit = Number(flags.limit)
      if (!Number.isInteger(limit) || limit < 1 || limit > 500)
        throw new UsageError('--limit must be 1 to 500')
      const list = await clientFrom(flags, true).inferenceReceipts({ limit })
      if (flags.json) return printJson(list)
      printTable(
        ['receipt', 'when', 'model', 'tokens in/out', 'GMT', 'device'],
        list.receipts.map((receipt) => [
          receipt.id,
          new Date(receipt.createdAtMs).toISOString().slice(0, 19).replace('T', ' '),
          receipt.model,
          `${receipt.promptTokens}/${receipt.completionTokens}`,
          receipt.amountGmt,
          receipt.deviceId,
        ]),
      )
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
