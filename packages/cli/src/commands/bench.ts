import { resolve } from 'node:path'
import { bandwidthTierThresholdsMbps } from '@gpumesh/core'
import type { ComputeSpeedtestResult, SpeedtestView } from '@gpumesh/protocol'
import {
  loadOrCreateIdentity,
  readEnrollment,
  resolvePythonPath,
  runComputeSpeedtest,
  runNetworkSpeedtest,
  submitSpeedtestResult,
  type NetworkSpeedtestPhase,
  type NetworkSpeedtestResult,
} from '@gpumesh/worker'
import type { Command } from 'commander'
import { printJson, printTable } from '../output.ts'

// `gpumesh bench`: the hardware speedtest, shown like a speedtest site. The network part needs an enrolled
// machine (its requests are signed with the device key); the compute part runs anywhere.

type BenchFlags = {
  coordinator?: string
  stateDir?: string
  skipNetwork?: boolean
  skipCompute?: boolean
  python?: string
  json?: boolean
}

type BenchReport = {
  network: NetworkSpeedtestResult | null
  networkSkipped: string | null
  compute: ComputeSpeedtestResult | null
  computeError: string | null
  stored: SpeedtestView | null
}

const phaseLabels: Record<NetworkSpeedtestPhase | 'compute', string> = {
  latency: 'ping',
  download: 'download',
  upload: 'upload',
  compute: 'compute',
}

export function registerBenchCommand(program: Command): void {
  program
    .command('bench')
    .description('measure this machine: latency, bandwidth tier, matmul TFLOPS, memory bandwidth')
    .option('--coordinator <url>', 'coordinator URL (default: the one this machine enrolled with)')
    .option('--state-dir <dir>', 'worker identity key and enrollment (default .gpumesh/worker)')
    .option('--skip-network', 'do not run the network test')
    .option('--skip-compute', 'do not run the compute test')
    .option('--python <path>', 'Python for the compute test (default: the managed environment, .venv)')
    .option('--json', 'machine-readable output')
    .action(async (flags: BenchFlags) => {
      const progress = progressLine(process.stderr)
      const report: BenchReport = {
        network: null,
        networkSkipped: null,
        compute: null,
        computeError: null,
        stored: null,
      }
      const stateDir = resolve(flags.stateDir ?? '.gpumesh/worker')
      const enrollment = flags.skipNetwork ? undefined : readEnrollment(stateDir)
      let failed = false

      if (flags.skipNetwork) {
        report.networkSkipped = 'skipped (--skip-network)'
      } else if (!enrollment) {
        report.networkSkipped = `skipped: the network test needs an enrolled machine, and ${stateDir} holds no enrollment (run gpumesh worker start --token ... first, or pass --state-dir)`
        process.stderr.write(`${report.networkSkipped}\n`)
      }

      if (!flags.skipCompute) {
        const pythonPath = flags.python ?? resolvePythonPath(process.env)
        progress.phase('compute', `compute (${pythonPath})`)
        try {
          report.compute = await runComputeSpeedtest({ pythonPath })
          progress.done('compute')
        } catch (error) {
          report.computeError = (error as Error).message
          progress.fail('compute', report.computeError)
          failed = true
        }
      }

      if (enrollment) {
        const coordinatorUrl = flags.coordinator ?? enrollment.coordinatorUrl
        const identity = loadOrCreateIdentity(stateDir)
        let phase: NetworkSpeedtestPhase = 'latency'
        try {
          report.network = await runNetworkSpeedtest({
            coordinatorUrl,
            deviceId: enrollment.deviceId,
            identity,
            onProgress: (next, fraction) => {
              if (next !== phase) progress.done(phase)
              if (next !== phase || fraction === 0) progress.phase(next, phaseLabels[next])
              phase = next
              progress.fraction(next, fraction)
            },
          })
          progress.done(phase)
          report.stored = await submitSpeedtestResult({
            coordinatorUrl,
            deviceId: enrollment.deviceId,
            identity,
            network: report.network,
            ...(report.compute ? { compute: report.compute } : {}),
          })
        } catch (error) {
          progress.fail(phase, `network test failed: ${(error as Error).message}`)
          report.networkSkipped = `failed: ${(error as Error).message}`
          failed = true
        }
      }

      if (failed) process.exitCode = 1
      if (flags.json) return printJson(report)
      printReport(report)
    })
}

