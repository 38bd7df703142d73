import { readFileSync, statfsSync } from 'node:fs'
import os from 'node:os'
import type { HardwareInventory } from '@gpumesh/protocol'
import { errorMessage, pushWarning, truncateText } from './warnings.ts'

// Host facts for the inventory. A worker that cannot read one of them (a container without /proc, a
// missing disk path) still registers, so every reader returns a usable value and records a warning instead
// of throwing.

export type CpuInfo = HardwareInventory['cpu']
export type DiskInfo = HardwareInventory['disk']
export type OperatingSystemInfo = HardwareInventory['os']

const bytesPerMebibyte = 1024 * 1024
const maxHostnameLength = 255
const maxCpuModelLength = 256
const maxCpuArchitectureLength = 32
const maxPlatformLength = 64
const maxReleaseLength = 256
const maxDistributionLength = 256
const maxDiskPathLength = 4096
const unknownValue = 'unknown'

export const defaultOsReleasePath = '/etc/os-release'

export function readCpu(warnings: string[]): CpuInfo {
  const architecture = truncateText(os.arch(), maxCpuArchitectureLength)
  // os.cpus() is empty where /proc/cpuinfo is hidden (some sandboxes); availableParallelism never is.
  const cpus = safely(() => os.cpus(), [], 'could not list CPUs', warnings)
  const logicalCores = cpus.length > 0 ? cpus.length : os.availableParallelism()
  const model = cpus[0]?.model.trim()
  if (!model) pushWarning(warnings, 'could not read the CPU model')
  return { model: truncateText(model || unknownValue, maxCpuModelLength), logicalCores, architecture }
}

export function readMemoryMib(warnings: string[]): number {
  return safely(
    () => Math.floor(os.totalmem() / bytesPerMebibyte),
    0,
    'could not read total memory',
    warnings,
  )
}

export function readDisk(path: string, warnings: string[]): DiskInfo {
  const reportedPath = truncateText(path, maxDiskPathLength)
  try {
    const stats = statfsSync(path)
    return {
      path: reportedPath,
      totalMib: Math.floor((stats.blocks * stats.bsize) / bytesPerMebibyte),
      // bavail, not bfree: blocks reserved for root are not available to workloads.
      freeMib: Math.floor((stats.bavail * stats.bsize) / bytesPerMebibyte),
    }
  } catch (error) {
    pushWarning(warnings, `could not read disk space for ${JSON.stringify(path)}: ${errorMessage(error)}`)
    return { path: reportedPath, totalMib: 0, freeMib: 0 }
  }
}

export function readOperatingSystem(
  warnings: string[],
  osReleasePath = defaultOsReleasePath,
): OperatingSystemInfo {
  const platform = os.platform()
  const info: OperatingSystemInfo = {
    platform: truncateText(platform, maxPlatformLength),
    release: truncateText(
      safely(() => os.release(), unknownValue, 'could not read the OS release', warnings),
      maxReleaseLength,
    ),
  }
  let osRelease: string | undefined
  try {
    osRelease = readFileSync(osReleasePath, 'utf8')
  } catch (error) {
    // Only Linux has os-release; elsewhere the distribution is simply not reported.
    if (platform === 'linux') pushWarning(warnings, `could not read ${osReleasePath}: ${errorMessage(error)}`)
  }
  const distribution = osRelease === undefined ? undefined : parseOsReleaseField(osRelease, 'PRETTY_NAME')
  if (distribution) info.distribution = truncateText(distribution, maxDistributionLength)
  return info
}

export function readHostname(warnings: string[], override?: string): string {
  const hostname = (
    override ?? safely(() => os.hostname(), '', 'could not read the hostname', warnings)
  ).trim()
  if (!hostname) {
    pushWarning(warnings, 'hostname is empty; reporting "unknown"')
    return unknownValue
  }
  return truncateText(hostname, maxHostnameLength)
}

/** Reads one KEY=value line of an os-release file (shell-style quoting, see os-release(5)). */
export function parseOsReleaseField(content: string, key: string): string | undefined {
  for (const line of content.split('\n')) {
    const separatorIndex = line.indexOf('=')
    if (separatorIndex === -1 || line.slice(0, separatorIndex).trim() !== key) continue
    const rawValue = line.slice(separatorIndex + 1).trim()
    const quote = rawValue[0]
    if ((quote === '"' || quote === "'") && rawValue.endsWith(quote) && rawValue.length >= 2) {
      const inner = rawValue.slice(1, -1)
      return quote === '"' ? inner.replace(/\\(["\\$`])/g, '$1') : inner
    }
    return rawValue
  }
  return undefined
}

function safely<T>(read: () => T, fallback: T, failureMessage: string, warnings: string[]): T {
  try {
    return read()
  } catch (error) {
    pushWarning(warnings, `${failureMessage}: ${errorMessage(error)}`)
    return fallback
  }
}
