import { execFile, type ExecFileException } from 'node:child_process'
import { readFile, stat } from 'node:fs/promises'
import type { GpuInfo, HardwareInventory, ProbeSource } from '@gpumesh/protocol'
import { readCpu, readDisk, readHostname, readMemoryMib, readOperatingSystem } from './host.ts'
import { maxNvidiaSmiOutputBytes, parseNvidiaSmiXml, type NvidiaSmiReading } from './nvidia-smi.ts'
import { errorMessage, pushWarning, truncateText } from './warnings.ts'

export { parseNvidiaSmiXml, maxNvidiaSmiOutputBytes, type NvidiaSmiReading } from './nvidia-smi.ts'

export type ProbeHardwareOptions = {
  /** Read this saved `nvidia-smi -q -x` capture instead of running nvidia-smi (for tests and dry runs). */
  nvidiaSmiXmlPath?: string
  /** Command run as `<command> -q -x`. Default 'nvidia-smi', looked up on PATH. */
  nvidiaSmiCommand?: string
  /** Where the worker keeps its data; its file system's size and free space are reported. */
  diskPath: string
  /** Reported instead of the machine's hostname. */
  hostname?: string
}

/** nvidia-smi answers in well under a second; a hung driver can block it for minutes. */
export const nvidiaSmiTimeoutMs = 15_000
export const defaultNvidiaSmiCommand = 'nvidia-smi'

const maxFailureDetailLength = 200

type GpuProbe = { source: ProbeSource; reading: NvidiaSmiReading }

export async function probeHardware(options: ProbeHardwareOptions): Promise<HardwareInventory> {
  const gpuProbe =
    options.nvidiaSmiXmlPath === undefined
      ? await probeWithCommand(options.nvidiaSmiCommand ?? defaultNvidiaSmiCommand)
      : await probeWithSavedFile(options.nvidiaSmiXmlPath)

  const warnings: string[] = []
  for (const warning of gpuProbe.reading.warnings) pushWarning(warnings, warning)
  const inventory: HardwareInventory = {
    hostname: readHostname(warnings, options.hostname),
    gpus: gpuProbe.reading.gpus,
    cpu: readCpu(warnings),
    memoryMib: readMemoryMib(warnings),
    disk: readDisk(options.diskPath, warnings),
    os: readOperatingSystem(warnings),
    probeSource: gpuProbe.source,
    warnings,
  }
  if (gpuProbe.reading.driverVersion !== undefined) inventory.driverVersion = gpuProbe.reading.driverVersion
  if (gpuProbe.reading.cudaVersion !== undefined) inventory.cudaVersion = gpuProbe.reading.cudaVersion
  return inventory
}

async function probeWithSavedFile(path: string): Promise<GpuProbe> {
  const source = 'nvidia-smi-xml-file'
  try {
    const { size } = await stat(path)
    if (size > maxNvidiaSmiOutputBytes) {
      return { source, reading: noGpus(`${path} is larger than ${maxNvidiaSmiOutputBytes} bytes; not read`) }
    }
    return { source, reading: parseNvidiaSmiXml(await readFile(path, 'utf8')) }
  } catch (error) {
    return { source, reading: noGpus(`could not read nvidia-smi XML file ${path}: ${errorMessage(error)}`) }
  }
}

async function probeWithCommand(command: string): Promise<GpuProbe> {
  const run = await runNvidiaSmi(command)
  // No nvidia-smi means no NVIDIA driver: a CPU-only node, which is a normal machine, not a fault.
  if (run.outcome === 'missing') return { source: 'none', reading: { gpus: [], warnings: [] } }
  if (run.outcome === 'succeeded') return { source: 'nvidia-smi', reading: parseNvidiaSmiXml(run.stdout) }

  const failure = `${command} -q -x failed: ${run.reason}`
  // Some drivers exit non-zero when one GPU errors yet still describe the others.
  if (!run.stdout.includes('<nvidia_smi_log')) return { source: 'nvidia-smi', reading: noGpus(failure) }
  const reading = parseNvidiaSmiXml(run.stdout)
  return { source: 'nvidia-smi', reading: { ...reading, warnings: [failure, ...reading.warnings] } }
}

type NvidiaSmiRun =
  | { outcome: 'missing' }
  | { outcome: 'succeeded'; stdout: string }
  | { outcome: 'failed'; reason: string; stdout: string }

function runNvidiaSmi(command: string): Promise<NvidiaSmiRun> {
  return new Promise((resolve) => {
    execFile(
      command,
      ['-q', '-x'],
      {
        timeout: nvidiaSmiTimeoutMs,
        maxBuffer: maxNvidiaSmiOutputBytes,
        encoding: 'utf8',
        windowsHide: true,
      },
      (error, stdout, stderr) => {
        if (!error) {
          resolve({ outcome: 'succeeded', stdout })
        } else if (error.code === 'ENOENT') {
          resolve({ outcome: 'missing' })
        } else {
          resolve({ outcome: 'failed', reason: describeFailure(error, stdout, stderr), stdout })
        }
      },
    )
  })
}

