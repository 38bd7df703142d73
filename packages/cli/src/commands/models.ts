import { createHash } from 'node:crypto'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import type { CreateModelBody, ModelView } from '@gpumesh/protocol'
import type { Command } from 'commander'
import { clientFrom, UsageError, type ConnectionFlags } from '../credentials.ts'
import { printJson, printTable } from '../output.ts'
import { connectionOptions } from './account.ts'

// `gpumesh model`: the model store. `push` reads a model directory in gpumesh's format (config.json and its
// weights, see python/gpumesh_models/README.md), hashes every file, describes the version to the coordinator
// and uploads only the files it does not have yet.

const mib = (bytes: number) => `${(bytes / (1024 * 1024)).toFixed(1)} MiB`

type DirectoryConfig = {
  format?: unknown
  name?: unknown
  version?: unknown
  tasks?: unknown
  architecture?: unknown
  license?: unknown
  context_length?: unknown
  max_output_tokens?: unknown
}

/** What `push` sends for a model directory: read and checked here, validated again by the coordinator. */
export function describeModelDirectory(directory: string, requiredVramMib?: number): CreateModelBody {
  const configPath = join(directory, 'config.json')
  if (!existsSync(configPath)) throw new UsageError(`${directory} has no config.json: not a model directory`)
  let config: DirectoryConfig
  try {
    config = JSON.parse(readFileSync(configPath, 'utf8')) as DirectoryConfig
  } catch (error) {
    throw new UsageError(`${configPath} is not JSON: ${(error as Error).message}`)
  }
  const text = (field: keyof DirectoryConfig) => {
    const value = config[field]
    if (typeof value !== 'string' || value.length === 0)
      throw new UsageError(`${configPath}: ${field} must be a string`)
    return value
  }
  const integer = (field: keyof DirectoryConfig) => {
    const value = config[field]
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1)
      throw new UsageError(`${configPath}: ${field} must be a positive integer`)
    return value
  }
  if (!Array.isArray(config.tasks) || config.tasks.length === 0)
    throw new UsageError(`${configPath}: tasks must list chat, completion or embeddings`)
  const files = readdirSync(directory)
    .filter((name) => !name.startsWith('.') && statSync(join(directory, name)).isFile())
    .sort()
  const artifacts = files.map((path) => {
    const bytes = readFileSync(join(directory, path))
    return { path, sha256: createHash('sha256').update(bytes).digest('hex'), sizeBytes: bytes.length }
  })
  const weightsBytes = artifacts
    .filter((artifact) => artifact.path !== 'config.json')
    .reduce((sum, a) => sum + a.sizeBytes, 0)
  return {
    name: text('name'),
    version: text('version'),
    tasks: config.tasks as CreateModelBody['tasks'],
    format: text('format'),
    runtime: text('architecture'),
    license: text('license'),
    // Weights, activations and the runtime's own needs: twice the weights is a floor, not a promise.
    requiredVramMib: requiredVramMib ?? Math.ceil((2 * weightsBytes) / (1024 * 1024)),
    contextTokens: integer('context_length'),
    maxOutputTokens: integer('max_output_tokens'),
    artifacts,
  }
}

function splitNameVersion(text: string): { name: string; version?: string } {
  const [name, version, extra] = text.split(':')
  if (!name || extra !== undefined) throw new UsageError(`expected NAME or NAME:VERSION, got "${text}"`)
  return version ? { name, version } : { name }
}

function printModel(model: ModelView) {
  process.stdout.write(
    `${model.name} ${model.version} (${model.id}): ${model.state}\n` +
      `  tasks ${model.tasks.join(', ')}; format ${model.format}, runtime ${model.runtime}; license ${model.license}\n` +
      `  context ${model.contextTokens} tokens, output at most ${model.maxOutputTokens}; needs ${model.requiredVramMib} MiB VRAM\n`,
  )
  printTable(
    ['artifact', 'size', 'sha256', 'stored'],
    model.artifacts.map((artifact) => [
      artifact.path,
      mib(artifact.sizeBytes),
      artifact.sha256,
      artifact.stored ? 'yes' : 'no',
    ]),
  )
}

