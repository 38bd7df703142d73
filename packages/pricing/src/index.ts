export * from './policy.ts'
export * from './quote.ts'
