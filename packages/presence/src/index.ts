// Presence, pure: who is connected as this coordinator process sees it, uptime in buckets, and the batches
// the heartbeat flusher hands the store. Time comes in as arguments; the coordinator owns the timers.
export * from './records.ts'
export * from './presence.ts'
export * from './uptime.ts'
