import { resolve } from 'node:path'
import { WorkerSettings } from '@gpumesh/protocol'
import {
  createPythonProver,
  createSelfTest,
  createWorkerAgent,
  createWorkerMetrics,
  describeCapabilities,
  serveWorkerMetrics,
  formatInventoryTable,
  probeHardware,
  referenceProver,
  resolvePythonPath,
  runComputeSpeedtest,
  type Prover,
  type WorkerLogger,
} from '@gpumesh/worker'
import { execFileSync } from 'node:child_process'
import type { Command } from 'commander'
import { printJson, printTable } from '../output.ts'
import { UsageError } from '../credentials.ts'
import { integerFlag, loadSettings } from '../settings.ts'
import { createLogger, workerLoggerOf } from '../logging.ts'
import { untilSignal } from '../shutdown-signal.ts'

/** The Python prover from the managed environment; the TypeScript reference only where numpy is missing. */
function chooseProver(logger: WorkerLogger): Prover {
  const pythonPath = resolvePythonPath(process.env)
  try {
    execFileSync(pythonPath, ['-c', 'import numpy'], { stdio: 'ignore', timeout: 30_000 })
    return createPythonProver(pythonPath)
  } catch {
    logger.warn(
      'no Python with numpy found (run scripts/setup-python.sh): proof-of-compute uses the slow reference prover',
      {
        pythonPath,
      },
    )
    return referenceProver
  }
}

