import type { ClusterLinks } from '@gpumesh/coordinator'
import type { CoordinatorMessage } from '@gpumesh/protocol'

// The in-memory link between the coordinator's cluster controller and the simulated workers: what
// WorkerLinks is over WebSocket, less the sockets. Each connection is a session; frames travel in order
// (as over TCP) after a seeded delay, and frames still in flight when their session ends are lost.

type Timed = { readonly atMs: number; readonly order: number; readonly run: () => Promise<void> | void }

/** Things due at a simulated time, run in time order (ties in the order they were scheduled). */
export class EventQueue {
  #events: Timed[] = []
  #order = 0

  get size(): number {
    return this.#events.length
  }

  at(atMs: number, run: () => Promise<void> | void): void {
    const event = { atMs, order: this.#order++, run }
    // Kept sorted: a binary search for the slot after every event due at or before this one.
    let low = 0
    let high = this.#events.length
    while (low < high) {
      const middle = (low + high) >> 1
      if (this.#events[middle]!.atMs <= atMs) low = middle + 1
      else high = middle
    }
    this.#events.splice(low, 0, event)
  }

  /** The next event due at or before `untilMs`, taken off the queue. */
  takeDue(untilMs: number): Timed | undefined {
    const first = this.#events[0]
    if (!first || first.atMs > untilMs) return undefined
    return this.#events.shift()
  }

  clear(): void {
    this.#events = []
  }
}

export type LinkEnd = {
  readonly sessionId: string
  /** A frame from the coordinator reaches the worker. */
  deliver(message: CoordinatorMessage): void
}

/** The coordinator's side of every in-memory connection. */
export class MemoryLinks implements ClusterLinks {
  readonly #sessions = new Map<string, LinkEnd>()
  readonly #addressOf: (deviceId: string) => string

  constructor(addressOf: (deviceId: string) => string) {
    this.#addressOf = addressOf
  }

  get connectedCount(): number {
    return this.#sessions.size
  }

  open(deviceId: string, end: LinkEnd): void {
    this.#sessions.set(deviceId, end)
  }

  /** Ends the session if it is still the device's current one; false otherwise. */
  close(deviceId: string, sessionId: string): boolean {
    if (this.#sessions.get(deviceId)?.sessionId !== sessionId) return false
    this.#sessions.delete(deviceId)
    return true
  }

  isCurrent(deviceId: string, sessionId: string): boolean {
    return this.#sessions.get(deviceId)?.sessionId === sessionId
  }

  send(deviceId: string, message: CoordinatorMessage): boolean {
    const end = this.#sessions.get(deviceId)
    if (!end) return false
    end.deliver(message)
    return true
  }

  remoteAddressOf(deviceId: string): string | undefined {
    return this.#sessions.has(deviceId) ? this.#addressOf(deviceId) : undefined
  }
}
