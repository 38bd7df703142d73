import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join, resolve } from 'node:path'

// The repository's model server (python/gpumesh_models/serve_model.py) for tests: whether this machine can
// run it, and one started on loopback.

export const repositoryRoot = resolve(import.meta.dirname, '../../..')
export const tinyModelDir = join(repositoryRoot, 'python/models/tiny-chat')
export const managedPython = join(repositoryRoot, '.venv/bin/python')

/** Why the model server cannot run here (no managed Python with torch and Ray Serve, no model), or undefined. */
export function modelServerUnavailable(): string | undefined {
  if (!existsSync(join(tinyModelDir, 'model.safetensors'))) return 'needs python/models/tiny-chat'
  try {
    execFileSync(managedPython, ['-c', 'import torch, ray.serve'], { stdio: 'ignore' })
    return undefined
  } catch {
    return 'needs .venv with torch and Ray Serve (scripts/setup-python.sh)'
  }
}

export type RunningModelServer = {
  readonly child: ChildProcess
  /** What the launcher printed on its ready line: host, port, url and more. */
  readonly ready: { readonly host: string; readonly port: number; readonly url: string }
  /** SIGTERM, then SIGKILL to its process group after the grace; resolves with the exit code. */
  stop(graceMs?: number): Promise<number | null>
}

/** Starts the tiny model on loopback with one Serve replica and resolves once it serves. */
export async function startModelServer(extraArgs: readonly string[] = []): Promise<RunningModelServer> {
  const child = spawn(
    managedPython,
    [
      join(repositoryRoot, 'python/gpumesh_models/serve_model.py'),
      '--model-dir',
      tinyModelDir,
      '--expected-sha256-file',
      join(repositoryRoot, 'python/models/tiny-chat.sha256'),
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--num-replicas',
      '1',
      '--num-cpus',
      '2',
      '--node-ip-address',
      '127.0.0.1',
      '--object-store-memory-bytes',
      String(100 * 1024 * 1024),
      ...extraArgs,
    ],
    // Its own process group: the one handle on every process its Ray starts, never Ray found by name.
    { stdio: ['ignore', 'pipe', 'pipe'], detached: true },
  )
  let stderr = ''
  child.stderr!.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)))
  const stop = async (graceMs = 20_000) => {
    if (child.exitCode !== null || child.signalCode !== null) return child.exitCode
    const exited = new Promise<number | null>((resolveExit) => child.once('exit', resolveExit))
    child.kill('SIGTERM')
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL')
      } catch {
        // already gone
      }
    }, graceMs)
    const code = await exited
    clearTimeout(timer)
    return code
  }
  try {
    const ready = await new Promise<RunningModelServer['ready']>((resolveReady, reject) => {
      let stdout = ''
      const timer = setTimeout(() => reject(new Error(`no ready line in 180 s; stderr: ${stderr}`)), 180_000)
      child.stdout!.on('data', (chunk: Buffer) => {
        stdout += chunk.toString()
        const line = stdout.split('\n').find((text) => text.startsWith('GPUMESH-SERVE-'))
        if (!line) return
        clearTimeout(timer)
        if (line.startsWith('GPUMESH-SERVE-READY '))
          resolveReady(JSON.parse(line.slice('GPUMESH-SERVE-READY '.length)))
        else reject(new Error(`${line}; stderr: ${stderr}`))
      })
      child.once('exit', (code) => reject(new Error(`launcher exited ${code}; stderr: ${stderr}`)))
    })
    return { child, ready, stop }
  } catch (error) {
    await stop(5_000)
    throw error
  }
}