export function registerModelCommands(program: Command): void {
  const model = program
    .command('model')
    .description('the model store: model versions and their artifacts, checked by hash')
  connectionOptions(
    model.command('push <directory>').description('add a model version from a model directory (operators)'),
  )
    .option('--vram-mib <n>', 'VRAM a replica needs (default: twice the weights)')
    .option('--min-replicas <n>', 'devices serving it at all times while idle ones exist (default 1)')
    .option('--max-replicas <n>', 'devices serving it at most, as load grows (default 4)')
    .option('--json', 'machine-readable output')
    .action(
      async (
        directory: string,
        flags: ConnectionFlags & {
          vramMib?: string
          minReplicas?: string
          maxReplicas?: string
          json?: boolean
        },
      ) => {
        const whole = (text: string | undefined, flag: string) => {
          if (text === undefined) return undefined
          const value = Number(text)
          if (!Number.isInteger(value) || value < 0) throw new UsageError(`${flag} must be a whole number`)
          return value
        }
        const vram = whole(flags.vramMib, '--vram-mib')
        const minReplicas = whole(flags.minReplicas, '--min-replicas') ?? 1
        const maxReplicas = whole(flags.maxReplicas, '--max-replicas') ?? Math.max(4, minReplicas)
        if (minReplicas > maxReplicas) throw new UsageError('--min-replicas must not be above --max-replicas')
        const body = { ...describeModelDirectory(directory, vram), serving: { minReplicas, maxReplicas } }
        const client = clientFrom(flags, true)
        const created = await client.createModel(body)
        for (const artifact of created.artifacts.filter((a) => !a.stored)) {
          process.stderr.write(`uploading ${artifact.path} (${mib(artifact.sizeBytes)})\n`)
          await client.uploadArtifact(artifact.sha256, readFileSync(join(directory, artifact.path)))
        }
        const final = await client.getModel(body.name, body.version)
        if (flags.json) return printJson(final)
        printModel(final)
      },
    )
  connectionOptions(
    model
      .command('serve <name:version>')
      .description(
        'how many idle devices serve a model version: at least MIN, up to MAX with load (operators)',
      ),
  )
    .requiredOption('--min-replicas <n>', 'devices serving it at all times while idle ones exist')
    .requiredOption('--max-replicas <n>', 'devices serving it at most')
    .action(async (text: string, flags: ConnectionFlags & { minReplicas: string; maxReplicas: string }) => {
      const { name, version } = splitNameVersion(text)
      if (!version) throw new UsageError('name the version: NAME:VERSION')
      const minReplicas = Number(flags.minReplicas)
      const maxReplicas = Number(flags.maxReplicas)
      if (
        !Number.isInteger(minReplicas) ||
        !Number.isInteger(maxReplicas) ||
        minReplicas < 0 ||
        maxReplicas < 0
      )
        throw new UsageError('--min-replicas and --max-replicas must be whole numbers')
      const set = await clientFrom(flags, true).setModelServing(name, version, { minReplicas, maxReplicas })
      process.stdout.write(`${name} ${version}: ${set.minReplicas} to ${set.maxReplicas} replicas\n`)
    })
  connectionOptions(model.command('ls').description('every model version in the store'))
    .option('--json', 'machine-readable output')
    .action(async (flags: ConnectionFlags & { json?: boolean }) => {
      const list = await clientFrom(flags, false).listModels()
      if (flags.json) return printJson(list)
      printTable(
        ['name', 'version', 'tasks', 'state', 'size', 'license'],
        list.models.map((m) => [m.name, m.version, m.tasks.join(','), m.state, mib(m.sizeBytes), m.license]),
      )
    })
  connectionOptions(
    model.command('show <name>').description('one model version (NAME:VERSION, or NAME for its newest)'),
  )
    .option('--json', 'machine-readable output')
    .action(async (text: string, flags: ConnectionFlags & { json?: boolean }) => {
      const { name, version } = splitNameVersion(text)
      const client = clientFrom(flags, false)
      const found = version
        ? await client.getModel(name, version)
        : (await client.listModels()).models.find((m) => m.name === name)
      if (!found) throw new UsageError(`no model named ${name} in the store`)
      if (flags.json) return printJson(found)
      printModel(found)
    })
  connectionOptions(
    model.command('rm <name:version>').description('remove a model version (operators)'),
  ).action(async (text: string, flags: ConnectionFlags) => {
    const { name, version } = splitNameVersion(text)
    if (!version) throw new UsageError('name the version to remove: NAME:VERSION')
    const removed = await clientFrom(flags, true).removeModel(name, version)
    process.stdout.write(`removed ${removed.name} ${removed.version}\n`)
  })
}
