export * from './agent.ts'
export * from './backoff.ts'
export * from './identity.ts'
export * from './probe/index.ts'
