export * from './policy.ts'
export * from './quote.ts'
export * from './inference.ts'
