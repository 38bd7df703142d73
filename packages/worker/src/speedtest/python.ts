import { existsSync } from 'node:fs'
import { join } from 'node:path'

// Which Python runs the compute speedtest: the managed environment the worker already uses for Ray
// (scripts/setup-python.sh). GPUMESH_PYTHON_ENV names that environment, as in the setup script; there,
// GPUMESH_PYTHON is the interpreter the environment is built from, which may lack numpy and torch, so it is
// used only when no managed environment exists.

/** Repository root, from this file's place in packages/worker/src/speedtest/. */
export const repositoryRoot = new URL('../../../../', import.meta.url).pathname

export function resolvePythonPath(env: Readonly<Record<string, string | undefined>>): string {
  const managedEnv = env['GPUMESH_PYTHON_ENV']
  if (managedEnv) return join(managedEnv, 'bin', 'python')
  const repositoryEnv = join(repositoryRoot, '.venv', 'bin', 'python')
  if (existsSync(repositoryEnv)) return repositoryEnv
  return env['GPUMESH_PYTHON'] || 'python3'
}
