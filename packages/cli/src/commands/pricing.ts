import {
  createValidator,
  DevicePricingBody,
  QuoteQuery,
  type DeviceQuoteReply,
  type PriceFactorView,
} from '@gpumesh/protocol'
import type { Command } from 'commander'
import { clientFrom, UsageError, type ConnectionFlags } from '../credentials.ts'
import { printJson, printTable } from '../output.ts'
import { connectionOptions } from './account.ts'
import { clusterRequestFrom, clusterRequestOptions, parsePositiveNumber, printPlan } from './cluster.ts'

const quoteQueryValidator = createValidator(QuoteQuery, 'quote flags')
const devicePricingValidator = createValidator(DevicePricingBody, 'pricing flags')

type Flags = ConnectionFlags & Record<string, string | boolean | undefined>

/** `gpumesh quote` (renters) and `gpumesh device quote | pricing` (suppliers). */
export function registerPricingCommands(program: Command): void {
  connectionOptions(
    clusterRequestOptions(
      program
        .command('quote')
        .description(
          'price a cluster: its nodes, the total, and every factor of each price (no account needed)',
        ),
    ),
  )
    .option('--json', 'machine-readable output')
    .action(async (flags: Flags) => {
      const query = quoteQueryValidator.parse(clusterRequestFrom(flags))
      const plan = await clientFrom(flags, false).quote(query)
      printPlan(plan, flags['json'] === true)
      if (flags['json'] || !plan.quote) return
      process.stdout.write(
        `\n${plan.quote.totalGmt} GMT held at deploy (${plan.quote.pricePerHourGmt} GMT/h at ${plan.quote.gmtPerUsd} GMT per USD); pricing policy ${plan.quote.policyVersion}\n`,
      )
      for (const node of plan.quote.nodes) {
        process.stdout.write(
          `\n${node.deviceId}: $${node.pricePerGpuHourUsd}/GPU-h (${node.pricingMode}), $${node.pricePerHourUsd}/h\n`,
        )
        printFactors(node.factors)
      }
    })

  const device = program.commands.find((command) => command.name() === 'device')
  if (!device) throw new Error('register the device commands before the pricing commands')
  connectionOptions(
    device
      .command('quote')
      .description("one of your devices: the price renters see and why, beside automatic pricing's")
      .argument('<id>', 'device id'),
  )
    .option('--hours <hours>', 'rental length the price is for (default 1)')
    .option('--json', 'machine-readable output')
    .action(async (id: string, flags: Flags) => {
      const hours =
        flags['hours'] === undefined ? undefined : parsePositiveNumber('--hours', String(flags['hours']))
      printDeviceQuote(await clientFrom(flags, true).deviceQuote(id, hours), flags['json'] === true)
    })
  connectionOptions(
    device
      .command('pricing')
      .description('set how one of your devices is priced')
      .argument('<id>', 'device id'),
  )
    .option('--fixed <usd>', 'a fixed price in USD per GPU-hour (per node-hour without GPUs)')
    .option('--auto', "the network's pricing engine sets the price (docs/pricing.md)")
    .option('--min <usd>', 'with --auto: never below this, in USD per GPU-hour')
    .option('--unlist', 'take the device off the marketplace (a fixed price of none)')
    .option('--json', 'machine-readable output')
    .action(async (id: string, flags: Flags) => {
      const chosen = ['fixed', 'auto', 'unlist'].filter((name) => flags[name] !== undefined)
      if (chosen.length !== 1) throw new UsageError('give exactly one of --fixed <usd>, --auto or --unlist')
      if (flags['min'] !== undefined && !flags['auto']) throw new UsageError('--min goes with --auto')
      const body = devicePricingValidator.parse(
        flags['auto']
          ? {
              mode: 'auto',
              ...(flags['min'] === undefined ? {} : { minimumPricePerGpuHourUsd: flags['min'] }),
            }
          : { mode: 'fixed', pricePerGpuHourUsd: flags['unlist'] ? null : flags['fixed'] },
      )
      printDeviceQuote(await clientFrom(flags, true).setDevicePricing(id, body), flags['json'] === true)
    })
}

function printDeviceQuote(quote: DeviceQuoteReply, json: boolean): void {
  if (json) return printJson(quote)
  const asking = quote.askingPricePerGpuHourUsd
  process.stdout.write(
    `${quote.deviceId}: ${quote.pricingMode} pricing${asking === null ? '' : quote.pricingMode === 'fixed' ? ` at $${asking}` : `, minimum $${asking}`}\n`,
  )
  if (quote.pricePerGpuHourUsd === null) process.stdout.write(`not listed: ${quote.unpricedReason}\n`)
  else {
    process.stdout.write(
      `renters are quoted $${quote.pricePerGpuHourUsd}/GPU-h for ${quote.commitmentHours} h\n`,
    )
    printFactors(quote.factors)
  }
  if (quote.pricingMode === 'fixed') {
    process.stdout.write(
      `\nautomatic pricing would quote ${quote.automatic.pricePerGpuHourUsd === null ? 'nothing' : `$${quote.automatic.pricePerGpuHourUsd}/GPU-h`}:\n`,
    )
    printFactors(quote.automatic.factors)
  }
}

function printFactors(factors: readonly PriceFactorView[]): void {
  printTable(
    ['factor', '×', '$/GPU-h after', 'why'],
    factors.map((factor) => [factor.factor, factor.multiplier ?? '', factor.priceAfterUsd, factor.detail]),
  )
}
