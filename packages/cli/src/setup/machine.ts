import { spawn } from 'node:child_process'
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import { createInterface } from 'node:readline'

// What `gpumesh up` brings to a fresh machine before it starts a network: the Debian packages its workers
// run (wireguard-go, wireguard-tools, iproute2) and the managed Python runtime (Ray, torch, Ray Serve). Each
// step says what it does and how long it took, and is skipped when there is nothing to do; the scripts it
// runs are idempotent, so a second `up`, or one after Ctrl-C in the middle, picks up where it stopped.
// Where a step cannot run (not root, no apt-get, no Python 3.11) it says so with the command that fixes it,
// and `up` starts with what there is: the workers' own self-test then keeps what cannot work off the market.

/** The packages a network's workers run; scripts/setup-system.sh --product installs them. */
export const productDebianPackages = ['wireguard-go', 'wireguard-tools', 'iproute2'] as const

/** `up` was stopped during its set-up; nothing runs on, and the next `up` finishes the job. */
export class SetupInterruptedError extends Error {
  constructor(signal: NodeJS.Signals) {
    super(`set-up stopped by ${signal}; run ./gpumesh up again to pick up where it stopped`)
  }
}

export type SetupStep = {
  readonly name: string
  /** done: it changed something; present: nothing to do; off: it could not, see reason and fix. */
  readonly outcome: 'done' | 'present' | 'off'
  readonly durationMs: number
  readonly detail: string
  readonly fix?: string
}

export type PrepareMachineInit = {
  readonly repoRoot: string
  /** false (--no-install): check only, install nothing. */
  readonly install: boolean
  /** Progress lines, as they come. */
  readonly log: (line: string) => void
  /** Where the managed Python environment lives (the setup script's own default when absent). */
  readonly pythonEnv?: string
}

export async function prepareMachine(init: PrepareMachineInit): Promise<SetupStep[]> {
  return [await systemPackagesStep(init), await pythonRuntimeStep(init)]
}

async function systemPackagesStep(init: PrepareMachineInit): Promise<SetupStep> {
  const name = 'system packages'
  const startedAt = performance.now()
  const elapsed = () => Math.round(performance.now() - startedAt)
  const missing = productDebianPackages.filter((pkg) => !debianPackageInstalled(pkg))
  if (missing.length === 0)
    return { name, outcome: 'present', durationMs: elapsed(), detail: productDebianPackages.join(', ') }
  const aptFix = `apt-get install --no-install-recommends ${missing.join(' ')} (as root), or: sudo ./gpumesh up`
  if (!init.install)
    return {
      name,
      outcome: 'off',
      durationMs: elapsed(),
      detail: `missing ${missing.join(', ')}`,
      fix: aptFix,
    }
  if (process.getuid?.() !== 0)
    return {
      name,
      outcome: 'off',
      durationMs: elapsed(),
      detail: `missing ${missing.join(', ')}, and installing them needs root`,
      fix: 'sudo ./gpumesh up',
    }
  if (!commandExists('apt-get'))
    return {
      name,
      outcome: 'off',
      durationMs: elapsed(),
      detail: `missing ${missing.join(', ')}, and this machine has no apt-get`,
      fix: `install ${missing.join(', ')} with this machine's package manager`,
    }
  init.log(`installing ${missing.join(', ')} (apt-get; once per machine)`)
  const code = await runStreaming(
    'bash',
    [join(init.repoRoot, 'scripts/setup-system.sh'), '--product'],
    init.log,
    process.env,
  )
  if (code !== 0)
    return {
      name,
      outcome: 'off',
      durationMs: elapsed(),
      detail: `scripts/setup-system.sh --product failed (exit ${code}); see the lines above`,
      fix: 'sudo bash scripts/setup-system.sh --product',
    }
  return { name, outcome: 'done', durationMs: elapsed(), detail: `installed ${missing.join(', ')}` }
}

async function pythonRuntimeStep(init: PrepareMachineInit): Promise<SetupStep> {
  const name = 'Python runtime'
  const startedAt = performance.now()
  const elapsed = () => Math.round(performance.now() - startedAt)
  const lines: string[] = []
  const env = { ...process.env, ...(init.pythonEnv ? { GPUMESH_PYTHON_ENV: init.pythonEnv } : {}) }
  if (!init.install) {
    return { name, outcome: 'present', durationMs: elapsed(), detail: 'not checked (--no-install)' }
  }
  const code = await runStreaming(
    'bash',
    [join(init.repoRoot, 'scripts/setup-python.sh')],
    (line) => {
      lines.push(line)
      // The script says when the environment is already complete; anything else is progress worth showing.
      if (!/already has/.test(line)) init.log(line)
    },
    env,
  )
  if (code !== 0)
    return {
      name,
      outcome: 'off',
      durationMs: elapsed(),
      detail:
        lines.filter((line) => /ERROR/.test(line)).at(-1) ?? `scripts/setup-python.sh failed (exit ${code})`,
      fix: 'bash scripts/setup-python.sh (needs Python 3.11: apt-get install python3.11 python3.11-venv)',
    }
  const present = lines.some((line) => /already has/.test(line))
  return {
    name,
    outcome: present ? 'present' : 'done',
    durationMs: elapsed(),
    detail: present ? 'Ray, torch and Ray Serve in the managed environment' : 'made the managed environment',
  }
}

function debianPackageInstalled(pkg: string): boolean {
  try {
    return (
      execFileSync('dpkg-query', ['-W', '-f=${db:Status-Status}', pkg], {
        stdio: ['ignore', 'pipe', 'ignore'],
      }).toString() === 'installed'
    )
  } catch {
    return false
  }
}

function commandExists(command: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

/**
 * Runs a set-up script, handing on each line it prints. A signal to `up` (Ctrl-C, SIGTERM) reaches the
 * script too, so an interrupted set-up leaves nothing running; its next run finishes the job.
 */
function runStreaming(
  command: string,
  args: readonly string[],
  onLine: (line: string) => void,
  env: NodeJS.ProcessEnv,
): Promise<number> {
  return new Promise((resolve, reject) => {
    let interrupted: NodeJS.Signals | undefined
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env })
    for (const stream of [child.stdout, child.stderr])
      createInterface({ input: stream }).on('line', (line) => {
        if (line.trim()) onLine(line.replace(/^gpumesh setup: /, ''))
      })
    const forward = (signal: NodeJS.Signals) => {
      interrupted = signal
      child.kill(signal)
    }
    process.on('SIGINT', forward)
    process.on('SIGTERM', forward)
    child.on('error', () => resolve(127))
    child.on('close', (code, signal) => {
      process.off('SIGINT', forward)
      process.off('SIGTERM', forward)
      if (interrupted) reject(new SetupInterruptedError(interrupted))
      else resolve(code ?? (signal ? 128 : 1))
    })
  })
}
