import { openStore, type Store } from '@gpumesh/store'
import { createTestDatabase } from './postgres.ts'

// Both store backends, for compliance suites: every store test runs on each.

export type StoreBackend = {
  readonly name: 'pglite' | 'postgres'
  open(): Promise<{ store: Store; cleanup(): Promise<void> }>
}

export const storeBackends: readonly StoreBackend[] = [
  {
    name: 'pglite',
    async open() {
      const store = await openStore({ kind: 'pglite' })
      return { store, cleanup: () => store.close() }
    },
  },
  {
    name: 'postgres',
    async open() {
      const database = await createTestDatabase()
      const store = await openStore({ kind: 'postgres', connectionString: database.connectionString })
      return {
        store,
        async cleanup() {
          await store.close()
          await database.drop()
        },
      }
    },
  },
]
