import { once } from 'node:events'
import type { Stats } from 'node:fs'
import { readdir, stat } from 'node:fs/promises'
import { basename, resolve } from 'node:path'
import {
  createValidator,
  JobId,
  maxJobEntrypointLength,
  maxWorkingDirBytes,
  type JobView,
} from '@gpumesh/protocol'
import type { GpumeshClient } from '@gpumesh/sdk'
import type { Command } from 'commander'
import { create as createTar } from 'tar'
import { clientFrom, UsageError, type ConnectionFlags } from '../credentials.ts'
import { printJson, printTable } from '../output.ts'
import { connectionOptions } from './account.ts'
import { createAnsiStripper, splitJobMessage } from '../job-output.ts'
import { clusterRef, onInterrupt, pollWaitMs, retrying, time } from './cluster.ts'

const jobIdValidator = createValidator(JobId, 'job id')

/** Never sent with a working dir: version control, dependency trees and caches the nodes rebuild. */
export const excludedWorkingDirNames: ReadonlySet<string> = new Set([
  '.git',
  'node_modules',
  '__pycache__',
  '.venv',
])
/** A refused working dir is packed on to name its size up to this multiple of the limit, then abandoned. */
const workingDirScanLimitFactor = 8
/** Log chunks per request; the coordinator's maximum. */
const logPageLimit = 1000

type Flags = ConnectionFlags & Record<string, string | boolean | undefined>
const clusterFlagHelp = "cluster id (cls_...) or name; by default the job's own"

export function registerJobCommands(program: Command): void {
  const job = program.command('job').description('jobs run through Ray on a ready cluster')
  connectionOptions(
    job
      .command('submit')
      .description(
        'run a command on the cluster\'s head node and stream its output, e.g. "-- python train.py"',
      )
      .argument(
        '<command...>',
        'the command, after "--"; arguments with spaces or shell characters are quoted',
      ),
  )
    .requiredOption('--cluster <id>', 'cluster id (cls_...) or name')
    .option(
      '--working-dir <dir>',
      `send this directory (without ${[...excludedWorkingDirNames].join(', ')}); the command runs in it on every node`,
    )
    .option('--no-wait', 'print the job id and return; do not stream its output')
    .option('--json', 'machine-readable output (does not stream)')
    .action(async (command: string[], flags: Flags) => {
      const clusterId = await clusterRef(flags, '--cluster', flags['cluster'] as string)
      const entrypoint = entrypointOf(command)
      if (entrypoint.length > maxJobEntrypointLength)
        throw new UsageError(
          `the command is ${entrypoint.length} characters; at most ${maxJobEntrypointLength} (put it in a script in --working-dir)`,
        )
      const client = clientFrom(flags, true)
      const workingDir = flags['workingDir'] as string | undefined
      let workingDirTarGz: string | undefined
      if (workingDir !== undefined) {
        const packed = await packWorkingDir(workingDir)
        for (const path of packed.skipped)
          process.stderr.write(`skipped ${path}: not a regular file or directory (links are not sent)\n`)
        process.stderr.write(
          `packed ${workingDir}: ${packed.files} file${packed.files === 1 ? '' : 's'}, ${formatBytes(packed.tarGz.length)} compressed\n`,
        )
        workingDirTarGz = packed.tarGz.toString('base64')
      }
      const submitted = await client.submitJob(clusterId, {
        entrypoint,
        ...(workingDirTarGz === undefined ? {} : { workingDirTarGz }),
      })
      if (flags['json']) return printJson(submitted)
      if (flags['wait'] === false) {
        process.stdout.write(`${submitted.id}\n`)
        process.stderr.write(
          `follow it with: gpumesh job logs --cluster ${clusterId} ${submitted.id} --follow\n`,
        )
        return
      }
      process.stderr.write(`job ${submitted.id} submitted to ${clusterId}: ${entrypoint}\n`)
      const stopHint = onInterrupt(
        `stopped following; job ${submitted.id} keeps running.\n` +
          `  follow again:  gpumesh job logs --cluster ${clusterId} ${submitted.id} --follow\n` +
          `  stop it:       gpumesh job stop --cluster ${clusterId} ${submitted.id}\n`,
      )
      const finished = await streamJobLogs(client, clusterId, submitted.id, true)
      stopHint()
      reportFinished(finished)
    })

  connectionOptions(job.command('ls').description("a cluster's jobs, newest first"))
    .requiredOption('--cluster <id>', 'cluster id (cls_...) or name')
    .option('--json', 'machine-readable output')
    .action(async (flags: Flags) => {
      const clusterId = await clusterRef(flags, '--cluster', flags['cluster'] as string)
      const { jobs } = await clientFrom(flags, true).listJobs(clusterId)
      if (flags['json']) return printJson(jobs)
      if (jobs.length === 0) {
        process.stdout.write(
          `no jobs on ${clusterId} yet; run one with: gpumesh job submit --cluster ${clusterId} -- python train.py\n`,
        )
        return
      }
      printTable(
        ['id', 'status', 'exit code', 'command', 'created', 'finished'],
        jobs.map((view) => [
          view.id,
          view.status,
          view.exitCode ?? '-',
          truncate(view.entrypoint, 48),
          time(view.createdAtMs),
          time(view.finishedAtMs),
        ]),
      )
    })

  connectionOptions(
    job.command('show').description('one job and its status').argument('<job>', 'job id (job_...)'),
  )
    .option('--cluster <id>', clusterFlagHelp)
    .option('--json', 'machine-readable output')
    .action(async (jobId: string, flags: Flags) => {
      const checkedJobId = jobIdArgument(jobId)
      const clusterId = await clusterOfJob(flags, checkedJobId)
      const view = await clientFrom(flags, true).getJob(clusterId, checkedJobId)
      if (flags['json']) return printJson(view)
      const rows: [string, string][] = [
        ['cluster', view.clusterId],
        ['command', view.entrypoint],
        ['status', `${view.status}: ${view.message}`],
        ['exit code', view.exitCode === null ? '-' : String(view.exitCode)],
        ['created', time(view.createdAtMs)],
        ['finished', time(view.finishedAtMs)],
      ]
      process.stdout.write(`job ${view.id}\n`)
      for (const [label, value] of rows) process.stdout.write(`  ${label.padEnd(10)}${value}\n`)
    })

  connectionOptions(job.command('logs').description("a job's output").argument('<job>', 'job id (job_...)'))
    .option('--cluster <id>', clusterFlagHelp)
    .option('--follow', "keep streaming until the job finishes, then exit with the job's exit code")
    .action(async (jobId: string, flags: Flags) => {
      const checkedJobId = jobIdArgument(jobId)
      const clusterId = await clusterOfJob(flags, checkedJobId)
      const follow = flags['follow'] === true
      const view = await streamJobLogs(clientFrom(flags, true), clusterId, checkedJobId, follow)
      if (follow) reportFinished(view)
    })

  connectionOptions(
    job.command('stop').description('ask Ray to stop a job').argument('<job>', 'job id (job_...)'),
  )
    .option('--cluster <id>', clusterFlagHelp)
    .option('--json', 'machine-readable output')
    .action(async (jobId: string, flags: Flags) => {
      const checkedJobId = jobIdArgument(jobId)
      const clusterId = await clusterOfJob(flags, checkedJobId)
      const view = await clientFrom(flags, true).stopJob(clusterId, checkedJobId)
      if (flags['json']) return printJson(view)
      process.stdout.write(
        isFinished(view)
          ? `job ${view.id} already ${view.status}: ${view.message}\n`
          : `stop requested for job ${view.id} (${view.status}); see: gpumesh job show --cluster ${clusterId} ${view.id}\n`,
      )
    })
}

