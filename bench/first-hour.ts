// How long `./gpumesh up` takes on a fresh clone, by phase: the first run (Node 24, npm ci, the console build,
// the Debian packages, the managed Python runtime, the coordinator, the workers self-tested and verified, the
// model replica) and a second run on the same clone, where the installs are found done.
//
//   node bench/first-hour.ts [--runs 2] [--reinstall-system-packages]
//
// Method: `git clone` of this checkout's HEAD into a temporary directory (no .tools, node_modules or .venv),
// then `./gpumesh up --exit-when-ready` there `--runs` times, each on a free port with its own data dir; the
// phases are what `up` measured itself (<data-dir>/up-timings.json, and GPUMESH_BOOTSTRAP_TIMINGS from
// scripts/env.sh), beside the wall time this script saw for the whole command. With
// --reinstall-system-packages (root, on a machine you own: it removes wireguard-go and wireguard-tools first)
// the first run installs them too. The temporary clone is removed at the end, also on failure or Ctrl-C.

import { execFileSync, spawn } from 'node:child_process'
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { freeTcpPort } from '@gpumesh/testing'

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '2' },
    'reinstall-system-packages': { type: 'boolean', default: false },
  },
})
const runs = Number(values.runs)
if (!Number.isInteger(runs) || runs < 1 || runs > 5) throw new Error('--runs must be 1 to 5')

const repoRoot = resolve(import.meta.dirname, '..')
const workDir = mkdtempSync(join(tmpdir(), 'gpumesh-bench-first-hour-'))
chmodSync(workDir, 0o755)
const clone = join(workDir, 'gpumesh')
const cleanup = () => rmSync(workDir, { recursive: true, force: true })
process.once('SIGINT', () => {
  cleanup()
  process.exit(130)
})

type Timing = { phase: string; durationMs: number; note?: string }

async function runUp(run: number): Promise<{ wallMs: number; timings: Timing[] }> {
  const dataDir = join(workDir, `local-${run}`)
  const port = await freeTcpPort()
  const startedAt = performance.now()
  const child = spawn(
    join(clone, 'gpumesh'),
    ['up', '--exit-when-ready', '--port', String(port), '--data-dir', dataDir],
    {
      cwd: clone,
      env: {
        ...process.env,
        // As a new user's shell: the system Node only, so the clone brings Node 24 itself.
        PATH: (process.env['PATH'] ?? '')
          .split(':')
          .filter((dir) => !dir.includes('/.tools/'))
          .join(':'),
        GPUMESH_CONFIG_DIR: join(workDir, 'config'),
        GPUMESH_PYTHON_ENV: '',
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  )
  let stderr = ''
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const code = await new Promise<number | null>((done) => child.once('exit', done))
  const wallMs = performance.now() - startedAt
  if (code !== 0 || !existsSync(join(dataDir, 'up-timings.json')))
    throw new Error(`run ${run}: gpumesh up exited ${code}\n${stderr.slice(-4000)}`)
  const { timings } = JSON.parse(readFileSync(join(dataDir, 'up-timings.json'), 'utf8')) as {
    timings: Timing[]
  }
  return { wallMs, timings }
}

try {
  if (values['reinstall-system-packages']) {
    if (process.getuid?.() !== 0) throw new Error('--reinstall-system-packages needs root')
    process.stderr.write('removing wireguard-go and wireguard-tools, so the first run installs them\n')
    execFileSync('apt-get', ['purge', '-y', '-qq', 'wireguard-go', 'wireguard-tools'], { stdio: 'inherit' })
  }
  execFileSync('git', ['clone', '--quiet', '--no-hardlinks', repoRoot, clone])
  const results: { wallMs: number; timings: Timing[] }[] = []
  for (let run = 1; run <= runs; run += 1) {
    process.stderr.write(`run ${run} of ${runs} ...\n`)
    results.push(await runUp(run))
  }
  const phases = [...new Set(results.flatMap((result) => result.timings.map((timing) => timing.phase)))]
  const seconds = (ms: number | undefined) => (ms === undefined ? '-' : (ms / 1000).toFixed(1))
  const header = ['phase', ...results.map((_, index) => `run ${index + 1} (s)`)]
  const rows = phases.map((phase) => [
    phase,
    ...results.map((result) => {
      const timing = result.timings.find((candidate) => candidate.phase === phase)
      return timing ? `${seconds(timing.durationMs)}${timing.note ? ` (${timing.note})` : ''}` : '-'
    }),
  ])
  rows.push(['whole command, wall clock', ...results.map((result) => seconds(result.wallMs))])
  const widths = header.map((_, column) => Math.max(...[header, ...rows].map((row) => row[column]!.length)))
  for (const row of [header, ...rows])
    process.stdout.write(`${row.map((cell, column) => cell.padEnd(widths[column]!)).join('  ')}\n`)
} finally {
  cleanup()
}
