import { ClusterRequestBody, createValidator } from '@gpumesh/protocol'
import type { Command } from 'commander'
import { clientFrom, UsageError, type ConnectionFlags } from '../credentials.ts'
import { gib, percent, printJson, printTable } from '../output.ts'
import { connectionOptions } from './account.ts'

const clusterRequestValidator = createValidator(ClusterRequestBody, 'cluster flags')
const numeric = (value: string | undefined) =>
  value === undefined ? undefined : Number.isNaN(Number(value)) ? value : Number(value)

export function registerClusterCommands(program: Command): void {
  const cluster = program.command('cluster').description("GPU clusters on several suppliers' machines")
  connectionOptions(
    cluster
      .command('create')
      .description('ask for a cluster; --dry-run shows where it would go and what it costs'),
  )
    .option('--dry-run', 'only answer whether it can be placed, where, and at what price')
    .option('--gpus <spec>', 'model and total GPUs, e.g. A100:8, or a number of GPUs')
    .option('--nodes <n>', 'number of nodes')
    .option('--gpus-per-node <n>', 'GPUs on each node')
    .option('--gpu <model>', 'GPU model, e.g. h100, a100, "RTX 4090"')
    .option('--min-vram-gb <gb>', 'VRAM per GPU, at least')
    .option('--region <region>', 'region label')
    .option('--country <code>', 'ISO country code')
    .option('--min-bandwidth <tier>', 'low | medium | high')
    .option('--max-price <usd>', 'USD per GPU-hour, at most')
    .option('--allow-unverified', 'also place on devices that have not passed proof-of-compute')
    .option('--hours <hours>', 'duration (default 1)')
    .option('--name <name>', 'cluster name')
    .option('--json', 'machine-readable output')
    .action(async (flags: ConnectionFlags & Record<string, string | boolean | undefined>) => {
      const text = (name: string) => flags[name] as string | undefined
      if (!flags['dryRun']) {
        throw new UsageError(
          'deploying clusters (WireGuard mesh and Ray) is not available yet; add --dry-run to see placement and price',
        )
      }
      const gpus = text('gpus')
      const body = clusterRequestValidator.parse(
        Object.fromEntries(
          Object.entries({
            name: text('name'),
            gpus: gpus !== undefined && /^\d+$/.test(gpus) ? Number(gpus) : gpus,
            nodes: numeric(text('nodes')),
            gpusPerNode: numeric(text('gpusPerNode')),
            gpuModel: text('gpu'),
            minVramGb: numeric(text('minVramGb')),
            region: text('region'),
            country: text('country'),
            minBandwidthTier: text('minBandwidth'),
            maxPricePerGpuHourUsd: text('maxPrice'),
            verifiedOnly: flags['allowUnverified'] ? false : undefined,
            durationHours: numeric(text('hours')),
          }).filter(([, value]) => value !== undefined),
        ),
      )
      const plan = await clientFrom(flags, true).planCluster(body)
      if (flags['json']) return printJson(plan)
      const nodesText = `${plan.request.nodes} node${plan.request.nodes === 1 ? '' : 's'}`
      const shape =
        plan.request.gpusPerNode === 0
          ? `${nodesText} (CPU)`
          : `${nodesText} × ${plan.request.gpusPerNode} ${plan.request.gpuModel ?? 'any'} GPU${plan.request.gpusPerNode === 1 ? '' : 's'}`
      if (plan.placeable) {
        process.stdout.write(
          `${shape}: placeable, $${plan.pricePerHourUsd}/h, $${plan.totalUsd} for ${plan.request.durationHours} h\n`,
        )
        printTable(
          ['device', 'hardware', 'VRAM/GPU', 'where', '$/GPU-h', 'reliability'],
          plan.nodes.map((node) => [
            node.deviceId,
            node.gpuCount === 0 ? node.gpuModelName : `${node.gpuCount}× ${node.gpuModelName}`,
            node.gpuCount === 0 ? '-' : gib(node.vramMibPerGpu),
            `${node.region} ${node.country}`,
            node.pricePerGpuHourUsd,
            percent(node.reliability),
          ]),
        )
        return
      }
      process.exitCode = 1
      process.stdout.write(
        `${shape}: cannot be placed — blocked by ${plan.blockingConstraint}\n  ${plan.detail}\n`,
      )
      if (plan.withoutBlockingConstraint) {
        process.stdout.write(
          `  without the ${plan.blockingConstraint} constraint it would cost $${plan.withoutBlockingConstraint.pricePerHourUsd}/h\n`,
        )
      }
      if (plan.market.length > 0) {
        process.stdout.write('  on offer now:\n')
        printTable(
          ['GPU model', 'nodes', 'GPUs', 'from $/GPU-h'],
          plan.market.map((entry) => [entry.gpuModel, entry.nodes, entry.gpus, entry.minPricePerGpuHourUsd]),
        )
      }
    })
}
