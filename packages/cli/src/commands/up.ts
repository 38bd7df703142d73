import { gmtUnitsPerGmt } from '@gpumesh/core'
import { ledgerAccounts } from '@gpumesh/ledger'
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { CoordinatorSettings } from '@gpumesh/protocol'
import { GpumeshClient } from '@gpumesh/sdk'
import type { Command } from 'commander'
import { printTable, reliabilityText } from '../output.ts'
import { describeModelDirectory } from './models.ts'
import { integerFlag, loadSettings } from '../settings.ts'
import { builtConsoleDir, startCoordinator, untilSignal } from './coordinator.ts'

// `gpumesh up`: a whole local network on the embedded defaults — a coordinator on PGlite and a few worker
// agents as separate processes — for trying gpumesh and for development.

const mainScript = fileURLToPath(new URL('../main.ts', import.meta.url))
const repoRoot = fileURLToPath(new URL('../../../../', import.meta.url))
const localSites = [
  { region: 'eu-west', country: 'DE', price: '1.80' },
  { region: 'us-east', country: 'US', price: '2.20' },
  { region: 'ap-south', country: 'IN', price: '1.10' },
  { region: 'eu-north', country: 'SE', price: '1.50' },
]

type LocalAccounts = { coordinatorUrl: string; supplierKey: string; renterKey: string }

/** Saved captures to replay with --sample-gpus: the shared real captures when present, else our own. */
function sampleCaptures(): string[] {
  for (const dir of [
    resolve(repoRoot, '../shared/fixtures/nvidia-smi'),
    resolve(repoRoot, 'packages/worker/test/fixtures/nvidia-smi'),
  ]) {
    if (!existsSync(dir)) continue
    const files = readdirSync(dir).filter((name) => name.endsWith('.xml') && !/truncated|missing/.test(name))
    if (files.length > 0) return files.sort().map((name) => join(dir, name))
  }
  return []
}

