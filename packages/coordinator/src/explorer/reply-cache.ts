import type { Clock } from '@gpumesh/core'

// A busy explorer must not load the coordinator: each distinct reply is computed at most once per `ttlMs`,
// and concurrent requests for a reply being computed wait for that one computation (no stampede).

export type ReplyCache = {
  get<T>(key: string, compute: () => Promise<T>): Promise<T>
  readonly size: number
}

export function createReplyCache(clock: Clock, ttlMs: number, maxEntries = 2_000): ReplyCache {
  const entries = new Map<string, { computedAtMs: number; value: Promise<unknown> }>()
  return {
    get size() {
      return entries.size
    },
    get<T>(key: string, compute: () => Promise<T>): Promise<T> {
      const nowMs = clock.nowMs()
      const entry = entries.get(key)
      if (entry && nowMs - entry.computedAtMs < ttlMs) return entry.value as Promise<T>
      const value = compute()
      // A failure is not cached: the next request tries again.
      value.catch(() => {
        if (entries.get(key)?.value === value) entries.delete(key)
      })
      entries.delete(key)
      entries.set(key, { computedAtMs: nowMs, value })
      // Maps iterate in insertion order, so the first key is the least recently computed.
      if (entries.size > maxEntries) entries.delete(entries.keys().next().value!)
      return value
    },
  }
}
