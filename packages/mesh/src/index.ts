export * from './addressing.ts'
export * from './wireguard-keys.ts'
export * from './transport-wire.ts'
export * from './obfuscation.ts'
