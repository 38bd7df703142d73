import type { Clock } from '@gpumesh/core'

/** A clock tests move by hand: sleeps resolve when the time they wait for is reached. */
export class ManualClock implements Clock {
  #nowMs: number
  #sleepers: { wakeAtMs: number; resolve: () => void }[] = []

  constructor(startMs = Date.UTC(2026, 0, 1)) {
    this.#nowMs = startMs
  }

  nowMs(): number {
    return this.#nowMs
  }

  sleepMs(durationMs: number): Promise<void> {
    return new Promise((resolve) => this.#sleepers.push({ wakeAtMs: this.#nowMs + durationMs, resolve }))
  }

  advanceMs(durationMs: number): void {
    this.#nowMs += durationMs
    const due = this.#sleepers.filter((sleeper) => sleeper.wakeAtMs <= this.#nowMs)
    this.#sleepers = this.#sleepers.filter((sleeper) => sleeper.wakeAtMs > this.#nowMs)
    for (const sleeper of due) sleeper.resolve()
  }
}
