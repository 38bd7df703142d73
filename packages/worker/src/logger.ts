// What the supplier agent and its parts log through (the CLI gives it pino). In a file of its own so the
// parts can take a logger without importing the agent that owns them.
export type WorkerLogger = {
  info(message: string, fields?: Record<string, unknown>): void
  warn(message: string, fields?: Record<string, unknown>): void
  error(message: string, fields?: Record<string, unknown>): void
}