export function registerUpCommand(program: Command): void {
  program
    .command('up')
    .description('run a local network: a coordinator on the embedded database and a few worker agents')
    .option('--workers <n>', 'worker agents to run (default 3)', '3')
    .option('--port <port>', 'coordinator port (default 8080)')
    .option(
      '--data-dir <dir>',
      'where the local network keeps its state (default .gpumesh/local)',
      '.gpumesh/local',
    )
    .option(
      '--sample-gpus',
      'workers replay saved nvidia-smi captures instead of probing this machine (marked as such)',
    )
    .option('--heartbeat-interval-ms <ms>', 'worker heartbeat interval (default 10000)')
    .option('--exit-when-ready', 'stop everything once all workers are online (a smoke test)')
    .action(async (flags: Record<string, string | boolean | undefined>) => {
      const dataDir = resolve(String(flags['dataDir']))
      const workerCount = Number(flags['workers'])
      if (!Number.isInteger(workerCount) || workerCount < 1 || workerCount > 16) {
        throw new Error('--workers must be an integer from 1 to 16')
      }
      const settings = loadSettings(CoordinatorSettings, 'coordinator settings', undefined, {
        port: integerFlag(flags['port'] as string | undefined),
        dataDir: join(dataDir, 'coordinator'),
        heartbeatIntervalMs: integerFlag(flags['heartbeatIntervalMs'] as string | undefined),
        // A development network: renters take test GMT from the faucet (gpumesh wallet deposit).
        faucetMaxClaimGmt: '1000',
        logLevel: 'warn',
      })
      const running = await startCoordinator(settings)
      // Funded once per data dir: the transfer id makes a restart a replay, not a second million.
      await running.store.ledger.createTransfers(
        [
          {
            id: 'fund-faucet:local-network',
            kind: 'single',
            debitAccountId: ledgerAccounts.settlement().id,
            creditAccountId: 'platform:faucet',
            amount: 1_000_000n * gmtUnitsPerGmt,
            code: 'faucet_funding',
            reference: 'gpumesh up',
          },
        ],
        Date.now(),
      )
      const client = new GpumeshClient({ baseUrl: running.url })
      const accounts = await localAccounts(client, dataDir)
      const storedModel = await pushShippedModel(running.url, join(dataDir, 'coordinator', 'operator.key'))
      const supplier = new GpumeshClient({ baseUrl: running.url, apiKey: accounts.supplierKey })
      const captures = flags['sampleGpus'] ? sampleCaptures() : []

      const servesModels = process.getuid?.() === 0 && storedModel !== undefined
      const workers: ChildProcess[] = []
      for (let index = 0; index < workerCount; index += 1) {
        const stateDir = join(dataDir, `worker-${index + 1}`)
        const site = localSites[index % localSites.length]!
        const enrolledHere =
          existsSync(join(stateDir, 'enrollment.json')) &&
          (JSON.parse(readFileSync(join(stateDir, 'enrollment.json'), 'utf8')) as { coordinatorUrl: string })
            .coordinatorUrl === running.url
        const token = enrolledHere
          ? undefined
          : (await supplier.createEnrollmentToken({ label: `local worker ${index + 1}` })).token
        const capture = captures.length > 0 ? captures[index % captures.length] : undefined
        const args = [
          mainScript,
          'worker',
          'start',
          '--coordinator',
          running.url,
          '--state-dir',
          stateDir,
          '--region',
          site.region,
          '--country',
          site.country,
          '--price-per-gpu-hour',
          site.price,
          '--log-level',
          'warn',
          ...(token ? ['--token', token] : []),
          ...(capture ? ['--nvidia-smi-xml', capture] : []),
          // Idle machines serve the store's models (their sandbox needs root); see docs/inference.md.
          ...(servesModels ? ['--serve-models'] : []),
        ]
        workers.push(spawn(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit'] }))
      }

      const stopAll = async () => {
        await Promise.all(
          workers.map(
            (worker) =>
              new Promise<void>((done) => {
                if (worker.exitCode !== null || worker.signalCode !== null) return done()
                worker.once('exit', () => done())
                worker.kill('SIGTERM')
              }),
          ),
        )
        await running.coordinator.stop()
        await running.store.close()
      }

      try {
        const deadline = Date.now() + 60_000
        let online = 0
        let page = await client.searchOffers({ limit: 50 })
        // Ready when every worker is online and listed (the marketplace follows the store a moment later).
        while (Date.now() < deadline) {
          const { devices } = await supplier.listDevices()
          online = devices.filter((device) => device.state === 'online' && device.inventory !== null).length
          page = await client.searchOffers({ limit: 50 })
          if (online >= workerCount && page.total >= workerCount) break
          await new Promise((done) => setTimeout(done, 200))
        }
        process.stdout.write(
          `\ngpumesh local network is up\n\n` +
            `  coordinator   ${running.url}   (store: embedded PGlite in ${join(dataDir, 'coordinator')})\n` +
            (existsSync(join(builtConsoleDir, 'index.html'))
              ? `  console       ${running.url}/   (the explorer; log in with a key below)\n`
              : '') +
            `  API document  ${running.url}/v1/openapi.json\n` +
            `  workers       ${online} of ${workerCount} online${captures.length > 0 ? ' (replaying saved nvidia-smi captures)' : ' (probing this machine)'}\n` +
            (storedModel ? `  model store   ${storedModel}\n` : '') +
            (servesModels
              ? `  inference     ${running.url}/v1/chat/completions   (OpenAI-compatible; model tiny-chat, paid with the renter key once its replica is up)\n`
              : '') +
            `  supplier key  ${accounts.supplierKey}\n` +
            `  renter key    ${accounts.renterKey}\n` +
            `  (keys saved in ${join(dataDir, 'accounts.json')})\n\n` +
            `Marketplace (gpumesh offers search --coordinator ${running.url}):\n`,
        )
        printTable(
          ['device', 'hardware', 'where', '$/GPU-h', 'reliability'],
          page.offers.map((offer) => [
            offer.deviceId,
            offer.gpuCount === 0 ? offer.gpuModelName : `${offer.gpuCount}× ${offer.gpuModelName}`,
            `${offer.region} ${offer.country}`,
            offer.pricePerGpuHourUsd,
            reliabilityText(offer.reliability),
          ]),
        )
        if (online < workerCount) {
          process.exitCode = 1
          process.stderr.write(
            `only ${online} of ${workerCount} workers came online within 60 s; see their logs above\n`,
          )
        }
        if (!flags['exitWhenReady']) {
          process.stdout.write('\nPress Ctrl-C to stop the network.\n')
          await untilSignal()
        }
      } finally {
        await stopAll()
      }
    })
}

/** The repository's own tiny model, put in the local network's model store once (see docs/models.md). */
async function pushShippedModel(
  coordinatorUrl: string,
  operatorKeyPath: string,
): Promise<string | undefined> {
  const directory = join(repoRoot, 'python/models/tiny-chat')
  if (!existsSync(join(directory, 'config.json')) || !existsSync(operatorKeyPath)) return undefined
  const body = describeModelDirectory(directory)
  const operator = new GpumeshClient({
    baseUrl: coordinatorUrl,
    apiKey: readFileSync(operatorKeyPath, 'utf8').trim(),
  })
  try {
    const known = (await operator.listModels()).models.find(
      (model) => model.name === body.name && model.version === body.version,
    )
    if (!known) {
      const created = await operator.createModel(body)
      for (const artifact of created.artifacts.filter((a) => !a.stored))
        await operator.uploadArtifact(artifact.sha256, readFileSync(join(directory, artifact.path)))
    }
    return `${body.name} ${body.version} (gpumesh model ls)`
  } catch (error) {
    process.stderr.write(
      `gpumesh up: could not put ${body.name} in the model store: ${(error as Error).message}\n`,
    )
    return undefined
  }
}

async function localAccounts(client: GpumeshClient, dataDir: string): Promise<LocalAccounts> {
  const path = join(dataDir, 'accounts.json')
  if (existsSync(path)) {
    const saved = JSON.parse(readFileSync(path, 'utf8')) as LocalAccounts
    return { ...saved, coordinatorUrl: client.baseUrl }
  }
  const supplier = await client.createAccount({ name: 'local-supplier', roles: ['supplier'] })
  const renter = await client.createAccount({ name: 'local-renter', roles: ['renter'] })
  const accounts = {
    coordinatorUrl: client.baseUrl,
    supplierKey: supplier.apiKey.key,
    renterKey: renter.apiKey.key,
  }
  mkdirSync(dataDir, { recursive: true, mode: 0o700 })
  writeFileSync(path, `${JSON.stringify(accounts, null, 2)}\n`, { mode: 0o600 })
  return accounts
}
