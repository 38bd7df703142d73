export * from './addressing.ts'
