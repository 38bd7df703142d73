// Failed authentications, counted per subject (a source address, a key id) in token buckets: each subject may
// fail `burst` times at once, and earns one more try every `windowMs / burst`. A subject out of tries is
// refused with 429 before its key is looked up, so guessing costs the coordinator almost nothing.
//
// Pure: the caller passes the time, so tests drive it with any clock and every run replays.

export type FailedAuthThrottleInit = {
  /** Failures a subject may have in a row before it is refused. */
  readonly burst: number
  /** Time in which a subject earns `burst` tries back. */
  readonly windowMs: number
  /**
   * Subjects remembered at most; past it the one idle longest is forgotten (it may then try `burst` times
   * again). Memory stays bounded whatever an attacker rotates.
   */
  readonly maxSubjects: number
}

type Bucket = { tries: number; atMs: number }

export class FailedAuthThrottle {
  readonly #init: FailedAuthThrottleInit
  /** subject → its bucket, in order of last change (oldest first). */
  readonly #buckets = new Map<string, Bucket>()

  constructor(init: FailedAuthThrottleInit) {
    if (!(init.burst >= 1 && init.windowMs > 0 && init.maxSubjects >= 1))
      throw new RangeError(`invalid throttle settings: ${JSON.stringify(init)}`)
    this.#init = init
  }

  get trackedSubjects(): number {
    return this.#buckets.size
  }

  /** How long the subject must wait before its next try counts; 0 when it may try now. */
  retryAfterMs(subject: string, nowMs: number): number {
    const tries = this.#triesAt(subject, nowMs)
    return tries >= 1 ? 0 : Math.ceil((1 - tries) / this.#refillPerMs)
  }

  recordFailure(subject: string, nowMs: number): void {
    const tries = Math.max(0, this.#triesAt(subject, nowMs) - 1)
    this.#buckets.delete(subject)
    this.#buckets.set(subject, { tries, atMs: nowMs })
    while (this.#buckets.size > this.#init.maxSubjects) {
      const oldest = this.#buckets.keys().next().value
      if (oldest === undefined) break
      this.#buckets.delete(oldest)
    }
  }

  /** Forgets subjects whose buckets are full again: they behave exactly like subjects never seen. */
  prune(nowMs: number): void {
    for (const subject of this.#buckets.keys()) {
      if (this.#triesAt(subject, nowMs) >= this.#init.burst) this.#buckets.delete(subject)
    }
  }

  get #refillPerMs(): number {
    return this.#init.burst / this.#init.windowMs
  }

  #triesAt(subject: string, nowMs: number): number {
    const bucket = this.#buckets.get(subject)
    if (!bucket) return this.#init.burst
    // A clock that steps back earns nothing, rather than taking tries away.
    const earned = Math.max(0, nowMs - bucket.atMs) * this.#refillPerMs
    return Math.min(this.#init.burst, bucket.tries + earned)
  }
}

/**
 * Failures since the last summary, so a flood of wrong keys is one log line per interval instead of lines per
 * request. Counts by reason; keeps the busiest sources and key ids up to `maxListed` each.
 */
export class FailedAuthTally {
  readonly #maxListed: number
  #total = 0
  #byReason = new Map<string, number>()
  #bySource = new Map<string, number>()
  #byKeyId = new Map<string, number>()
  #sinceMs: number | undefined

  constructor(maxListed = 1_000) {
    this.#maxListed = maxListed
  }

  get total(): number {
    return this.#total
  }

  record(failure: { reason: string; source: string; keyId?: string }, nowMs: number): void {
    this.#sinceMs ??= nowMs
    this.#total += 1
    count(this.#byReason, failure.reason, Number.MAX_SAFE_INTEGER)
    count(this.#bySource, failure.source, this.#maxListed)
    if (failure.keyId !== undefined) count(this.#byKeyId, failure.keyId, this.#maxListed)
  }

  /** The summary of everything recorded since the last drain (undefined when nothing failed), then resets. */
  drain(nowMs: number, top = 5): FailedAuthSummary | undefined {
    if (this.#total === 0 || this.#sinceMs === undefined) return undefined
    const summary = {
      failures: this.#total,
      periodMs: nowMs - this.#sinceMs,
      byReason: Object.fromEntries(this.#byReason),
      distinctSources: this.#bySource.size,
      topSources: busiest(this.#bySource, top),
      topKeyIds: busiest(this.#byKeyId, top),
    }
    this.#total = 0
    this.#byReason = new Map()
    this.#bySource = new Map()
    this.#byKeyId = new Map()
    this.#sinceMs = undefined
    return summary
  }
}

export type FailedAuthSummary = {
  readonly failures: number
  readonly periodMs: number
  readonly byReason: Readonly<Record<string, number>>
  /** Distinct sources seen, up to the tally's `maxListed` (more are counted in `failures` only). */
  readonly distinctSources: number
  readonly topSources: readonly { readonly subject: string; readonly failures: number }[]
  readonly topKeyIds: readonly { readonly subject: string; readonly failures: number }[]
}

function count(counts: Map<string, number>, key: string, maxKeys: number): void {
  const known = counts.get(key)
  if (known !== undefined) counts.set(key, known + 1)
  else if (counts.size < maxKeys) counts.set(key, 1)
}

function busiest(counts: Map<string, number>, top: number) {
  return [...counts]
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .slice(0, top)
    .map(([subject, failures]) => ({ subject, failures }))
}
