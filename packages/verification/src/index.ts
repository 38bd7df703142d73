export * from './matrix.ts'
export * from './merkle.ts'
export * from './challenge.ts'
export * from './prover.ts'
