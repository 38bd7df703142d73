import type { RewardPayoutView } from '@gpumesh/protocol'
import type { Command } from 'commander'
import { clientFrom, UsageError, type ConnectionFlags } from '../credentials.ts'
import { printJson, printTable } from '../output.ts'
import { connectionOptions } from './account.ts'

// Epoch rewards are public: none of these commands needs an API key.

const when = (ms: number) => new Date(ms).toISOString().replace('T', ' ').slice(0, 16)
const percent = (ppm: number) => `${(ppm / 10_000).toFixed(1)}%`

function epochNumber(text: string): number {
  const epoch = Number(text)
  if (!Number.isInteger(epoch) || epoch < 0)
    throw new UsageError(`EPOCH must be a whole number, got "${text}"`)
  return epoch
}

function payoutRows(payouts: readonly RewardPayoutView[], first: 'device' | 'epoch') {
  return payouts.map((payout) => [
    first === 'device' ? payout.deviceId : payout.epoch,
    payout.pool,
    payout.eligible ? 'yes' : `no: ${payout.ineligibleReasonCode}`,
    percent(payout.factors.uptimePpm),
    percent(payout.factors.hiredPpm),
    payout.factors.bandwidthTier ?? 'unmeasured',
    payout.factors.hardwareMilli,
    payout.share,
    payout.amountGmt,
  ])
}
const payoutHead = (first: string) => [
  first,
  'pool',
  'eligible',
  'uptime',
  'hired',
  'bandwidth',
  'hardware',
  'share',
  'GMT',
]

export function registerRewardCommands(program: Command): void {
  const rewards = program
    .command('rewards')
    .description(
      'epoch rewards: what each epoch emitted and paid, and to which devices (see docs/rewards.md)',
    )
  connectionOptions(rewards.command('epochs').description('closed epochs, newest first'))
    .option('--limit <n>', 'how many (default 24)')
    .option('--json', 'machine-readable output')
    .action(async (flags: ConnectionFlags & { limit?: string; json?: boolean }) => {
      const limit = flags.limit === undefined ? 24 : Number(flags.limit)
      if (!Number.isInteger(limit) || limit < 1 || limit > 500)
        throw new UsageError('--limit must be from 1 to 500')
      const list = await clientFrom(flags, false).rewardEpochs({ limit })
      if (flags.json) return printJson(list)
      printTable(
        ['epoch', 'ended (UTC)', 'emitted GMT', 'paid GMT', 'considered', 'eligible', 'paid'],
        list.epochs.map((epoch) => [
          epoch.epoch,
          when(epoch.endsAtMs),
          epoch.emissionGmt,
          epoch.paidGmt,
          epoch.devicesConsidered,
          epoch.devicesEligible,
          epoch.devicesPaid,
        ]),
      )
    })
  connectionOptions(rewards.command('show <epoch>').description("one epoch's payouts with their factors"))
    .option('--limit <n>', 'payouts shown, largest first (default 50)')
    .option('--json', 'machine-readable output')
    .action(async (epochText: string, flags: ConnectionFlags & { limit?: string; json?: boolean }) => {
      const limit = flags.limit === undefined ? 50 : Number(flags.limit)
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
        throw new UsageError('--limit must be from 1 to 1000')
      const detail = await clientFrom(flags, false).rewardEpoch(epochNumber(epochText), { limit })
      if (flags.json) return printJson(detail)
      const { epoch } = detail
      process.stdout.write(
        `epoch ${epoch.epoch}: ${when(epoch.startsAtMs)} to ${when(epoch.endsAtMs)} UTC, policy ${epoch.policyVersion}\n` +
          `emitted ${epoch.emissionGmt} GMT, paid ${epoch.paidGmt} GMT to ${epoch.devicesPaid} of ${epoch.devicesConsidered} devices\n` +
          epoch.pools
            .map(
              (pool) =>
                `  ${pool.pool} pool: ${pool.shareBp / 100}% of the emission, total score ${pool.totalScore}`,
            )
            .join('\n') +
          '\n',
      )
      printTable(payoutHead('device'), payoutRows(detail.payouts, 'device'))
    })
  connectionOptions(rewards.command('device <id>').description("a device's reward in each epoch, with why"))
    .option('--json', 'machine-readable output')
    .action(async (deviceId: string, flags: ConnectionFlags & { json?: boolean }) => {
      const list = await clientFrom(flags, false).deviceRewards(deviceId)
      if (flags.json) return printJson(list)
      printTable(payoutHead('epoch'), payoutRows(list.payouts, 'epoch'))
      for (const payout of list.payouts.filter((p) => !p.eligible).slice(0, 5))
        process.stdout.write(`epoch ${payout.epoch}: ${payout.ineligibleReason}\n`)
    })
}
