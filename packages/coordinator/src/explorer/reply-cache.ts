import type { Clock } from '@gpumesh/core'

// A busy explorer must not load the coordinator: each distinct reply is computed at most once per `ttlMs`.
// Concurrent requests for a reply being computed share that one computation (no stampede), and once a reply
// has been computed, a request after its ttl gets it at once while a fresh one is computed behind it (stale
// while revalidate), up to `maxStaleMs`: no visitor waits for a network-wide aggregate after the first.

export type ReplyCache = {
  get<T>(key: string, compute: () => Promise<T>): Promise<T>
  readonly size: number
}

type Entry = { computedAtMs: number; value: Promise<unknown>; refreshing?: Promise<unknown> }

export function createReplyCache(
  clock: Clock,
  ttlMs: number,
  maxStaleMs = 3 * ttlMs,
  maxEntries = 2_000,
): ReplyCache {
  const entries = new Map<string, Entry>()
  const store = (key: string, entry: Entry) => {
    entries.delete(key)
    entries.set(key, entry)
    // Maps iterate in insertion order, so the first key is the least recently computed.
    if (entries.size > maxEntries) entries.delete(entries.keys().next().value!)
  }
  const start = <T>(key: string, compute: () => Promise<T>): Promise<T> => {
    const value = compute()
    // A failure is not cached: the next request tries again.
    value.catch(() => {
      if (entries.get(key)?.value === value) entries.delete(key)
    })
    return value
  }
  return {
    get size() {
      return entries.size
    },
    get<T>(key: string, compute: () => Promise<T>): Promise<T> {
      const nowMs = clock.nowMs()
      const entry = entries.get(key)
      const ageMs = entry ? nowMs - entry.computedAtMs : Infinity
      if (entry && ageMs < ttlMs) return entry.value as Promise<T>
      if (entry && ageMs < maxStaleMs) {
        if (!entry.refreshing) {
          const fresh = start(key, compute)
          entry.refreshing = fresh
          fresh.then(
            () => store(key, { computedAtMs: clock.nowMs(), value: fresh }),
            () => (entry.refreshing = undefined),
          )
        }
        return entry.value as Promise<T>
      }
      const value = start(key, compute)
      store(key, { computedAtMs: nowMs, value })
      return value
    },
  }
}