// --- logs --------------------------------------------------------------------------------------------------

/** Names a job's cluster: --cluster where given, else the job's own record (a job id names its cluster). */
async function clusterOfJob(flags: Flags, jobId: string): Promise<string> {
  const cluster = flags['cluster']
  if (typeof cluster === 'string') return clusterRef(flags, '--cluster', cluster)
  return (await clientFrom(flags, true).findJob(jobId)).clusterId
}

/**
 * Writes the job's output to stdout from its first chunk. Following, long-polls until the job has finished
 * and every chunk is out; otherwise stops at the last chunk there is now. Colour codes are kept only for a
 * terminal. A finished job that left no output streamed gets the tail Ray kept in its message instead.
 * Returns the job as last seen.
 */
async function streamJobLogs(
  client: GpumeshClient,
  clusterId: string,
  jobId: string,
  follow: boolean,
): Promise<JobView> {
  const keepColours = process.stdout.isTTY === true && !process.env['NO_COLOR']
  const stripper = createAnsiStripper()
  const clean = (text: string) => (keepColours ? text : stripper.strip(text))
  let after = 0
  let wroteOutput = false
  let endsWithNewline = true
  const write = async (text: string) => {
    if (text.length === 0) return
    await writeStdout(text)
    wroteOutput = true
    endsWithNewline = text.endsWith('\n')
  }
  for (;;) {
    const reply = await retrying(() =>
      client.jobLogs(clusterId, jobId, { after, limit: logPageLimit, waitMs: follow ? pollWaitMs : 0 }),
    )
    for (const chunk of reply.chunks) {
      await write(clean(chunk.text))
      after = chunk.seq
    }
    const caughtUp = reply.complete || (!follow && reply.chunks.length < logPageLimit)
    if (caughtUp) {
      if (!keepColours) await write(stripper.flush())
      if (!wroteOutput && isFinished(reply.job))
        await write(clean(splitJobMessage(reply.job.message).outputTail))
      // Keep the status line that follows on a line of its own.
      if (!endsWithNewline) await writeStdout('\n')
      return reply.job
    }
  }
}

async function writeStdout(text: string): Promise<void> {
  if (!process.stdout.write(text)) await once(process.stdout, 'drain')
}

