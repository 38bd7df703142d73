export * from './policy.ts'
export * from './emission.ts'
export * from './epoch.ts'
