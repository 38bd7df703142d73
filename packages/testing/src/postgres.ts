import { randomBytes } from 'node:crypto'
import pg from 'pg'

// Each test gets its own PostgreSQL database, created and dropped by name, so runs never see each other.

/** The local server CI starts; override with GPUMESH_TEST_POSTGRES_URL. */
export const testPostgresAdminUrl =
  process.env['GPUMESH_TEST_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres'

export type TestDatabase = { readonly connectionString: string; drop(): Promise<void> }

export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `gpumesh_test_${process.pid}_${randomBytes(4).toString('hex')}`
  await withAdmin((admin) => admin.query(`CREATE DATABASE ${name}`))
  const url = new URL(testPostgresAdminUrl)
  url.pathname = `/${name}`
  return {
    connectionString: url.toString(),
    drop: () =>
      withAdmin((admin) => admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(() => undefined),
  }
}

async function withAdmin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: testPostgresAdminUrl })
  await client.connect()
  try {
    return await fn(client)
  } finally {
    await client.end()
  }
}
