import { OffersQuery, createValidator } from '@gpumesh/protocol'
import type { Command } from 'commander'
import { clientFrom, type ConnectionFlags } from '../credentials.ts'
import { gib, reliabilityText, printJson, printTable } from '../output.ts'
import { connectionOptions } from './account.ts'

const offersQueryValidator = createValidator(OffersQuery, 'search flags')
const numeric = (value: string | undefined) =>
  value === undefined ? undefined : Number.isNaN(Number(value)) ? value : Number(value)

export function registerOfferCommands(program: Command): void {
  connectionOptions(
    program
      .command('offers')
      .description('the marketplace')
      .command('search')
      .description('search machines on offer'),
  )
    .option('--gpu <model>', 'GPU model, e.g. h100, a100, "RTX 4090", cpu')
    .option('--min-gpus <n>', 'GPUs per node, at least')
    .option('--max-gpus <n>', 'GPUs per node, at most')
    .option('--min-vram-gb <gb>', 'VRAM per GPU, at least')
    .option('--min-cpu-cores <n>', 'CPU cores, at least')
    .option('--min-ram-gb <gb>', 'RAM, at least')
    .option('--region <region>', 'region label')
    .option('--country <code>', 'ISO country code')
    .option('--min-bandwidth <tier>', 'low | medium | high')
    .option('--max-price <usd>', 'USD per GPU-hour, at most')
    .option('--verified-only', 'only devices that passed proof-of-compute')
    .option('--min-reliability <ratio>', 'measured uptime ratio, 0..1')
    .option('--sort <key>', 'price | performance | reliability', 'price')
    .option('--limit <n>', 'results per page (max 200)', '20')
    .option('--cursor <cursor>', 'next page, from a previous result')
    .option('--json', 'machine-readable output')
    .action(async (flags: ConnectionFlags & Record<string, string | boolean | undefined>) => {
      const text = (name: string) => flags[name] as string | undefined
      const query = offersQueryValidator.parse(
        Object.fromEntries(
          Object.entries({
            gpuModel: text('gpu'),
            minGpus: numeric(text('minGpus')),
            maxGpus: numeric(text('maxGpus')),
            minVramGb: numeric(text('minVramGb')),
            minCpuCores: numeric(text('minCpuCores')),
            minRamGb: numeric(text('minRamGb')),
            region: text('region'),
            country: text('country'),
            minBandwidthTier: text('minBandwidth'),
            maxPricePerGpuHourUsd: text('maxPrice'),
            verifiedOnly: flags['verifiedOnly'] === true ? true : undefined,
            minReliability: numeric(text('minReliability')),
            sort: text('sort'),
            limit: numeric(text('limit')),
            cursor: text('cursor'),
          }).filter(([, value]) => value !== undefined),
        ),
      )
      const page = await clientFrom(flags, false).searchOffers(query)
      if (flags['json']) return printJson(page)
      if (page.offers.length === 0) {
        process.stdout.write('no machine on offer matches these filters\n')
        return
      }
      printTable(
        [
          'device',
          'GPUs',
          'VRAM/GPU',
          'CPU',
          'RAM',
          'where',
          'bandwidth',
          '$/GPU-h',
          '$/h',
          'FP16 TFLOPS (sheet)',
          'FP32 measured',
          'reliability',
          'verified',
        ],
        page.offers.map((offer) => [
          offer.deviceId,
          offer.gpuCount === 0 ? offer.gpuModelName : `${offer.gpuCount}× ${offer.gpuModelName}`,
          offer.gpuCount === 0 ? '-' : gib(offer.vramMibPerGpu),
          `${offer.cpuCores} cores`,
          gib(offer.memoryMib),
          `${offer.region} ${offer.country}`,
          offer.bandwidthTier ?? 'untested',
          offer.pricingMode === 'auto' ? `${offer.pricePerGpuHourUsd} (auto)` : offer.pricePerGpuHourUsd,
          offer.pricePerHourUsd,
          offer.performance.fp16TensorTflopsPerGpu ?? '-',
          offer.performance.measuredFp32Tflops === null
            ? '-'
            : offer.performance.measuredFp32Tflops.toFixed(3),
          reliabilityText(offer.reliability),
          offer.verificationState,
        ]),
      )
      process.stdout.write(
        `${page.offers.length} of ${page.total}${page.nextCursor ? `; next page: --cursor ${page.nextCursor}` : ''}\n`,
      )
    })
}