function describeFailure(error: ExecFileException, stdout: string, stderr: string): string {
  if (error.code === 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER') {
    return `output exceeded ${maxNvidiaSmiOutputBytes} bytes`
  }
  if (error.killed && error.signal === 'SIGTERM') {
    return `did not finish within ${nvidiaSmiTimeoutMs / 1000} s`
  }
  // nvidia-smi explains itself on stdout ("NVIDIA-SMI has failed because it couldn't communicate…").
  const explanation = firstLine(stderr) ?? firstLine(stdout)
  const status =
    typeof error.code === 'number'
      ? `exit code ${error.code}`
      : error.signal
        ? `killed by ${error.signal}`
        : String(error.code ?? 'unknown error')
  return explanation ? `${status}: ${truncateText(explanation, maxFailureDetailLength)}` : status
}

function firstLine(text: string): string | undefined {
  return text
    .split('\n')
    .map((line) => line.trim())
    .find((line) => line !== '')
}

function noGpus(warning: string): NvidiaSmiReading {
  return { gpus: [], warnings: [warning] }
}

const probeSourceLabels: Readonly<Record<ProbeSource, string>> = {
  'nvidia-smi': 'nvidia-smi',
  'nvidia-smi-xml-file': 'saved nvidia-smi XML file',
  none: 'none (nvidia-smi not found: CPU-only node)',
}

/** Plain-text report of an inventory, for `gpumesh worker probe`. */
export function formatInventoryTable(inventory: HardwareInventory): string {
  const lines: string[] = []
  lines.push(
    ...alignColumns([
      ['Host', inventory.hostname],
      ['Probe', probeSourceLabels[inventory.probeSource]],
    ]),
  )
  lines.push('')

  const versions = [
    inventory.driverVersion === undefined ? undefined : `driver ${inventory.driverVersion}`,
    inventory.cudaVersion === undefined ? undefined : `CUDA ${inventory.cudaVersion}`,
  ].filter((part) => part !== undefined)
  lines.push(`GPUs (${inventory.gpus.length})${versions.length > 0 ? `: ${versions.join(', ')}` : ''}`)
  if (inventory.gpus.length === 0) {
    lines.push('  none')
  } else {
    const header = ['INDEX', 'MODEL', 'VRAM GiB', 'UUID', 'PCIE', 'POWER', 'MIG']
    const rows = inventory.gpus.map((gpu) => [
      String(gpu.index),
      gpu.productName,
      formatGib(gpu.vramMib),
      gpu.uuid,
      formatPcie(gpu),
      gpu.powerLimitWatts === undefined ? '-' : `${formatNumber(gpu.powerLimitWatts)} W`,
      formatMig(gpu),
    ])
    lines.push(...alignColumns([header, ...rows]).map((line) => `  ${line}`))
  }
  lines.push('')

  const { cpu, disk, os } = inventory
  lines.push(
    ...alignColumns([
      ['CPU', `${cpu.model}, ${cpu.logicalCores} logical cores, ${cpu.architecture}`],
      ['RAM', `${formatGib(inventory.memoryMib)} GiB`],
      ['Disk', `${disk.path}: ${formatGib(disk.freeMib)} GiB free of ${formatGib(disk.totalMib)} GiB`],
      ['OS', `${os.distribution === undefined ? '' : `${os.distribution}, `}${os.platform} ${os.release}`],
    ]),
  )

  if (inventory.warnings.length > 0) {
    lines.push('', `Warnings (${inventory.warnings.length})`)
    for (const warning of inventory.warnings) lines.push(`  - ${warning}`)
  }
  return `${lines.join('\n')}\n`
}

function alignColumns(rows: readonly (readonly string[])[]): string[] {
  const widths: number[] = []
  for (const row of rows) {
    for (const [column, cell] of row.entries()) widths[column] = Math.max(widths[column] ?? 0, cell.length)
  }
  return rows.map((row) =>
    row
      .map((cell, column) => cell.padEnd(widths[column] ?? 0))
      .join('  ')
      .trimEnd(),
  )
}

function formatGib(mebibytes: number): string {
  return (mebibytes / 1024).toFixed(1)
}

function formatNumber(value: number): string {
  return Number.isInteger(value) ? String(value) : value.toFixed(1)
}

function formatPcie(gpu: GpuInfo): string {
  const parts = [
    gpu.pcieGeneration === undefined ? undefined : `gen${gpu.pcieGeneration}`,
    gpu.pcieWidthLanes === undefined ? undefined : `x${gpu.pcieWidthLanes}`,
  ].filter((part) => part !== undefined)
  return parts.length > 0 ? parts.join(' ') : '-'
}

function formatMig(gpu: GpuInfo): string {
  if (gpu.migMode === 'enabled') {
    const count = gpu.migInstances.length
    return `enabled (${count} instance${count === 1 ? '' : 's'})`
  }
  return gpu.migMode === 'disabled' ? 'disabled' : '-'
}
