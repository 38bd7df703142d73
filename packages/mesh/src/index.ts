export * from './addressing.ts'
export * from './transport-wire.ts'
export * from './obfuscation.ts'
