import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { dirname, join } from 'node:path'
import { GpumeshClient } from '@gpumesh/sdk'

// `gpumesh login` saves the coordinator URL and API key here (mode 0600); flags and environment override it.

export type SavedCredentials = { readonly coordinatorUrl: string; readonly apiKey: string }

export function credentialsPath(): string {
  const base =
    process.env['GPUMESH_CONFIG_DIR'] ??
    join(process.env['XDG_CONFIG_HOME'] ?? join(homedir(), '.config'), 'gpumesh')
  return join(base, 'credentials.json')
}

export function readCredentials(): SavedCredentials | undefined {
  const path = credentialsPath()
  if (!existsSync(path)) return undefined
  return JSON.parse(readFileSync(path, 'utf8')) as SavedCredentials
}

export function saveCredentials(credentials: SavedCredentials): string {
  const path = credentialsPath()
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 })
  writeFileSync(path, `${JSON.stringify(credentials, null, 2)}\n`, { mode: 0o600 })
  chmodSync(path, 0o600)
  return path
}

export const defaultCoordinatorUrl = 'http://127.0.0.1:8080'

export type ConnectionFlags = { coordinator?: string; apiKey?: string }

/** Flag, then environment, then saved login, then the local default. */
export function clientFrom(flags: ConnectionFlags, requireKey: boolean): GpumeshClient {
  const saved = readCredentials()
  const baseUrl =
    flags.coordinator ?? process.env['GPUMESH_COORDINATOR'] ?? saved?.coordinatorUrl ?? defaultCoordinatorUrl
  const apiKey =
    flags.apiKey ??
    process.env['GPUMESH_API_KEY'] ??
    (saved && saved.coordinatorUrl === baseUrl ? saved.apiKey : undefined)
  if (requireKey && !apiKey) {
    throw new UsageError(
      'no API key: run `gpumesh login --coordinator URL --api-key KEY`, or pass --api-key, or set GPUMESH_API_KEY',
    )
  }
  return new GpumeshClient({ baseUrl, ...(apiKey ? { apiKey } : {}) })
}

export class UsageError extends Error {}
