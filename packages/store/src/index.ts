export * from './driver.ts'
export * from './migrate.ts'
export * from './records.ts'
// The cluster records are the clusters package's; the store keeps them.
export * from '@gpumesh/clusters/records'
// So are presence's flush entries and state changes.
export * from '@gpumesh/presence/records'
export * from './store.ts'
export * from './open.ts'
export * from './ledger-store.ts'
export * from './reward-store.ts'
export * from './explorer-store.ts'
export * from './model-store.ts'
export * from './inference-store.ts'
