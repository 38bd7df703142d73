// Time and randomness are inputs: pure code receives them, the edge supplies real ones.

export interface Clock {
  nowMs(): number
  sleepMs(durationMs: number): Promise<void>
}

export interface Random {
  /** Uniform in [0, 1). */
  next(): number
}

/** Deterministic generator (mulberry32) for simulations and property tests. */
export function seededRandom(seed: number): Random {
  let state = seed >>> 0
  return {
    next() {
      state = (state + 0x6d2b79f5) >>> 0
      let t = state
      t = Math.imul(t ^ (t >>> 15), t | 1)
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296
    },
  }
}

export const millisecondsPerSecond = 1000
export const millisecondsPerHour = 3_600_000
export const millisecondsPerDay = 86_400_000

/** The UTC day a time falls in, as "YYYY-MM-DD": how statements and charts name days. */
export function formatUtcDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10)
}
