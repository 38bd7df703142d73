import { setTimeout as sleep } from 'node:timers/promises'
import { formatGmtUnits, parseGmtToUnits, walletEntryKinds, type WalletEntryKind } from '@gpumesh/core'
import type { HeldFor, WalletView } from '@gpumesh/protocol'
import type { Command } from 'commander'
import { clientFrom, UsageError, type ConnectionFlags } from '../credentials.ts'
import { printJson, printTable } from '../output.ts'
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
    .option('--chain', "also compare what the ledger says the vault holds with the chain's balances")
    .action(async (flags: ConnectionFlags & { json?: boolean; chain?: boolean }) => {
      if (flags.chain) return verifyChain(flags)
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

const isWalletEntryKind = (text: string): text is WalletEntryKind =>
  (walletEntryKinds as readonly string[]).includes(text)

/** What a hold is for, in words: "cluster cl_…", "inference requests", "a withdrawal". */
export function heldForText(heldFor: HeldFor): string {
  if (heldFor.type === 'cluster') return `cluster ${heldFor.id}`
  if (heldFor.type === 'inference') return 'inference requests'
  return heldFor.id ? `withdrawal to ${heldFor.id}` : 'a withdrawal'
}

export function registerWalletCommands(program: Command): void {
  const wallet = program.command('wallet').description('your GMT: balance, deposits, withdrawals, history')
  const show = (view: WalletView) =>
    process.stdout.write(
      `balance ${view.balanceGmt} GMT, available ${view.availableGmt} GMT, held ${view.heldGmt} GMT${
        view.holds.length > 0
          ? ` (${view.holds.map((hold) => `${hold.amountGmt} for ${heldForText(hold.heldFor)}`).join(', ')})`
          : ''
      }\n`,
    )
  connectionOptions(wallet.command('balance').description('what you hold and can spend'))
    .option('--json', 'machine-readable output')
    .action(async (flags: ConnectionFlags & { json?: boolean }) => {
      const view = await clientFrom(flags, true).wallet()
      if (flags.json) return printJson(view)
      show(view)
    })
  connectionOptions(
    wallet
      .command('deposit')
      .description(
        'take test GMT from the faucet of a development network (gpumesh up), or deposit on chain (--chain)',
      ),
  )
    .option('--amount <gmt>', 'GMT from the faucet, e.g. 100 or 12.5')
    .option('--request-id <id>', 'makes a retry safe: the same id never deposits twice')
    .option('--chain', 'print your deposit address on chain and wait until a transfer to it is credited')
    .option(
      '--signature <sig>',
      'with --chain: the transaction that paid it (otherwise the address is watched)',
    )
    .option('--timeout <seconds>', 'with --chain: give up waiting after this long (default 900)')
    .action(async (flags: DepositFlags) => {
      if (flags.chain) return depositOnChain(flags)
      if (flags.amount === undefined) throw new UsageError('--amount is required (or --chain)')
      const receipt = await clientFrom(flags, true).claimFaucet({
        amountGmt: gmtFlag('--amount', flags.amount),
        ...(flags.requestId ? { requestId: flags.requestId } : {}),
      })
      process.stdout.write(`deposited (transfer ${receipt.transferId})\n`)
      show(receipt.wallet)
    })
  connectionOptions(wallet.command('withdraw').description('send GMT out through the settlement adapter'))
    .requiredOption('--amount <gmt>', 'GMT, e.g. 100 or 12.5')
    .option('--to <address>', 'on a chain-settled network: the Solana address to pay')
    .option('--request-id <id>', 'makes a retry safe: the same id never withdraws twice')
    .action(async (flags: ConnectionFlags & { amount: string; requestId?: string; to?: string }) => {
      if (flags.to !== undefined && !solanaAddressPattern.test(flags.to))
        throw new UsageError(`--to must be a base58 Solana address (got ${flags.to})`)
      const receipt = await clientFrom(flags, true).withdraw({
        amountGmt: gmtFlag('--amount', flags.amount),
        ...(flags.requestId ? { requestId: flags.requestId } : {}),
        ...(flags.to ? { to: flags.to } : {}),
      })
      process.stdout.write(
        `withdrawn (transfer ${receipt.transferId}${receipt.signature ? `, signature ${receipt.signature}` : ''})\n`,
      )
      show(receipt.wallet)
    })
  connectionOptions(wallet.command('history').description('every transfer in and out of your wallet'))
    .option('--limit <n>', 'newest this many (default 100)')
    .option('--kind <kinds>', `only these kinds, comma-separated: ${walletEntryKinds.join(', ')}`)
    .option('--json', 'machine-readable output')
    .action(async (flags: ConnectionFlags & { limit?: string; kind?: string; json?: boolean }) => {
      const limit = flags.limit === undefined ? undefined : Number(flags.limit)
      if (limit !== undefined && (!Number.isInteger(limit) || limit < 1 || limit > 500))
        throw new UsageError('--limit must be an integer from 1 to 500')
      const unknownKinds = flags.kind?.split(',').filter((kind) => !isWalletEntryKind(kind))
      if (unknownKinds && unknownKinds.length > 0)
        throw new UsageError(
          `--kind: ${unknownKinds.join(', ')} is not a kind; the kinds are ${walletEntryKinds.join(', ')}`,
        )
      const history = await clientFrom(flags, true).walletHistory({
        ...(limit === undefined ? {} : { limit }),
        ...(flags.kind === undefined ? {} : { kind: flags.kind }),
      })
      if (flags.json) return printJson(history)
      printTable(
        ['when', 'kind', 'amount GMT', 'what', 'counterparty', 'transfer'],
        history.transfers.map((line) => [
          new Date(line.createdAtMs).toISOString().replace('T', ' ').slice(0, 19),
          line.kind,
          line.amountGmt,
          line.heldFor
            ? `${line.code}: ${heldForText(line.heldFor)}`
            : line.reference
              ? `${line.code}: ${line.reference}`
              : line.code,
          line.counterparty,
          line.id,
        ]),
      )
      // Holds set funds aside and releases give them back: only spend lines are money spent.
      const spentUnits = history.transfers
        .filter((line) => line.kind === 'spend')
        .reduce((sum, line) => sum + (parseGmtToUnits(line.amountGmt.replace(/^-/, '')) ?? 0n), 0n)
      process.stdout.write(
        `spent ${formatGmtUnits(spentUnits)} GMT in these ${history.transfers.length} lines (holds and releases are not spending)\n`,
      )
    })
  connectionOptions(
    wallet
      .command('credit')
      .description("credit an account's wallet by hand (operators; recorded with the reason)"),
  )
    .requiredOption('--account <id>', 'account id (acc_...)')
    .requiredOption('--amount <gmt>', 'GMT')
    .requiredOption('--reason <text>', 'why: kept with the transfer')
    .option('--request-id <id>', 'makes a retry safe')
    .action(
      async (
        flags: ConnectionFlags & { account: string; amount: string; reason: string; requestId?: string },
      ) => {
        const receipt = await clientFrom(flags, true).creditAccount({
          accountId: flags.account,
          amountGmt: gmtFlag('--amount', flags.amount),
          reason: flags.reason,
          ...(flags.requestId ? { requestId: flags.requestId } : {}),
        })
        process.stdout.write(`credited ${flags.account} (transfer ${receipt.transferId})\n`)
        show(receipt.wallet)
      },
    )
}

export function registerEarningsCommands(program: Command): void {
  const earnings = program.command('earnings').description('what your devices earned, and collecting it')
  connectionOptions(
    earnings
      .command('show', { isDefault: true })
      .description('earnings per device, UTC day and source (rental, inference, reward)'),
  )
    .option('--days <n>', 'this many days back, today included (default 30)')
    .option('--device <id>', 'one device only')
    .option('--json', 'machine-readable output')
    .action(async (flags: ConnectionFlags & { days?: string; device?: string; json?: boolean }) => {
      const days = flags.days === undefined ? undefined : Number(flags.days)
      if (days !== undefined && (!Number.isInteger(days) || days < 1 || days > 366))
        throw new UsageError('--days must be an integer from 1 to 366')
      const view = await clientFrom(flags, true).earnings({
        ...(days === undefined ? {} : { days }),
        ...(flags.device ? { deviceId: flags.device } : {}),
      })
      if (flags.json) return printJson(view)
      printTable(
        ['day', 'device', 'source', 'GMT', 'transfers'],
        view.lines.map((line) => [
          line.day,
          line.deviceId ?? '-',
          line.source,
          line.amountGmt,
          line.transfers,
        ]),
      )
      process.stdout.write(
        `earned ${view.periodTotalGmt} GMT in the period; ${view.uncollectedGmt} GMT not yet collected (gpumesh earnings collect)\n` +
          'the transfers behind a line: gpumesh earnings transfers --day DAY --device ID\n',
      )
    })
  connectionOptions(
    earnings.command('transfers').description('the ledger transfers behind one line of the statement'),
  )
    .requiredOption('--day <yyyy-mm-dd>', 'UTC day')
    .option('--device <id>', 'device')
    .option('--source <source>', 'rental, inference or reward')
    .option('--json', 'machine-readable output')
    .action(
      async (flags: ConnectionFlags & { day: string; device?: string; source?: string; json?: boolean }) => {
        const list = await clientFrom(flags, true).earningsTransfers({
          day: flags.day,
          ...(flags.device ? { deviceId: flags.device } : {}),
          ...(flags.source ? { source: flags.source } : {}),
        })
        if (flags.json) return printJson(list)
        printTable(
          ['when', 'GMT', 'source', 'from', 'transfer'],
          list.transfers.map((line) => [
            new Date(line.createdAtMs).toISOString().replace('T', ' ').slice(0, 19),
            line.amountGmt,
            line.code,
            line.counterparty,
            line.id,
          ]),
        )
      },
    )
  connectionOptions(earnings.command('collect').description('move earnings into your wallet'))
    .option('--amount <gmt>', 'GMT (default: all of it)')
    .option('--request-id <id>', 'makes a retry safe: the same id never collects twice')
    .action(async (flags: ConnectionFlags & { amount?: string; requestId?: string }) => {
      const receipt = await clientFrom(flags, true).collectEarnings({
        ...(flags.amount === undefined ? {} : { amountGmt: gmtFlag('--amount', flags.amount) }),
        ...(flags.requestId ? { requestId: flags.requestId } : {}),
      })
      process.stdout.write(`collected (transfer ${receipt.transferId})\n`)
      process.stdout.write(
        `wallet: balance ${receipt.wallet.balanceGmt} GMT, available ${receipt.wallet.availableGmt} GMT\n`,
      )
    })
}

/** A positive GMT decimal, checked before any request. */
const solanaAddressPattern = /^[1-9A-HJ-NP-Za-km-z]{32,44}$/

type DepositFlags = ConnectionFlags & {
  amount?: string
  requestId?: string
  chain?: boolean
  signature?: string
  timeout?: string
}

/** Prints the deposit address, then asks the coordinator to look for a credit every few seconds, with progress. */
async function depositOnChain(flags: DepositFlags): Promise<void> {
  const timeoutS = flags.timeout === undefined ? 900 : Number(flags.timeout)
  if (!Number.isInteger(timeoutS) || timeoutS < 1 || timeoutS > 86_400)
    throw new UsageError('--timeout must be a whole number of seconds from 1 to 86400')
  const client = clientFrom(flags, true)
  const target = await client.depositAddress()
  process.stdout.write(
    `send GMT (mint ${target.mint}) to your deposit address:\n  ${target.address}\n` +
      `it is credited once the transfer is ${target.commitment}\n`,
  )
  const startedAt = Date.now()
  for (;;) {
    const report = await client.reportDeposit(flags.signature ? { signature: flags.signature } : {})
    const fresh = report.credits.filter((credit) => credit.newlyCredited || flags.signature)
    if (report.status === 'credited' && fresh.length > 0) {
      for (const credit of fresh)
        process.stdout.write(`credited ${credit.amountGmt} GMT (signature ${credit.signature})\n`)
      process.stdout.write(
        `balance ${report.wallet.balanceGmt} GMT, available ${report.wallet.availableGmt} GMT\n`,
      )
      return
    }
    const waitedS = Math.round((Date.now() - startedAt) / 1000)
    if (waitedS >= timeoutS) {
      process.stderr.write(`\nno deposit credited after ${waitedS} s; run this again to keep waiting\n`)
      process.exitCode = 1
      return
    }
    process.stderr.write(
      `\r${report.status === 'unconfirmed' ? 'seen, waiting for the chain to confirm' : 'waiting for a transfer'}… ${waitedS} s`,
    )
    await sleep(2_000)
  }
}

async function verifyChain(flags: ConnectionFlags & { json?: boolean }): Promise<void> {
  const verification = await clientFrom(flags, true).verifyChain()
  if (!verification.ok) process.exitCode = 1
  if (flags.json) return printJson(verification)
  process.stdout.write(
    `${verification.ok ? 'ledger and chain agree' : 'LEDGER AND CHAIN DISAGREE'}: the ledger says ${verification.ledgerGmt} GMT, ` +
      `the chain holds ${verification.chainGmt} GMT (vault ${verification.vaultAddress}: ${verification.vaultChainGmt}; ` +
      `${verification.depositAddresses} deposit addresses), ${verification.tookMs} ms\n`,
  )
  if (verification.mismatches.length > 0)
    printTable(
      ['kind', 'address', 'account', 'ledger GMT', 'chain GMT', 'detail'],
      verification.mismatches.map((mismatch) => [
        mismatch.kind,
        mismatch.address,
        mismatch.accountId ?? '-',
        mismatch.ledgerGmt,
        mismatch.chainGmt ?? '-',
        mismatch.detail,
      ]),
    )
}

function gmtFlag(flag: string, value: string): string {
  const units = parseGmtToUnits(value)
  if (units === null || units <= 0n)
    throw new UsageError(
      `${flag} must be a positive GMT amount with at most 6 decimals, e.g. 12.5 (got ${value})`,
    )
  return value.trim()
}
