import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createValidator, CoordinatorSettings } from '@gpumesh/protocol'
import { Value } from 'typebox/value'

// Small helpers shared by the benchmark scripts: /proc readers, percentiles, formatting, timeouts.
// Linux only (they read /proc).

/**
 * Coordinator settings as production builds them (the schema's defaults, then validated), with the
 * benchmark's overrides. Proof-of-compute is off unless asked for: the load generators do not answer challenges.
 */
export function benchCoordinatorSettings(overrides: Partial<CoordinatorSettings>): CoordinatorSettings {
  const merged = Value.Default(
    CoordinatorSettings,
    structuredClone({ verificationEnabled: false, ...overrides }),
  )
  return createValidator(CoordinatorSettings, 'benchmark coordinator settings').parse(merged)
}

let clockTicksPerSecond: number | undefined

/** USER_HZ, the unit of utime/stime in /proc/<pid>/stat (100 on every common Linux build). */
export function clockTicks(): number {
  if (clockTicksPerSecond === undefined) {
    try {
      clockTicksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
    } catch {
      clockTicksPerSecond = 100
    }
  }
  return clockTicksPerSecond
}

/** CPU time (user + system) a process has used so far, in seconds; undefined once it is gone. */
export function processCpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(rest[11]) + Number(rest[12])) / clockTicks()
  } catch {
    return undefined
  }
}

/**
 * CPU time the whole machine has spent busy so far (every core, from the first line of /proc/stat: user, nice,
 * system, irq, softirq, steal; not idle or iowait), in seconds.
 */
export function machineBusyCpuSeconds(): number {
  const fields = readFileSync('/proc/stat', 'utf8')
    .split('\n', 1)[0]!
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number)
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = fields
  return (user + nice + system + irq + softirq + steal) / clockTicks()
}

/** Resident memory (VmRSS) and its peak (VmHWM) in bytes, from /proc/<pid>/status. */
export function processMemory(pid: number): { rssBytes: number; peakRssBytes: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    const field = (name: string) =>
      Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024
    return { rssBytes: field('VmRSS'), peakRssBytes: field('VmHWM') }
  } catch {
    return undefined
  }
}

/** The soft and hard "Max open files" limits of a process. */
export function openFilesLimit(pid: number | 'self' = 'self'): { soft: number; hard: number } {
  const limits = readFileSync(`/proc/${pid}/limits`, 'utf8')
  const match = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(limits)
  const parse = (value: string | undefined) =>
    value === 'unlimited' || value === undefined ? Infinity : Number(value)
  return { soft: parse(match?.[1]), hard: parse(match?.[2]) }
}

/** Open file descriptors of a process, counted in /proc/<pid>/fd. */
export function openFileCount(pid: number): number | undefined {
  try {
    return execFileSync('ls', [`/proc/${pid}/fd`], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 })
      .split('\n')
      .filter(Boolean).length
  } catch {
    return undefined
  }
}

export type Summary = {
  count: number
  p50: number
  p90: number
  p95: number
  p99: number
  max: number
  mean: number
}

/** Nearest-rank percentiles of a list of samples (milliseconds). */
export function summarize(samples: readonly number[]): Summary {
  if (samples.length === 0) return { count: 0, p50: NaN, p90: NaN, p95: NaN, p99: NaN, max: NaN, mean: NaN }
  const sorted = Float64Array.from(samples).sort()
  const rank = (p: number) =>
    sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))] ?? NaN
  let sum = 0
  for (const value of sorted) sum += value
  return {
    count: sorted.length,
    p50: rank(0.5),
    p90: rank(0.9),
    p95: rank(0.95),
    p99: rank(0.99),
    max: sorted[sorted.length - 1] ?? NaN,
    mean: sum / sorted.length,
  }
}

export const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`
export const ms = (value: number) =>
  Number.isNaN(value) ? '-' : value < 10 ? value.toFixed(2) : value.toFixed(1)

/** Prints rows as an aligned plain-text table. */
export function table(header: readonly string[], rows: readonly (readonly (string | number)[])[]): string {
  const cells = [header, ...rows].map((row) => row.map(String))
  const widths = header.map((_, column) => Math.max(...cells.map((row) => (row[column] ?? '').length)))
  return cells
    .map((row, index) => {
      const line = row.map((cell, column) =>
        column === 0 ? cell.padEnd(widths[column] ?? 0) : cell.padStart(widths[column] ?? 0),
      )
      return index === 0
        ? `${line.join('  ')}\n${widths.map((width) => '-'.repeat(width)).join('  ')}`
        : line.join('  ')
    })
    .join('\n')
}

export const sleep = (durationMs: number) => new Promise<void>((resolve) => setTimeout(resolve, durationMs))

/** Rejects when `promise` has not settled within `timeoutMs`. */
export async function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms: ${what}`)), timeoutMs)
      }),
    ])
  } finally {
    clearTimeout(timer)
  }
}

/** Runs `worker` over `items` with at most `concurrency` in flight; returns results in order. */
export async function mapConcurrent<T, R>(
  items: readonly T[],
  concurrency: number,
  worker: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length)
  let next = 0
  const lanes = Array.from({ length: Math.min(concurrency, items.length) }, async () => {
    while (next < items.length) {
      const index = next++
      results[index] = await worker(items[index] as T, index)
    }
  })
  await Promise.all(lanes)
  return results
}

/** What each worker swarm counts; summed across swarms by worker-connections.ts. */
export type SwarmCounters = {
  attempted: number
  welcomed: number
  /** Sockets that got a welcome and are still open. */
  open: number
  /** Never welcomed: socket error, timeout or close during the handshake (not counting auth refusals). */
  connectFailed: number
  /** An `error` frame or close code 4001/4003 before the welcome. */
  authRefused: number
  /** Closed by the other side after the welcome. */
  closedAfterWelcome: number
  heartbeatsSent: number
  reportsSent: number
  /** `error` frames received after the welcome (e.g. rate limiting). */
  errorFramesAfterWelcome: number
  closeCodes: Record<string, number>
  errorSamples: string[]
}

export function emptySwarmCounters(): SwarmCounters {
  return {
    attempted: 0,
    welcomed: 0,
    open: 0,
    connectFailed: 0,
    authRefused: 0,
    closedAfterWelcome: 0,
    heartbeatsSent: 0,
    reportsSent: 0,
    errorFramesAfterWelcome: 0,
    closeCodes: {},
    errorSamples: [],
  }
}
