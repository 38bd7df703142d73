import { GpumeshError } from '@gpumesh/core'

// The development faucet's limits, decided here without I/O (the route applies them). Time is cut into
// fixed periods counted from the epoch (a UTC day by default). An account gets one claim per period: its
// transfer id names the account and the period, so the ledger itself refuses a second one, atomically on
// both stores and across restarts. A source address gets a few claims per period (several accounts behind
// one address), counted in this process only: a restart forgets them, which the account limit survives.

export type FaucetLimits = {
  /** Length of a claim period; one claim per account per period. */
  readonly periodMs: number
  /** Claims one source address may make per period, over all its accounts; 0: not limited by source. */
  readonly claimsPerSourcePerPeriod: number
}

/** Source addresses remembered at most; past it the oldest is forgotten (and may claim again). */
export const maxFaucetSources = 100_000

export class FaucetLimitedError extends GpumeshError {
  readonly code = 'GPUMESH_ERR_FAUCET_LIMITED'
  readonly httpStatus = 429
  readonly retryAfterSeconds: number

  constructor(message: string, retryAfterSeconds: number) {
    super(message, { retryAfterSeconds })
    this.retryAfterSeconds = retryAfterSeconds
  }
}

export function faucetPeriodIndex(nowMs: number, periodMs: number): number {
  return Math.floor(nowMs / periodMs)
}

/** Whole seconds until the next period starts (at least 1), for Retry-After. */
export function secondsUntilNextPeriod(nowMs: number, periodMs: number): number {
  const nextStartMs = (faucetPeriodIndex(nowMs, periodMs) + 1) * periodMs
  return Math.max(1, Math.ceil((nextStartMs - nowMs) / 1000))
}

/** The ledger transfer id of an account's claim in the period holding `nowMs`: one per account and period. */
export function faucetClaimTransferId(accountId: string, nowMs: number, periodMs: number): string {
  return `faucet:${accountId}:period-${periodMs}-${faucetPeriodIndex(nowMs, periodMs)}`
}

/**
 * Counts claims per source address in the current period. `reserve` before the claim's transfer and
 * `release` when the transfer did not happen, so refused or failed claims use up nothing. Synchronous, so
 * concurrent requests in this process cannot both take the last claim.
 */
export class FaucetSourceCounter {
  readonly #limits: FaucetLimits
  readonly #maxSources: number
  /** source → claims in `periodIndex`. Insertion order, oldest first. */
  readonly #claims = new Map<string, { periodIndex: number; claims: number }>()

  constructor(limits: FaucetLimits, maxSources = maxFaucetSources) {
    this.#limits = limits
    this.#maxSources = maxSources
  }

  get size(): number {
    return this.#claims.size
  }

  /** Takes one claim for `source`; throws FaucetLimitedError when its period's claims are used up. */
  reserve(source: string, nowMs: number): void {
    const { periodMs, claimsPerSourcePerPeriod } = this.#limits
    if (claimsPerSourcePerPeriod === 0) return
    const periodIndex = faucetPeriodIndex(nowMs, periodMs)
    const entry = this.#claims.get(source)
    const claims = entry?.periodIndex === periodIndex ? entry.claims : 0
    if (claims >= claimsPerSourcePerPeriod) {
      const retryAfterSeconds = secondsUntilNextPeriod(nowMs, periodMs)
      throw new FaucetLimitedError(
        `this address already made ${claims} faucet claims this period (at most ${claimsPerSourcePerPeriod}); try again in ${retryAfterSeconds} s`,
        retryAfterSeconds,
      )
    }
    this.#claims.delete(source)
    this.#claims.set(source, { periodIndex, claims: claims + 1 })
    while (this.#claims.size > this.#maxSources) {
      const oldest = this.#claims.keys().next().value
      if (oldest === undefined) break
      this.#claims.delete(oldest)
    }
  }

  /** Gives back a claim `reserve` took for a claim that did not happen. */
  release(source: string, nowMs: number): void {
    const entry = this.#claims.get(source)
    if (entry?.periodIndex !== faucetPeriodIndex(nowMs, this.#limits.periodMs)) return
    if (entry.claims <= 1) this.#claims.delete(source)
    else this.#claims.set(source, { periodIndex: entry.periodIndex, claims: entry.claims - 1 })
  }
}

/** What an account may withdraw when faucet money must stay on the network: faucet credits count as spent last. */
export function withdrawableUnits(availableUnits: bigint, faucetReceivedUnits: bigint): bigint {
  const withdrawable = availableUnits - faucetReceivedUnits
  return withdrawable > 0n ? withdrawable : 0n
}

/** Runs one task at a time per key (this process), so a check and the write it guards cannot interleave. */
export class KeyedSerializer {
  readonly #tails = new Map<string, Promise<unknown>>()

  run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(key) ?? Promise.resolve()
    const result = previous.then(task, task)
    const tail = result.catch(() => undefined)
    this.#tails.set(key, tail)
    void tail.then(() => {
      if (this.#tails.get(key) === tail) this.#tails.delete(key)
    })
    return result
  }
}
