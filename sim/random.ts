import { idBodyAlphabet, idBodyLength, seededRandom, type Random } from '@gpumesh/core'

// Every choice the simulation makes comes from one seeded generator, so a seed replays a run exactly.

export class SimRandom {
  readonly #source: Random

  constructor(seed: number) {
    this.#source = seededRandom(seed)
  }

  /** In [0, 1). */
  next(): number {
    return this.#source.next()
  }

  /** An integer in [low, high]. */
  int(low: number, high: number): number {
    return low + Math.floor(this.next() * (high - low + 1))
  }

  chance(probability: number): boolean {
    return this.next() < probability
  }

  pick<T>(items: readonly T[]): T | undefined {
    return items.length === 0 ? undefined : items[Math.floor(this.next() * items.length)]
  }

  /** A choice among weighted options. */
  weighted<T extends string>(weights: Readonly<Record<T, number>>): T {
    const entries = Object.entries(weights) as [T, number][]
    const total = entries.reduce((sum, [, weight]) => sum + weight, 0)
    let roll = this.next() * total
    for (const [option, weight] of entries) {
      roll -= weight
      if (roll < 0) return option
    }
    return entries[entries.length - 1]![0]
  }

  /** An id body in the coordinator's alphabet (what mintIdBody would make, but from the seed). */
  idBody(): string {
    let body = ''
    for (let index = 0; index < idBodyLength; index += 1)
      body += idBodyAlphabet[Math.floor(this.next() * idBodyAlphabet.length)]
    return body
  }

  /** A WireGuard public key's shape: 32 bytes, base64. */
  wireguardKey(): string {
    return Buffer.from(Array.from({ length: 32 }, () => this.int(0, 255))).toString('base64')
  }
}
