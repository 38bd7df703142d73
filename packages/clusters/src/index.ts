// Clusters' domain, pure: the records the store keeps, how a request becomes a plan and a price (plan.ts),
// and what the controller does next for a cluster from its desired and observed state (reconcile.ts).
// The coordinator does the I/O around these; nothing here reads a clock, a socket or the store.
export * from './records.ts'
export * from './plan.ts'
export * from './reconcile.ts'