function reportFinished(job: JobView): void {
  // Ray's message for a failed job goes on with the tail of the output: streamed above, so only its summary.
  process.stderr.write(
    `job ${job.id} ${job.status}${job.exitCode === null ? '' : ` (exit code ${job.exitCode})`}: ${splitJobMessage(job.message).summary}\n`,
  )
  process.exitCode = jobExitCode(job)
}

const isFinished = (job: Pick<JobView, 'status'>) =>
  job.status === 'succeeded' || job.status === 'failed' || job.status === 'stopped'

/** The job's own exit code where a process can exit with it; else 0 for success and 1 for anything else. */
export function jobExitCode(job: Pick<JobView, 'status' | 'exitCode'>): number {
  const succeeded = job.status === 'succeeded'
  const code = job.exitCode
  if (code !== null && Number.isInteger(code) && code >= 0 && code <= 255 && (code === 0) === succeeded)
    return code
  return succeeded ? 0 : 1
}

// --- entrypoint ---------------------------------------------------------------------------------------------

/** Words the shell takes as they are: no spaces, quotes, globs, variables or operators. */
const plainWord = /^[A-Za-z0-9_@%+=:,./-]+$/

/** Quotes `word` for a POSIX shell where it needs it: `train.py` stays, `it's` becomes `'it'\''s'`. */
export function shellQuote(word: string): string {
  return plainWord.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`
}

/** The command Ray runs: the words after `--`, each quoted as needed, joined with spaces. */
export function entrypointOf(words: readonly string[]): string {
  if (words.length === 0) throw new UsageError('give the command to run after "--", e.g. -- python train.py')
  return words.map(shellQuote).join(' ')
}

// --- working dir ---------------------------------------------------------------------------------------------

export type PackedWorkingDir = {
  /** The directory as a gzipped tar, names relative to it. */
  readonly tarGz: Buffer
  readonly files: number
  /** Symbolic links, sockets and the like, left out: the head node unpacks only files and directories. */
  readonly skipped: readonly string[]
}

/** Never lets tar store a file as a hard link to an earlier one: the head node refuses links. */
class NoLinkCache<K, V> extends Map<K, V> {
  override set(): this {
    return this
  }
}

/**
 * Packs `directory` as a gzipped tar in memory, without `excludedWorkingDirNames` at any depth; refuses,
 * naming the compressed size, when that exceeds `maxBytes`.
 */
export async function packWorkingDir(
  directory: string,
  maxBytes: number = maxWorkingDirBytes,
): Promise<PackedWorkingDir> {
  const root = resolve(directory)
  const stats = await stat(root).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') throw new UsageError(`--working-dir ${directory}: no such directory`)
    throw error
  })
  if (!stats.isDirectory()) throw new UsageError(`--working-dir ${directory}: not a directory`)
  const entries = (await readdir(root)).filter((name) => !excludedWorkingDirNames.has(name)).sort()
  if (entries.length === 0)
    throw new UsageError(`--working-dir ${directory}: nothing to send (empty, or only excluded names)`)

  let files = 0
  const skipped: string[] = []
  const pack = createTar(
    {
      gzip: true,
      cwd: root,
      portable: true,
      linkCache: new NoLinkCache(),
      filter: (path, entry) => {
        if (excludedWorkingDirNames.has(basename(path))) return false
        const entryStats = entry as Stats
        if (entryStats.isDirectory()) return true
        if (entryStats.isFile()) {
          files += 1
          return true
        }
        skipped.push(path)
        return false
      },
    },
    entries,
  )
  const scanLimitBytes = workingDirScanLimitFactor * maxBytes
  const chunks: Buffer[] = []
  let size = 0
  try {
    for await (const chunk of pack) {
      size += chunk.length
      if (size <= maxBytes) chunks.push(chunk)
      else if (size > scanLimitBytes) break
    }
  } catch (error) {
    const failure = error as NodeJS.ErrnoException
    if (failure.code !== undefined && failure.path !== undefined)
      throw new UsageError(`--working-dir ${directory}: cannot read ${failure.path} (${failure.code})`)
    throw error
  }
  if (size > maxBytes) {
    pack.destroy()
    const sizeText = size > scanLimitBytes ? `more than ${formatBytes(scanLimitBytes)}` : formatBytes(size)
    throw new UsageError(
      `--working-dir ${directory} is ${sizeText} compressed; the limit is ${formatBytes(maxBytes)}. ` +
        'Leave data sets and checkpoints out of it and have the job fetch them.',
    )
  }
  return { tarGz: Buffer.concat(chunks), files, skipped }
}

/** 1536 → "1.5 KiB". */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`
  const units = ['KiB', 'MiB', 'GiB']
  let value = bytes / 1024
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit += 1
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`
}

function jobIdArgument(value: string): string {
  if (!jobIdValidator.check(value))
    throw new UsageError(`<job>: "${value}" is not a job id (job_..., see gpumesh job ls)`)
  return value
}

const truncate = (text: string, length: number) =>
  text.length > length ? `${text.slice(0, length - 1)}…` : text
