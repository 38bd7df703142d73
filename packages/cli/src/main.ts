#!/usr/bin/env node
import { GpumeshError, ValidationError } from '@gpumesh/core'
import { GpumeshApiError } from '@gpumesh/sdk'
import { Command, CommanderError } from 'commander'
import { registerAccountCommands } from './commands/account.ts'
import { registerBenchCommand } from './commands/bench.ts'
import { registerClusterCommands } from './commands/cluster.ts'
import { registerCoordinatorCommands } from './commands/coordinator.ts'
import {
  registerEarningsCommands,
  registerLedgerCommands,
  registerWalletCommands,
} from './commands/ledger.ts'
import { registerJobCommands } from './commands/job.ts'
import { registerOfferCommands } from './commands/offers.ts'
import { registerPricingCommands } from './commands/pricing.ts'
import { registerModelCommands } from './commands/models.ts'
import { registerInferenceCommands } from './commands/inference.ts'
import { registerRewardCommands } from './commands/rewards.ts'
import { registerUpCommand } from './commands/up.ts'
import { registerWorkerCommands } from './commands/worker.ts'
import { UsageError } from './credentials.ts'

const program = new Command()
  .name('gpumesh')
  .description('gpumesh: rent GPUs from a decentralized network, or earn from yours')
  .version('0.1.0')
  .showHelpAfterError('(run with --help for usage)')
  .exitOverride()

registerUpCommand(program)
registerCoordinatorCommands(program)
registerWorkerCommands(program)
registerAccountCommands(program)
registerOfferCommands(program)
registerBenchCommand(program)
registerClusterCommands(program)
registerJobCommands(program)
registerLedgerCommands(program)
registerWalletCommands(program)
registerEarningsCommands(program)
registerPricingCommands(program)
registerRewardCommands(program)
registerModelCommands(program)
registerInferenceCommands(program)

try {
  await program.parseAsync(process.argv)
} catch (error) {
  process.exitCode = report(error)
}

/** Prints what went wrong and how to fix it; returns the exit code. */
function report(error: unknown): number {
  if (error instanceof CommanderError) return error.exitCode
  if (error instanceof ValidationError) {
    process.stderr.write(`error: ${error.message}\n`)
    for (const issue of error.issues.slice(1)) process.stderr.write(`  ${issue.field}: ${issue.message}\n`)
    return 2
  }
  if (error instanceof UsageError) {
    process.stderr.write(`error: ${error.message}\n`)
    return 2
  }
  if (error instanceof GpumeshApiError) {
    process.stderr.write(`error: ${error.message} [${error.code}, HTTP ${error.status}]\n`)
    const issues = error.details['issues'] as { field: string; message: string }[] | undefined
    for (const issue of issues ?? []) process.stderr.write(`  ${issue.field}: ${issue.message}\n`)
    if (error.status === 401) process.stderr.write('hint: check your API key (gpumesh login) or create one\n')
    return 1
  }
  if (error instanceof GpumeshError) {
    process.stderr.write(`error: ${error.message} [${error.code}]\n`)
    return 1
  }
  const systemError = error as { code?: string; address?: string; port?: number; cause?: { code?: string } }
  if (systemError.code === 'EADDRINUSE') {
    process.stderr.write(
      `error: ${systemError.address}:${systemError.port} is already in use: pass another --port\n`,
    )
    return 1
  }
  if (systemError.code === 'ECONNREFUSED' && systemError.port !== undefined) {
    process.stderr.write(
      `error: cannot reach ${systemError.address}:${systemError.port} (connection refused): is the database running, and is DATABASE_URL right?\n`,
    )
    return 1
  }
  if (error instanceof TypeError && error.message === 'fetch failed') {
    const cause = (systemError.cause as { code?: string; message?: string } | undefined) ?? {}
    process.stderr.write(
      `error: cannot reach the coordinator (${cause.code ?? cause.message ?? 'network error'}): is it running, and is --coordinator right?\n`,
    )
    return 1
  }
  process.stderr.write(`error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`)
  return 1
}
