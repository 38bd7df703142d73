import { pino, stdTimeFunctions, type Logger } from 'pino'
import pretty from 'pino-pretty'
import type { WorkerLogger } from '@gpumesh/worker'

// One logger for every gpumesh process: pino (the one Fastify brings), one JSON shape per line —
// {"level":"warn","time":"…Z","pid":…,"component":"worker",…,"msg":"…"} — so a log of a coordinator and its
// workers reads as one stream, and a readable line instead when it writes to a terminal.

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'

export type LoggerInit = {
  /** Which process this is: coordinator, worker (with its state dir), cli. */
  readonly component: string
  readonly level: LogLevel
  /** Human-readable lines; default: when standard error is a terminal. */
  readonly pretty?: boolean
  /** Fields on every line, e.g. the worker's state dir. */
  readonly base?: Record<string, unknown>
}

export function createLogger(init: LoggerInit): Logger {
  const options = {
    level: init.level,
    base: { pid: process.pid, component: init.component, ...init.base },
    timestamp: stdTimeFunctions.isoTime,
    formatters: { level: (label: string) => ({ level: label }) },
  }
  const readable = init.pretty ?? process.stderr.isTTY === true
  if (!readable) return pino(options, pino.destination({ dest: 2, sync: true }))
  return pino(
    options,
    pretty({
      destination: 2,
      sync: true,
      colorize: true,
      translateTime: 'SYS:HH:MM:ss',
      ignore: 'pid,hostname,component',
      messageFormat: '{component}: {msg}',
      hideObject: false,
    }),
  )
}

/** The worker agent's logger interface, over pino: (message, fields) in, one line out. */
export function workerLoggerOf(logger: Logger): WorkerLogger {
  return {
    info: (message, fields) => logger.info(fields ?? {}, message),
    warn: (message, fields) => logger.warn(fields ?? {}, message),
    error: (message, fields) => logger.error(fields ?? {}, message),
  }
}
