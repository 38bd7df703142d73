import { PGlite } from '@electric-sql/pglite'
import { mkdirSync } from 'node:fs'
import pg from 'pg'

// One narrow SQL interface with two implementations: the embedded default (PGlite) and PostgreSQL.
// Both return BIGINT columns as JS bigint, so code above this line never sees a driver's quirks.

export type SqlParam =
  string | number | bigint | boolean | null | readonly unknown[] | Record<string, unknown>

export interface SqlExecutor {
  query<Row>(text: string, params?: readonly SqlParam[]): Promise<Row[]>
  /** Runs a statement and returns the number of rows it affected. */
  execute(text: string, params?: readonly SqlParam[]): Promise<number>
}

export interface SqlDriver extends SqlExecutor {
  readonly kind: 'pglite' | 'postgres'
  /** Runs fn in one transaction: committed when it resolves, rolled back when it throws. */
  transaction<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T>
  /** Runs a multi-statement script (migrations). */
  exec(script: string): Promise<void>
  close(): Promise<void>
}

const int8Oid = 20

export type PgliteDriverInit = {
  /** Directory that keeps the database across restarts; in memory when absent. */
  dataDir?: string
}

export async function createPgliteDriver(init: PgliteDriverInit = {}): Promise<SqlDriver> {
  if (init.dataDir) mkdirSync(init.dataDir, { recursive: true })
  const db = await PGlite.create({
    ...(init.dataDir ? { dataDir: init.dataDir } : {}),
    parsers: { [int8Oid]: (value: string) => BigInt(value) },
    serializers: { [int8Oid]: (value: unknown) => String(value) },
  })
  const wrap = (target: Pick<PGlite, 'query'>): SqlExecutor => ({
    async query<Row>(text: string, params: readonly SqlParam[] = []) {
      return (await target.query<Row>(text, params as unknown[])).rows
    },
    async execute(text: string, params: readonly SqlParam[] = []) {
      return (await target.query(text, params as unknown[])).affectedRows ?? 0
    },
  })
  return {
    kind: 'pglite',
    ...wrap(db),
    transaction: (fn) => db.transaction((tx) => fn(wrap(tx))),
    exec: async (script) => {
      await db.exec(script)
    },
    close: () => db.close(),
  }
}

export type PostgresDriverInit = {
  connectionString: string
  maxConnections?: number
}

export async function createPostgresDriver(init: PostgresDriverInit): Promise<SqlDriver> {
  const typeParsers = {
    getTypeParser: (oid: number, format?: string) =>
      oid === int8Oid ? (value: string) => BigInt(value) : pg.types.getTypeParser(oid, format as 'text'),
  }
  const pool = new pg.Pool({
    connectionString: init.connectionString,
    max: init.maxConnections ?? 10,
    types: typeParsers as pg.CustomTypesConfig,
  })
  // An idle client's error (e.g. the server restarting) must not crash the process; the next query reports it.
  pool.on('error', () => {})
  await pool.query('SELECT 1')
  const prepare = (params: readonly SqlParam[]) =>
    params.map((value) => (typeof value === 'bigint' ? value.toString() : value)) as unknown[]
  const wrap = (target: pg.Pool | pg.PoolClient): SqlExecutor => ({
    async query<Row>(text: string, params: readonly SqlParam[] = []) {
      return (await target.query(text, prepare(params))).rows as Row[]
    },
    async execute(text: string, params: readonly SqlParam[] = []) {
      return (await target.query(text, prepare(params))).rowCount ?? 0
    },
  })
  return {
    kind: 'postgres',
    ...wrap(pool),
    async transaction(fn) {
      const client = await pool.connect()
      try {
        await client.query('BEGIN')
        const result = await fn(wrap(client))
        await client.query('COMMIT')
        return result
      } catch (error) {
        await client.query('ROLLBACK').catch(() => {})
        throw error
      } finally {
        client.release()
      }
    },
    exec: async (script) => {
      await pool.query(script)
    },
    close: () => pool.end(),
  }
}
