import type { Store } from '@gpumesh/store'
import type { OfferIndex } from './offer-index.ts'

// Keeps one process's OfferIndex in step with the store. Every device write bumps its change_seq, so a pull
// reads only what changed. Sequence numbers are handed out at write time but become visible at commit, so
// a slow transaction can commit a lower number after we moved past it: a periodic full pass catches those.

export const offerFeedPageSize = 5_000

export class OfferFeed {
  readonly #store: Store
  readonly #index: OfferIndex
  #lastSeq = 0n

  constructor(store: Store, index: OfferIndex) {
    this.#store = store
    this.#index = index
  }

  /** Applies every change after the last one seen; returns how many devices changed. */
  async pull(): Promise<number> {
    let applied = 0
    for (;;) {
      const changed = await this.#store.listDevicesChangedSince(this.#lastSeq, offerFeedPageSize)
      for (const device of changed) {
        this.#index.upsert(device)
        if (device.changeSeq > this.#lastSeq) this.#lastSeq = device.changeSeq
      }
      applied += changed.length
      if (changed.length < offerFeedPageSize) return applied
    }
  }

  /** Re-reads everything. */
  async resync(): Promise<number> {
    this.#lastSeq = 0n
    return this.pull()
  }
}