export function registerWorkerCommands(program: Command): void {
  const worker = program.command('worker').description('run the supplier agent on a machine with GPUs')
  worker
    .command('start')
    .description('enroll this machine (first run, with --token) and keep it connected to the coordinator')
    .option('--coordinator <url>', 'coordinator URL, e.g. https://coordinator.example')
    .option('--token <token>', 'one-time enrollment token (gme_...); needed on the first run only')
    .option('--state-dir <dir>', 'identity key and enrollment (default .gpumesh/worker)')
    .option('--region <region>', 'region label, e.g. eu-west (default local)')
    .option('--country <code>', 'ISO 3166-1 alpha-2 country code, e.g. DE')
    .option(
      '--price-per-gpu-hour <usd>',
      'asking price in USD per GPU-hour (per node-hour without GPUs); with --pricing auto, the minimum',
    )
    .option(
      '--pricing <mode>',
      "fixed (your price) or auto (the network's pricing engine, see docs/pricing.md)",
    )
    .option('--nvidia-smi-xml <file>', 'read a saved `nvidia-smi -q -x` output instead of running nvidia-smi')
    .option(
      '--speedtest-interval-ms <ms>',
      'run the speedtest soon after start, then this often; 0 = never (default 86400000)',
    )
    .option('--no-clusters', 'do not accept cluster nodes (WireGuard mesh and Ray; they need root)')
    .option(
      '--mesh-endpoint-host <ipv4>',
      "address peers reach this machine's WireGuard at (default: as seen by the coordinator)",
    )
    .option('--cluster-user <uid:gid>', 'unprivileged user cluster processes run as (default 65534:65534)')
    .option(
      '--cluster-node-cpus <n>',
      "CPUs a cluster node advertises to Ray (default: this machine's count)",
    )
    .option(
      '--ray-object-store-memory-bytes <bytes>',
      "Ray object store per cluster node (default: Ray's own)",
    )
    .option(
      '--rtt-probe-port <port>',
      'UDP port other workers measure round trips to (default: any free port)',
    )
    .option(
      '--serve-models',
      'serve models from the store while nobody rents this machine, for per-token income (needs root)',
    )
    .option(
      '--serve-min-price <usd>',
      'lowest price per GPU-hour this machine serves models for (default: its rental price)',
    )
    .option(
      '--serve-host <ipv4>',
      'address the gateway reaches model replicas at (default: as seen by the coordinator)',
    )
    .option('--serve-port <port>', 'TCP port of the model relay (default: any free port)')
    .option('--wireguard-go <command>', 'the wireguard-go to run (default: wireguard-go on PATH)')
    .option(
      '--self-test-interval-ms <ms>',
      'test what this machine can do this often; 0 = only at start and after a failure (default 300000)',
    )
    .option('--metrics-port <port>', 'serve Prometheus metrics on 127.0.0.1:PORT (0 = any free port)')
    .option('--netns-mount-namespace <path>', 'only when this worker runs under `ip netns exec` (test hosts)')
    .option('--config <file>', 'JSON settings file; flags override it')
    .option('--log-level <level>', 'error|warn|info|debug|silent (default info)')
    .action(async (flags: Record<string, string | boolean | undefined>) => {
      // First of all: a stop asked for while the agent starts must still run agent.stop(), not end the process.
      const stopRequested = untilSignal()
      const text = (name: string) => flags[name] as string | undefined
      const settings = loadSettings(WorkerSettings, 'worker settings', text('config'), {
        coordinatorUrl: text('coordinator') ?? process.env['GPUMESH_COORDINATOR'],
        token: text('token') ?? process.env['GPUMESH_ENROLLMENT_TOKEN'],
        stateDir: text('stateDir'),
        region: text('region'),
        country: text('country')?.toUpperCase(),
        askingPricePerGpuHourUsd: text('pricePerGpuHour'),
        pricingMode: text('pricing'),
        nvidiaSmiXmlPath: text('nvidiaSmiXml'),
        logLevel: text('logLevel'),
        speedtestIntervalMs: integerFlag(text('speedtestIntervalMs')),
        // commander sets `clusters` true unless --no-clusters; only the flag's presence overrides the file
        clustersEnabled: flags['clusters'] === false ? false : undefined,
        meshEndpointHost: text('meshEndpointHost'),
        clusterUser: text('clusterUser'),
        clusterNodeCpus: integerFlag(text('clusterNodeCpus')),
        rayObjectStoreMemoryBytes: integerFlag(text('rayObjectStoreMemoryBytes')),
        netnsMountNamespace: text('netnsMountNamespace'),
        wireguardGoCommand: text('wireguardGo'),
        selfTestIntervalMs: integerFlag(text('selfTestIntervalMs')),
        metricsPort: integerFlag(text('metricsPort')),
        rttProbePort: integerFlag(text('rttProbePort')),
        serveModels: flags['serveModels'] === true ? true : undefined,
        serveMinPricePerGpuHourUsd: text('serveMinPrice'),
        serveHost: text('serveHost'),
        servePort: integerFlag(text('servePort')),
      })
      const logger = workerLoggerOf(
        createLogger({
          component: 'worker',
          level: settings.logLevel,
          base: { stateDir: settings.stateDir },
        }),
      )
      const [uid, gid] = settings.clusterUser.split(':').map(Number) as [number, number]
      const canRunClusters = process.getuid?.() === 0
      if (settings.serveModels && !canRunClusters)
        logger.warn('not running as root: this machine cannot serve models (their sandbox needs root)')
      if (settings.clustersEnabled && !canRunClusters)
        logger.warn(
          'not running as root: this machine cannot host cluster nodes (network namespaces need root)',
        )
      // Metrics read the agent lazily: it is made below, with them among its components.
      const started: { agent?: { clusterNodeCount: number; modelReplicaCount: number } } = {}
      const metrics =
        settings.metricsPort === undefined
          ? undefined
          : createWorkerMetrics({
              clusterNodes: () => started.agent?.clusterNodeCount ?? 0,
              modelReplicas: () => started.agent?.modelReplicaCount ?? 0,
            })
      const metricsServer = metrics
        ? await serveWorkerMetrics(metrics.registry, settings.metricsPort!)
        : undefined
      if (metricsServer) logger.info(`metrics on http://127.0.0.1:${metricsServer.port}/metrics`)
      const agent = createWorkerAgent(
        {
          logger,
          ...(metrics ? { metrics } : {}),
          ...(settings.clustersEnabled && canRunClusters
            ? {
                clusters: {
                  pythonPath: resolvePythonPath(process.env),
                  runAs: { uid, gid },
                  wireguardGoCommand: settings.wireguardGoCommand,
                  ...(settings.meshEndpointHost ? { endpointHost: settings.meshEndpointHost } : {}),
                  ...(settings.clusterNodeCpus ? { numCpus: settings.clusterNodeCpus } : {}),
                  ...(settings.rayObjectStoreMemoryBytes
                    ? { objectStoreMemoryBytes: settings.rayObjectStoreMemoryBytes }
                    : {}),
                  ...(settings.netnsMountNamespace
                    ? { netnsMountNamespace: settings.netnsMountNamespace }
                    : {}),
                },
              }
            : {}),
          ...(canRunClusters
            ? {
                models: {
                  pythonPath: resolvePythonPath(process.env),
                  runAs: { uid, gid },
                  ...(settings.clusterNodeCpus ? { numCpus: settings.clusterNodeCpus } : {}),
                  ...(settings.rayObjectStoreMemoryBytes
                    ? { objectStoreMemoryBytes: settings.rayObjectStoreMemoryBytes }
                    : {}),
                  ...(settings.netnsMountNamespace
                    ? { netnsMountNamespace: settings.netnsMountNamespace }
                    : {}),
                },
              }
            : {}),
          selfTest: createSelfTest({
            pythonPath: resolvePythonPath(process.env),
            runAs: { uid, gid },
            wireguardGoCommand: settings.wireguardGoCommand,
            clustersEnabled: settings.clustersEnabled,
            serveModels: settings.serveModels === true,
            ...(settings.netnsMountNamespace ? { netnsMountNamespace: settings.netnsMountNamespace } : {}),
            nowMs: () => Date.now(),
          }),
          prover: chooseProver(logger),
          computeSpeedtest: () => runComputeSpeedtest({ pythonPath: resolvePythonPath(process.env) }),
          probe: () =>
            probeHardware({
              diskPath: resolve(settings.stateDir),
              ...(settings.nvidiaSmiXmlPath ? { nvidiaSmiXmlPath: settings.nvidiaSmiXmlPath } : {}),
            }),
        },
        settings,
      )
      started.agent = agent
      await agent.start()
      const outcome: { fatalError?: Error } = await Promise.race([
        stopRequested.then(async (signal) => {
          await agent.stop(`received ${signal}`)
          return {}
        }),
        agent.finished,
      ])
      await metricsServer?.close()
      if (outcome.fatalError) process.exitCode = 1
    })

  worker
    .command('doctor')
    .description(
      "test what this machine can do for the network (the agent's own self-test): every check, and the fix for each failure",
    )
    .option(
      '--cluster-user <uid:gid>',
      'the sandbox user cluster nodes and replicas run as (default 65534:65534)',
    )
    .option('--wireguard-go <command>', 'the wireguard-go to test (default: wireguard-go on PATH)')
    .option('--no-clusters', 'as a worker started with --no-clusters')
    .option('--no-serve-models', 'as a worker started without --serve-models')
    .option('--nvidia-smi-xml <file>', 'read a saved `nvidia-smi -q -x` output instead of running nvidia-smi')
    .option('--json', 'machine-readable output')
    .action(async (flags: Record<string, string | boolean | undefined>) => {
      const clusterUser = (flags['clusterUser'] as string | undefined) ?? '65534:65534'
      if (!/^[0-9]{1,10}:[0-9]{1,10}$/.test(clusterUser))
        throw new UsageError('--cluster-user must be uid:gid, e.g. 65534:65534')
      const [uid, gid] = clusterUser.split(':').map(Number) as [number, number]
      const inventory = await probeHardware({
        diskPath: resolve('.'),
        ...(flags['nvidiaSmiXml'] ? { nvidiaSmiXmlPath: flags['nvidiaSmiXml'] as string } : {}),
      })
      const capabilities = await createSelfTest({
        pythonPath: resolvePythonPath(process.env),
        runAs: { uid, gid },
        wireguardGoCommand: (flags['wireguardGo'] as string | undefined) ?? 'wireguard-go',
        clustersEnabled: flags['clusters'] !== false,
        serveModels: flags['serveModels'] !== false,
        nowMs: () => Date.now(),
      })(inventory)
      if (flags['json']) printJson(capabilities)
      else {
        printTable(
          ['check', 'ok', 'detail'],
          capabilities.checks.map((check) => [check.name, check.ok ? 'yes' : 'NO', check.detail]),
        )
        for (const line of describeCapabilities(capabilities)) process.stdout.write(`${line}\n`)
        for (const capability of [capabilities.clusterNodes, capabilities.modelReplicas])
          if (!capability.available && capability.fix) process.stdout.write(`  fix: ${capability.fix}\n`)
      }
      if (!capabilities.clusterNodes.available && !capabilities.modelReplicas.available) process.exitCode = 1
    })

  worker
    .command('probe')
    .description('print the hardware the agent detects: GPUs, CPU, RAM, disk')
    .option('--json', 'machine-readable output')
    .option(
      '--nvidia-smi-xml <file>',
      'parse a saved `nvidia-smi -q -x` output instead of running nvidia-smi',
    )
    .option('--disk-path <dir>', 'filesystem to report (default the current directory)')
    .action(async (flags: { json?: boolean; nvidiaSmiXml?: string; diskPath?: string }) => {
      const inventory = await probeHardware({
        diskPath: resolve(flags.diskPath ?? '.'),
        ...(flags.nvidiaSmiXml ? { nvidiaSmiXmlPath: flags.nvidiaSmiXml } : {}),
      })
      if (flags.json) printJson(inventory)
      else process.stdout.write(`${formatInventoryTable(inventory)}\n`)
    })
}