function printReport(report: BenchReport): void {
  const out = process.stdout
  out.write('\n')
  if (report.network) {
    const network = report.network
    const stored = report.stored
    const download = stored?.downloadMbps ?? network.downloadMbps
    const upload = stored?.uploadMbps ?? network.uploadMbps
    out.write(`  Ping       ${ms(network.latencyMs)}   jitter ${ms(network.jitterMs)}\n`)
    out.write(`  Download   ${mbps(download)}\n`)
    out.write(`  Upload     ${mbps(upload)}   (measured by the coordinator)\n`)
    if (stored) {
      out.write(`  Tier       ${stored.bandwidthTier ?? `none (low needs ${tierNeeds('low')})`}\n`)
      out.write(`  Stored as  ${stored.id}\n`)
    }
  } else if (report.networkSkipped) {
    out.write(`  Network    ${report.networkSkipped}\n`)
  }
  if (report.compute) {
    const compute = report.compute
    out.write(`\n  Compute    ${compute.backend}, Python ${compute.python}\n`)
    const precisions = (['fp64', 'fp32', 'tf32', 'fp16', 'bf16'] as const).filter((precision) =>
      compute.devices.some((device) => device.matmulTflops[precision] !== undefined),
    )
    printTable(
      [
        '#',
        'device',
        ...precisions.map((precision) => `${precision} TFLOPS`),
        'memory GB/s',
        'usable memory',
      ],
      compute.devices.map((device) => [
        device.index,
        device.name,
        ...precisions.map((precision) => tflops(device.matmulTflops[precision])),
        device.memoryBandwidthGBps.toFixed(1),
        `${(device.usableMemoryMiB / 1024).toFixed(1)} GiB`,
      ]),
    )
  } else if (report.computeError) {
    out.write(`\n  Compute    failed: ${report.computeError}\n`)
  }
}

const ms = (value: number) => `${value.toFixed(2)} ms`
const mbps = (value: number) => `${value.toFixed(1)} Mbit/s`
const tflops = (value: number | undefined) =>
  value === undefined
    ? '-'
    : value >= 10
      ? value.toFixed(1)
      : value >= 0.1
        ? value.toFixed(2)
        : value.toFixed(4)
const tierNeeds = (tier: 'low') =>
  `${bandwidthTierThresholdsMbps[tier].downloadMbps} down / ${bandwidthTierThresholdsMbps[tier].uploadMbps} up Mbit/s`

/** Progress on stderr: one rewritten line on a terminal; on a log, a line at each quarter. */
function progressLine(stream: NodeJS.WriteStream) {
  const interactive = stream.isTTY === true
  const clear = interactive ? '\r\x1b[2K' : ''
  const label = (key: string) => phaseLabels[key as NetworkSpeedtestPhase | 'compute'] ?? key
  let shownPercent = -1
  return {
    phase(_key: string, text: string) {
      shownPercent = -1
      stream.write(interactive ? `${clear}  ${text} ...` : `${text} ...\n`)
    },
    fraction(key: string, fraction: number) {
      const percent = Math.floor(fraction * 100)
      if (percent === shownPercent) return
      if (!interactive && Math.floor(percent / 25) === Math.floor(shownPercent / 25)) return
      shownPercent = percent
      stream.write(interactive ? `${clear}  ${label(key)} ${percent}%` : `${label(key)} ${percent}%\n`)
    },
    done(key: string) {
      stream.write(interactive ? `${clear}  ${label(key)} done\n` : `${label(key)} done\n`)
    },
    fail(_key: string, message: string) {
      stream.write(`${clear}${message}\n`)
    },
  }
}
