import { chmodSync, mkdirSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { buildCoordinator, mintApiKey, mintId, type Coordinator } from '@gpumesh/coordinator'
import { IdPrefix, type Clock } from '@gpumesh/core'
import { CoordinatorSettings } from '@gpumesh/protocol'
import { openStore, type Store } from '@gpumesh/store'
import type { Command } from 'commander'
import { integerFlag, loadSettings } from '../settings.ts'
import { createLogger } from '../logging.ts'
import { untilSignal } from '../shutdown-signal.ts'

export const systemClock: Clock = {
  nowMs: () => Date.now(),
  sleepMs: (durationMs) => new Promise((resolve) => setTimeout(resolve, durationMs)),
}

export type RunningCoordinator = {
  coordinator: Coordinator
  store: Store
  url: string
  operatorKeyPath?: string
}

/** Opens the store (PostgreSQL when a URL is set, else PGlite in dataDir), migrates, and starts listening. */
/** The web console as `npm run build -w @gpumesh/console` leaves it; served at `/` when present. */
export const builtConsoleDir = resolve(import.meta.dirname, '../../../console/dist')

export async function startCoordinator(
  settings: CoordinatorSettings,
  consoleDir: string = builtConsoleDir,
): Promise<RunningCoordinator> {
  const store = settings.databaseUrl
    ? await openStore({ kind: 'postgres', connectionString: settings.databaseUrl })
    : await openStore({ kind: 'pglite', dataDir: resolve(settings.dataDir, 'pgdata') })
  try {
    const operatorKeyPath = await bootstrapOperator(store, settings.dataDir)
    const coordinator = await buildCoordinator(
      { store, clock: systemClock },
      {
        ...settings,
        consoleDir,
        loggerInstance: createLogger({ component: 'coordinator', level: settings.logLevel }),
      },
    )
    const url = await coordinator.listen()
    return { coordinator, store, url, ...(operatorKeyPath ? { operatorKeyPath } : {}) }
  } catch (error) {
    await store.close()
    throw error
  }
}

/** The first start creates an operator account; its key goes to a 0600 file, never to the log. */
async function bootstrapOperator(store: Store, dataDir: string): Promise<string | undefined> {
  if ((await store.countAccountsWithRole('operator')) > 0) return undefined
  const nowMs = Date.now()
  const accountId = mintId(IdPrefix.account)
  await store.createAccount({ id: accountId, name: 'operator', roles: ['operator'], createdAtMs: nowMs })
  const key = mintApiKey()
  await store.insertApiKey({
    id: key.id,
    accountId,
    name: 'bootstrap',
    roles: ['operator'],
    secretSha256: key.secretSha256,
    createdAtMs: nowMs,
    lastUsedAtMs: null,
    revokedAtMs: null,
  })
  mkdirSync(dataDir, { recursive: true, mode: 0o700 })
  const path = join(resolve(dataDir), 'operator.key')
  writeFileSync(path, `${key.presented}\n`, { mode: 0o600 })
  chmodSync(path, 0o600)
  return path
}

export function registerCoordinatorCommands(program: Command): void {
  const coordinator = program
    .command('coordinator')
    .description('run the coordinator (API, marketplace, worker links)')
  coordinator
    .command('start')
    .description(
      'start a coordinator: PostgreSQL when DATABASE_URL is set, else an embedded database in --data-dir',
    )
    .option('--host <host>', 'address to listen on (default 127.0.0.1)')
    .option('--port <port>', 'port to listen on (default 8080)')
    .option('--data-dir <dir>', 'embedded database and operator key (default .gpumesh/coordinator)')
    .option('--public-url <url>', 'the address workers and users reach this coordinator at')
    .option('--heartbeat-interval-ms <ms>', 'worker heartbeat interval (default 10000)')
    .option('--config <file>', 'JSON settings file; flags override it')
    .option('--log-level <level>', 'fatal|error|warn|info|debug|trace|silent (default info)')
    .action(async (flags: Record<string, string | undefined>) => {
      const settings = loadSettings(CoordinatorSettings, 'coordinator settings', flags['config'], {
        host: flags['host'],
        port: integerFlag(flags['port']),
        dataDir: flags['dataDir'],
        publicUrl: flags['publicUrl'],
        heartbeatIntervalMs: integerFlag(flags['heartbeatIntervalMs']),
        logLevel: flags['logLevel'],
        databaseUrl: process.env['DATABASE_URL'] || undefined,
      })
      const stopRequested = untilSignal()
      const running = await startCoordinator(settings)
      process.stderr.write(
        `gpumesh coordinator listening on ${running.url} (store: ${running.store.kind})\n` +
          (running.operatorKeyPath
            ? `operator API key written to ${running.operatorKeyPath} (mode 0600)\n`
            : ''),
      )
      await stopRequested
      await running.coordinator.stop()
      await running.store.close()
    })
}
