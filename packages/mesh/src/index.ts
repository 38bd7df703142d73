export * from './addressing.ts'
export * from './wireguard-keys.ts'
