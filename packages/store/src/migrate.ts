import { readdirSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { SqlDriver } from './driver.ts'

// The same migration files run on PGlite and PostgreSQL. Each runs once, in its own transaction, under an
// advisory lock so several coordinator processes starting together do not race.

const migrationsDir = fileURLToPath(new URL('../migrations/', import.meta.url))
const migrationLockKey = 7_474_726_001

export type Migration = { readonly version: string; readonly sql: string }

export function loadMigrations(): Migration[] {
  return readdirSync(migrationsDir)
    .filter((name) => /^\d{4}_[a-z0-9_]+\.sql$/.test(name))
    .sort()
    .map((name) => ({ version: name.replace(/\.sql$/, ''), sql: readFileSync(migrationsDir + name, 'utf8') }))
}

export async function migrate(driver: SqlDriver): Promise<string[]> {
  await driver.exec(
    'CREATE TABLE IF NOT EXISTS schema_migrations (version TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())',
  )
  const applied: string[] = []
  for (const migration of loadMigrations()) {
    const ran = await driver.transaction(async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock($1)', [migrationLockKey])
      const done = await tx.query('SELECT 1 FROM schema_migrations WHERE version = $1', [migration.version])
      if (done.length > 0) return false
      for (const statement of splitStatements(migration.sql)) await tx.execute(statement)
      await tx.execute('INSERT INTO schema_migrations (version) VALUES ($1)', [migration.version])
      return true
    })
    if (ran) applied.push(migration.version)
  }
  return applied
}

/** Our migrations hold plain statements (no functions with bodies), so splitting on ';' is exact. */
function splitStatements(sql: string): string[] {
  return sql
    .replace(/--[^\n]*/g, '')
    .split(';')
    .map((statement) => statement.trim())
    .filter((statement) => statement.length > 0)
}
