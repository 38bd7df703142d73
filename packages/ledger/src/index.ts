export * from './ledger.ts'
export * from './accounts.ts'
export * from './memory.ts'
export * from './billing.ts'
