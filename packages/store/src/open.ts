import { createPgliteDriver, createPostgresDriver } from './driver.ts'
import { createStore, type Store } from './store.ts'

export type OpenStoreInit =
  | { readonly kind: 'postgres'; readonly connectionString: string; readonly maxConnections?: number }
  | { readonly kind: 'pglite'; readonly dataDir?: string }

/** PostgreSQL when a connection string is given, else the embedded PGlite database (in memory without dataDir). */
export async function openStore(init: OpenStoreInit): Promise<Store> {
  const driver =
    init.kind === 'postgres'
      ? await createPostgresDriver({
          connectionString: init.connectionString,
          ...(init.maxConnections === undefined ? {} : { maxConnections: init.maxConnections }),
        })
      : await createPgliteDriver(init.dataDir === undefined ? {} : { dataDir: init.dataDir })
  try {
    return await createStore({ driver })
  } catch (error) {
    await driver.close()
    throw error
  }
}
