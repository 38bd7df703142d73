import type { Command } from 'commander'
import { clientFrom, type ConnectionFlags } from '../credentials.ts'
import { printJson } from '../output.ts'
import { connectionOptions } from './account.ts'

export function registerLedgerCommands(program: Command): void {
  const ledger = program.command('ledger').description('the double-entry ledger of the network token (GMT)')
  connectionOptions(
    ledger
      .command('verify')
      .description(
        'recompute every balance from the transfers and compare with the stored totals (operators)',
      ),
  )
    .option('--json', 'machine-readable output')
    .action(async (flags: ConnectionFlags & { json?: boolean }) => {
      const verification = await clientFrom(flags, true).verifyLedger()
      if (!verification.ok) process.exitCode = 1
      if (flags.json) return printJson(verification)
      const lines = [
        `${verification.ok ? 'ledger verified' : 'LEDGER DOES NOT VERIFY'}: ${verification.accounts} accounts, ${verification.transfers} transfers, ${verification.tookMs} ms`,
        `  sum of posted balances ${verification.postedSum}, of pending ${verification.pendingSum} (both must be 0)`,
        ...(verification.mismatched.length > 0
          ? [`  totals differ from the transfers: ${verification.mismatched.join(', ')}`]
          : []),
        ...(verification.overdrawn.length > 0 ? [`  overdrawn: ${verification.overdrawn.join(', ')}`] : []),
      ]
      process.stdout.write(`${lines.join('\n')}\n`)
    })
}
