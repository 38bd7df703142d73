import type { Random } from '@gpumesh/core'

/**
 * Exponential backoff with jitter: a uniform delay in [initial, min(max, initial·2^(attempt+1))].
 * Jitter spreads thousands of workers reconnecting after a coordinator restart over time instead of
 * having them all arrive in the same second.
 */
export function reconnectDelayMs(
  attempt: number,
  initialDelayMs: number,
  maxDelayMs: number,
  random: Random,
): number {
  const ceiling = Math.min(maxDelayMs, initialDelayMs * 2 ** Math.min(attempt + 1, 30))
  return Math.round(initialDelayMs + random.next() * Math.max(0, ceiling - initialDelayMs))
}
