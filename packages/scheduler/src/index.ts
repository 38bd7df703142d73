export * from './types.ts'
export * from './registry.ts'
export * from './place.ts'
export { roundTripMs, estimatedRoundTripMs } from './scores/latency.ts'
