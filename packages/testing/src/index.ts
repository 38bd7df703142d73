export * from './postgres.ts'
export * from './stores.ts'
export * from './clock.ts'
export * from './coordinator.ts'
