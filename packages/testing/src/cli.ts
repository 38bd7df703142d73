import { execFile } from 'node:child_process'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { repositoryRoot } from './model-server.ts'

// The gpumesh CLI as tests run it, and a port nothing listens on.

export const cliPath = join(repositoryRoot, 'packages/cli/src/main.ts')

export type CliRun = { readonly code: number; readonly stdout: string; readonly stderr: string }

/** Runs `gpumesh ARGS` against a coordinator with an API key, with no saved login in the way. */
export function runCli(
  baseUrl: string,
  apiKey: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv = {},
): Promise<CliRun> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [cliPath, ...args],
      {
        env: {
          ...process.env,
          GPUMESH_COORDINATOR: baseUrl,
          GPUMESH_API_KEY: apiKey,
          GPUMESH_CONFIG_DIR: join(tmpdir(), 'gpumesh-none'),
          ...env,
        },
        timeout: 60_000,
      },
      (error, stdout, stderr) => resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr }),
    )
  })
}

/** A loopback TCP port that was free a moment ago (bound, then released). */
export function freeTcpPort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolvePort(port))
    })
  })
}
