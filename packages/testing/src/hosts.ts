import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { eventually } from './coordinator.ts'
import type { TestHost, TestNetwork } from './netns.ts'

// A coordinator process on a test host, and HTTP calls made from inside a host: the test process itself
// lives outside every test network, so it reaches the coordinator through a short-lived process there.

export type HostApiOptions = { readonly method?: string; readonly body?: unknown; readonly key?: string }
export type HostApi = (path: string, options?: HostApiOptions) => { status: number; body: any }

export function hostApi(network: TestNetwork, host: TestHost, baseUrl: string): HostApi {
  return (path, options = {}) => {
    const headers = {
      ...(options.key ? { authorization: `Bearer ${options.key}` } : {}),
      ...(options.body === undefined ? {} : { 'content-type': 'application/json' }),
    }
    const script = `
      const response = await fetch(${JSON.stringify(baseUrl + path)}, {
        method: ${JSON.stringify(options.method ?? 'GET')},
        headers: ${JSON.stringify(headers)},
        ${options.body === undefined ? '' : `body: ${JSON.stringify(JSON.stringify(options.body))},`}
      })
      const text = await response.text()
      process.stdout.write(JSON.stringify({ status: response.status, body: text ? JSON.parse(text) : null }))`
    return JSON.parse(network.execIn(host, process.execPath, ['--input-type=module', '-e', script]))
  }
}

/**
 * Runs `gpumesh coordinator start` on the host (embedded PGlite in `workDir`, the given settings as its
 * config file) and resolves with its base URL once it answers.
 */
export async function startCoordinatorOnHost(
  network: TestNetwork,
  host: TestHost,
  init: {
    readonly cli: string
    readonly workDir: string
    readonly settings: object
    readonly port?: number
    /** How long to wait for it to answer; PGlite's first start is slow on a loaded machine. */
    readonly startTimeoutMs?: number
  },
): Promise<string> {
  const port = init.port ?? 8080
  const config = join(init.workDir, 'coordinator.json')
  writeFileSync(config, JSON.stringify(init.settings))
  network.spawnIn(
    host,
    process.execPath,
    [
      init.cli,
      'coordinator',
      'start',
      '--host',
      host.address,
      '--port',
      String(port),
      '--data-dir',
      join(init.workDir, 'coordinator'),
      '--config',
      config,
      '--log-level',
      'warn',
    ],
    { env: { ...process.env, DATABASE_URL: '' }, logPrefix: 'coordinator' },
  )
  const baseUrl = `http://${host.address}:${port}`
  const api = hostApi(network, host, baseUrl)
  await eventually(
    () => {
      try {
        return api('/v1/health').status === 200
      } catch {
        return false
      }
    },
    'the coordinator to answer',
    init.startTimeoutMs ?? 30_000,
  )
  return baseUrl
}

export type WorkerStartInit = {
  readonly cli: string
  readonly coordinatorUrl: string
  readonly stateDir: string
  readonly region: string
  readonly country: string
  readonly pricePerGpuHour: string
  /** Needed only the first time, to enroll. */
  readonly token?: string
  /** Further flags of `gpumesh worker start`, as they are. */
  readonly extraArgs?: readonly string[]
}

/** The arguments of `node <cli> worker start …` for a worker agent on a test host. */
export function workerStartArgs(init: WorkerStartInit): string[] {
  return [
    init.cli,
    'worker',
    'start',
    '--coordinator',
    init.coordinatorUrl,
    '--state-dir',
    init.stateDir,
    '--region',
    init.region,
    '--country',
    init.country,
    '--price-per-gpu-hour',
    init.pricePerGpuHour,
    ...(init.extraArgs ?? []),
    ...(init.token ? ['--token', init.token] : []),
  ]
}
