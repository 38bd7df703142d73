import { gmtUnitsPerGmt } from '@gpumesh/core'
import { ledgerAccounts } from '@gpumesh/ledger'
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { CoordinatorSettings } from '@gpumesh/protocol'
import type { DeviceView } from '@gpumesh/protocol'
import { GpumeshClient } from '@gpumesh/sdk'
import type { Command } from 'commander'
import { printTable, reliabilityText } from '../output.ts'
import { describeModelDirectory } from './models.ts'
import { integerFlag, loadSettings } from '../settings.ts'
import { builtConsoleDir, startCoordinator } from './coordinator.ts'
import { untilSignal } from '../shutdown-signal.ts'
import { readCredentials, saveCredentials } from '../credentials.ts'
import { prepareMachine } from '../setup/machine.ts'
import {
  bootstrapTimings,
  featuresOf,
  formatFeatures,
  formatTimings,
  nextCommands,
  stepTimings,
  type PhaseTiming,
} from '../setup/banner.ts'

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

/** How long `up` waits for the first model replica before printing its banner anyway. */
const upReplicaTimeoutMs = 180_000
/** How long `up` waits for its workers to be online, self-tested and verified. */
const upReadyTimeoutMs = 120_000
/** What the local renter starts with from the faucet, once per data dir. */
const localRenterFundsGmt = '100'

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
    .option('--no-install', 'install nothing (system packages, the Python runtime): start with what is there')
    .action(async (flags: Record<string, string | boolean | undefined>) => {
      // Heard from the start: a Ctrl-C while the network comes up stops it as cleanly as one after the banner
      // (each wait below gives up, and `finally` stops the workers already started). While the machine is
      // being prepared there is nothing of ours to stop, and the installers got the Ctrl-C too: end at once.
      let stopping = false
      let preparingMachine = true
      const stopRequested = untilSignal().then(() => {
        stopping = true
        if (preparingMachine) process.exit(130)
      })
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
      const say = (line: string) => process.stderr.write(`gpumesh up: ${line}\n`)
      const timings: PhaseTiming[] = bootstrapTimings(process.env['GPUMESH_BOOTSTRAP_TIMINGS'])
      const timed = async <T>(phase: string, work: () => Promise<T>): Promise<T> => {
        const startedAt = performance.now()
        const result = await work()
        timings.push({ phase, durationMs: Math.round(performance.now() - startedAt) })
        return result
      }

      // What the product needs on this machine, once: later runs find it there and skip it.
      const steps = await prepareMachine({
        repoRoot,
        install: flags['install'] !== false,
        log: (line) => say(`  | ${line}`),
      })
      for (const step of steps)
        say(
          `${step.name}: ${step.outcome === 'off' ? `OFF, ${step.detail}` : step.detail} (${(step.durationMs / 1000).toFixed(1)} s)` +
            (step.fix ? `\n  turn it on: ${step.fix}` : ''),
        )
      timings.push(...stepTimings(steps))
      preparingMachine = false

      const running = await timed('coordinator', () => startCoordinator(settings))
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
      const renter = new GpumeshClient({ baseUrl: running.url, apiKey: accounts.renterKey })
      // The renter starts with test GMT, once: the request id makes a restart a replay, not a second claim.
      await renter.claimFaucet({ amountGmt: localRenterFundsGmt, requestId: 'gpumesh-up-initial-funds' })
      const login = saveLocalLogin(running.url, accounts.renterKey)
      const storedModel = await pushShippedModel(running.url, join(dataDir, 'coordinator', 'operator.key'))
      const supplier = new GpumeshClient({ baseUrl: running.url, apiKey: accounts.supplierKey })
      const captures = flags['sampleGpus'] ? sampleCaptures() : []

      const workers: ChildProcess[] = []
      const workersStartedAt = performance.now()
      for (let index = 0; index < workerCount && !stopping; index += 1) {
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
          // Idle machines serve the store's models; each worker's self-test says whether it can.
          ...(storedModel ? ['--serve-models'] : []),
        ]
        workers.push(spawn(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit'] }))
      }

      // Each worker stops its replicas and cluster nodes before it exits (a second signal does not cut it short).
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
        const deadline = Date.now() + upReadyTimeoutMs
        let online = 0
        let devices: DeviceView[] = []
        let page = await client.searchOffers({ limit: 50 })
        // Ready when every worker is online and has said what it can do (its self-test takes seconds).
        while (Date.now() < deadline && !stopping) {
          devices = (await supplier.listDevices()).devices
          // ...and has answered its first proof-of-compute challenge: renters place on verified machines.
          online = devices.filter(
            (device) =>
              device.state === 'online' &&
              device.inventory !== null &&
              device.capabilities !== null &&
              (device.verificationState === 'verified' || device.verificationState === 'failed'),
          ).length
          if (online >= workerCount) break
          await new Promise((done) => setTimeout(done, 200))
        }
        timings.push({
          phase: 'workers online',
          durationMs: Math.round(performance.now() - workersStartedAt),
        })
        // The marketplace follows the store a moment later.
        for (let tries = 0; tries < 25 && !stopping; tries += 1) {
          page = await client.searchOffers({ limit: 50 })
          const rentable = devices.filter((device) => device.capabilities?.clusterNodes.available).length
          if (page.total >= rentable) break
          await new Promise((done) => setTimeout(done, 200))
        }
        const features = featuresOf(devices, storedModel !== undefined)
        // Ready to use means the printed commands work now: with inference on, the model is being served.
        if (features.find((feature) => feature.name === 'inference')?.on) {
          say('waiting for the model replica to be ready (the first start loads Ray Serve: about 20 s)')
          const replicaStartedAt = performance.now()
          const replicaDeadline = Date.now() + upReplicaTimeoutMs
          let served = false
          while (!served && !stopping && Date.now() < replicaDeadline) {
            served = (await client.servedModels()).data.some((model) => model.replicas > 0)
            if (!served) await new Promise((done) => setTimeout(done, 500))
          }
          timings.push({
            phase: 'model replica',
            durationMs: Math.round(performance.now() - replicaStartedAt),
            ...(served ? {} : { note: 'not ready yet' }),
          })
          if (!served && !stopping)
            say(`no replica ready within ${upReplicaTimeoutMs / 1000} s; ./gpumesh device ls says why`)
        }
        if (stopping) return
        writeFileSync(join(dataDir, 'up-timings.json'), `${JSON.stringify({ timings, steps }, null, 2)}\n`)
        process.stdout.write(
          `\ngpumesh local network is up\n\n` +
            `  coordinator   ${running.url}   (store: embedded PGlite in ${join(dataDir, 'coordinator')})\n` +
            (existsSync(join(builtConsoleDir, 'index.html'))
              ? `  console       ${running.url}/   (the explorer; log in with a key below)\n`
              : '') +
            `  API document  ${running.url}/v1/openapi.json\n` +
            `  workers       ${online} of ${workerCount} online${captures.length > 0 ? ' (replaying saved nvidia-smi captures)' : ' (probing this machine)'}\n` +
            (storedModel ? `  model store   ${storedModel}\n` : '') +
            (features.find((feature) => feature.name === 'inference')?.on
              ? `  inference     ${running.url}/v1/chat/completions   (OpenAI-compatible; model tiny-chat, paid with the renter key once its replica is up)\n`
              : '') +
            `  supplier key  ${accounts.supplierKey}\n` +
            `  renter key    ${accounts.renterKey}   (funded with ${localRenterFundsGmt} GMT from the faucet)\n` +
            `  (keys saved in ${join(dataDir, 'accounts.json')})\n` +
            `  login         ${login}\n\n` +
            `Features (each worker's self-test; ./gpumesh worker doctor shows every check):\n` +
            formatFeatures(features) +
            `\n${formatTimings(timings)}\n` +
            `Marketplace (./gpumesh offers search):\n`,
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
        process.stdout.write(`\n${nextCommands(running.url, features, accounts.renterKey)}`)
        if (online < workerCount) {
          process.exitCode = 1
          process.stderr.write(
            `only ${online} of ${workerCount} workers came online and verified within ${upReadyTimeoutMs / 1000} s; see their logs above (./gpumesh device ls says why)\n`,
          )
        }
        if (!flags['exitWhenReady']) {
          process.stdout.write('\nPress Ctrl-C to stop the network.\n')
          await stopRequested
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

/**
 * Saves the local renter as this machine's login, so the next command just works. A login to another
 * coordinator is kept: the user chose it, and is told how to use the local one instead.
 */
function saveLocalLogin(coordinatorUrl: string, renterKey: string): string {
  const saved = readCredentials()
  if (saved && saved.coordinatorUrl !== coordinatorUrl && !isLocalUrl(saved.coordinatorUrl))
    return `kept your login to ${saved.coordinatorUrl}; for this network: ./gpumesh login --coordinator ${coordinatorUrl} --api-key <renter key>`
  const path = saveCredentials({ coordinatorUrl, apiKey: renterKey })
  return `the renter key, saved in ${path} (./gpumesh login --coordinator ${coordinatorUrl} --api-key <supplier key> switches)`
}

function isLocalUrl(url: string): boolean {
  return /^https?:\/\/(127\.0\.0\.1|localhost)(:|\/|$)/.test(url)
}
