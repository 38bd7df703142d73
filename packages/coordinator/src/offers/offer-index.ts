import {
  bandwidthTierRank,
  formatMicroUsd,
  type DevicePricing,
  gpuModelById,
  normalizeModelQuery,
  parseUsdToMicro,
  type BandwidthTier,
} from '@gpumesh/core'
import {
  defaultOffersPageSize,
  type Offer,
  type OffersPage,
  type OffersQuery,
  type WorkerCapabilities,
} from '@gpumesh/protocol'
import type { DeviceRecord } from '@gpumesh/store'
import type { NodeCandidate, SupplySnapshot } from '@gpumesh/scheduler'
import {
  defaultPricingPolicy,
  demandMultiplierBp,
  isPeakHour,
  quoteDevice,
  type DeviceQuote,
  type MarketConditions,
  type PricedDevice,
  type PricingPolicy,
} from '@gpumesh/pricing'

// The marketplace, in memory: each coordinator process keeps every listable device here and answers
// searches without touching the database. It is fed by the store's change feed (see offer-feed.ts).
// Pre-sorted orders are rebuilt only after a change that can move an entry, never per query.

type Entry = {
  /** Everything a search can see; equal signatures mean nothing visible changed. */
  readonly signature: string
  readonly offer: Offer
  /** On the marketplace: idle and able to run cluster nodes. */
  readonly listed: boolean
  /** Online, not failed, priced and not held by a cluster: it may serve models, rentable or not. */
  readonly idle: boolean
  /** Its self-test says it can run cluster nodes; why not, when it cannot. */
  readonly runsClusterNodes: boolean
  readonly clusterNodesReason: string | null
  readonly capabilities: WorkerCapabilities | null
  /** Online and not failed: counts towards its model's supply when demand is measured. */
  readonly available: boolean
  /** Held by a cluster. */
  readonly hired: boolean
  /** What the pricing engine prices. */
  readonly priced: PricedDevice
  readonly supplierAccountId: string
  /** The quoted on-demand price per GPU-hour (0 when the device has none: it is then not listed). */
  readonly priceExactMicroUsd: bigint
  readonly modelKey: string
  readonly modelNameLower: string
  readonly bandwidthRank: number
  readonly priceMicroUsd: number
  readonly performance: number
}

export type SortKey = NonNullable<OffersQuery['sort']>

export class OfferIndex {
  readonly #entries = new Map<string, Entry>()
  /** Listed entries in each sort order, kept sorted in place: a change moves one entry, never re-sorts. */
  readonly #sorted = new Map<SortKey, Entry[]>()
  /** Listed entries by the values the selective filters test for equality. */
  readonly #byModel = new Map<string, Set<Entry>>()
  readonly #byCountry = new Map<string, Set<Entry>>()
  readonly #byRegion = new Map<string, Set<Entry>>()
  readonly #sortedBuckets = new Map<string, { generation: number; entries: readonly Entry[] }>()
  /** Bumped whenever a listed entry comes or goes: the sorted buckets above are valid for one generation. */
  #generation = 0
  #placementSnapshot: SupplySnapshot | undefined
  #roundTripMs: SupplySnapshot['roundTripMs'] = () => undefined
  #isMeasured: SupplySnapshot['isMeasured'] = undefined
  /** Newest change seen per device, delisted ones included, so a late, older read cannot undo a newer one. */
  readonly #changeSeqs = new Map<string, bigint>()
  readonly #policy: PricingPolicy
  /** Demand per model and the hour, as of the last updateMarket(); automatic prices are quoted against it. */
  #utilizationBp: ReadonlyMap<string, number> = new Map()
  #market: MarketConditions = { utilizationBp: () => undefined, hourUtc: 0 }

  constructor(policy: PricingPolicy = defaultPricingPolicy) {
    this.#policy = policy
  }

  get pricingPolicy(): PricingPolicy {
    return this.#policy
  }

  get size(): number {
    return this.#entries.size
  }

  /** Adds, replaces or (when the device is not listable) removes a device. */
  upsert(device: DeviceRecord): void {
    const seen = this.#changeSeqs.get(device.id)
    if (seen !== undefined && device.changeSeq < seen) return
    this.#changeSeqs.set(device.id, device.changeSeq)
    this.#put(
      device.id,
      toEntry(device, (priced) => this.#quote(priced, 1)),
    )
  }

  #put(deviceId: string, entry: Entry | undefined): void {
    const previous = this.#entries.get(deviceId)
    // The periodic resync re-sends every device; most have not changed.
    if (previous && entry && previous.signature === entry.signature) return
    this.#placementSnapshot = undefined
    if (previous) this.#unlist(previous)
    if (entry) {
      this.#entries.set(deviceId, entry)
      this.#list(entry)
    } else {
      this.#entries.delete(deviceId)
    }
  }

  #quote(priced: PricedDevice, commitmentHours: number): DeviceQuote {
    return quoteDevice(this.#policy, priced, this.#market, commitmentHours)
  }

  /**
   * Measures demand per model (hired GPUs over available ones) and takes the hour; when either moves an
   * automatic price, those entries are priced again. Returns how many were. The coordinator calls this about
   * once a minute: prices move in steps, not with every rental.
   */
  updateMarket(hourUtc: number): number {
    const supply = new Map<string, { available: number; hired: number }>()
    for (const entry of this.#entries.values()) {
      if (!entry.available) continue
      const units = Math.max(1, entry.offer.gpuCount)
      const counts = supply.get(entry.modelKey) ?? { available: 0, hired: 0 }
      counts.available += units
      if (entry.hired) counts.hired += units
      supply.set(entry.modelKey, counts)
    }
    const utilization = new Map<string, number>()
    for (const [model, counts] of supply)
      utilization.set(model, Math.round((counts.hired / counts.available) * 10_000))
    const demandMoved = (model: string) =>
      demandMultiplierBp(this.#policy, utilization.get(model)) !==
      demandMultiplierBp(this.#policy, this.#utilizationBp.get(model))
    const peakMoved = isPeakHour(this.#policy, hourUtc) !== isPeakHour(this.#policy, this.#market.hourUtc)
    const previousModels = new Set([...this.#utilizationBp.keys(), ...utilization.keys()])
    const moved = new Set([...previousModels].filter(demandMoved))
    this.#utilizationBp = utilization
    this.#market = { utilizationBp: (gpuModel) => utilization.get(gpuModel), hourUtc }
    if (!peakMoved && moved.size === 0) return 0
    let repriced = 0
    for (const [deviceId, entry] of [...this.#entries]) {
      if (entry.priced.pricing.mode !== 'auto' || (!peakMoved && !moved.has(entry.modelKey))) continue
      this.#put(deviceId, withQuote(entry, this.#quote(entry.priced, 1)))
      repriced += 1
    }
    return repriced
  }

  /**
   * A device's price for a rental this long, with its breakdown, at its own pricing or the one given;
   * undefined for a device not in the index.
   */
  quoteOf(deviceId: string, commitmentHours: number, pricing?: DevicePricing): DeviceQuote | undefined {
    const entry = this.#entries.get(deviceId)
    if (!entry) return undefined
    return this.#quote(pricing ? { ...entry.priced, pricing } : entry.priced, commitmentHours)
  }

  /**
   * The median quoted price per GPU-hour of each model's listed offers (devices without GPUs under "cpu"):
   * the explorer's price index samples this.
   */
  priceIndex(): { modelKey: string; medianMicroUsd: bigint; offers: number }[] {
    const byModel = new Map<string, bigint[]>()
    for (const entry of this.#entries.values()) {
      if (!entry.listed || entry.priceExactMicroUsd <= 0n) continue
      const prices = byModel.get(entry.modelKey) ?? []
      prices.push(entry.priceExactMicroUsd)
      byModel.set(entry.modelKey, prices)
    }
    return [...byModel.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([modelKey, prices]) => {
        prices.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
        const middle = prices.length >> 1
        // An even count takes the mean of the two middle prices, rounded down to the micro-dollar.
        const medianMicroUsd =
          prices.length % 2 ? prices[middle]! : (prices[middle - 1]! + prices[middle]!) / 2n
        return { modelKey, medianMicroUsd, offers: prices.length }
      })
  }

  /** Where placement snapshots read measured round trips between devices (see rtt/rtt-prober.ts). */
  useRoundTrips(
    lookup: SupplySnapshot['roundTripMs'],
    isMeasured?: NonNullable<SupplySnapshot['isMeasured']>,
  ): void {
    this.#roundTripMs = lookup
    this.#isMeasured = isMeasured
    this.#placementSnapshot = undefined
  }

  /**
   * The listed devices as placement candidates. Built once per change of the index and shared by every
   * placement until the next change (the scheduler caches its preference order per snapshot).
   */
  placementSnapshot(isReserved: (deviceId: string) => boolean = () => false): SupplySnapshot {
    if (!this.#placementSnapshot) {
      const nodes: NodeCandidate[] = []
      // Idle machines that cannot run cluster nodes are in the snapshot too, so that a refusal can say how
      // many the capability filter turned away and why.
      for (const entry of this.#entries.values()) {
        if (!entry.idle) continue
        const offer = entry.offer
        nodes.push({
          deviceId: offer.deviceId,
          supplierAccountId: entry.supplierAccountId,
          online: true,
          verified: offer.verificationState === 'verified',
          reserved: isReserved(offer.deviceId),
          gpuModel: offer.gpuModel,
          gpuCount: offer.gpuCount,
          vramMibPerGpu: offer.vramMibPerGpu,
          fp16TflopsPerGpu: offer.performance.fp16TensorTflopsPerGpu ?? 0,
          cpuCores: offer.cpuCores,
          memoryMib: offer.memoryMib,
          region: offer.region,
          country: offer.country,
          bandwidthRank: entry.bandwidthRank,
          pricePerGpuHourMicroUsd: entry.priceExactMicroUsd,
          reliability: offer.reliability ?? newDeviceReliabilityForPlacement,
          runsClusterNodes: entry.runsClusterNodes,
          ...(entry.clusterNodesReason === null ? {} : { clusterNodesReason: entry.clusterNodesReason }),
        })
      }
      const isMeasured = this.#isMeasured
      this.#placementSnapshot = {
        nodes,
        roundTripMs: (a, b) => this.#roundTripMs(a, b),
        ...(isMeasured ? { isMeasured: (deviceId: string) => isMeasured(deviceId) } : {}),
      }
    }
    return this.#placementSnapshot
  }

  /** The offer shown for a device, if it is listed. */
  offerOf(deviceId: string): Offer | undefined {
    const entry = this.#entries.get(deviceId)
    return entry?.listed ? entry.offer : undefined
  }

  /** What a device's self-test found, while it is in the index (it has reported hardware). */
  capabilitiesOf(deviceId: string): WorkerCapabilities | null | undefined {
    return this.#entries.get(deviceId)?.capabilities
  }

  /** A device's offer while it is idle (online, priced, not hired), whether or not it can run cluster nodes. */
  idleOfferOf(deviceId: string): Offer | undefined {
    const entry = this.#entries.get(deviceId)
    return entry?.idle ? entry.offer : undefined
  }

  search(query: OffersQuery): OffersPage {
    const sortKey: SortKey = query.sort ?? 'price'
    const matches = compileFilter(query)
    const limit = query.limit ?? defaultOffersPageSize
    const offset = query.cursor ? Number(query.cursor) : 0
    // With an equality filter, only its bucket is read (sorted once per index generation); otherwise the
    // kept order is walked, and without any filter not even that: the page is a slice.
    const order = this.#narrowest(query, sortKey) ?? this.#order(sortKey)
    if (matches === matchesEverything) {
      const offers = order.slice(offset, offset + limit).map((entry) => entry.offer)
      return {
        offers,
        total: order.length,
        nextCursor: offset + offers.length < order.length ? String(offset + offers.length) : null,
      }
    }
    const offers: Offer[] = []
    let total = 0
    for (const entry of order) {
      if (!matches(entry)) continue
      if (total >= offset && offers.length < limit) offers.push(entry.offer)
      total += 1
    }
    return {
      offers,
      total,
      nextCursor: offset + offers.length < total ? String(offset + offers.length) : null,
    }
  }

  /**
   * The smallest bucket an equality filter allows, in `sortKey` order, or undefined when the query has none
   * usable. Sorted buckets are cached until a listed entry next comes or goes.
   */
  #narrowest(query: OffersQuery, sortKey: SortKey): readonly Entry[] | undefined {
    const buckets: { size: number; key: string; entries: () => Entry[] }[] = []
    if (query.gpuModel !== undefined) {
      const wanted = normalizeModelQuery(query.gpuModel)
      const family = `${wanted}-`
      const keys = [...this.#byModel.keys()].filter((key) => key === wanted || key.startsWith(family))
      // A product name that is no catalog key ("NVIDIA A40") is matched by name, over the whole order.
      if (keys.length > 0) {
        const sets = keys.map((key) => this.#byModel.get(key)!)
        buckets.push({
          size: sets.reduce((sum, set) => sum + set.size, 0),
          key: `model:${wanted}`,
          entries: () => sets.flatMap((set) => [...set]),
        })
      }
    }
    if (query.country !== undefined) {
      const country = query.country.toUpperCase()
      const set = this.#byCountry.get(country) ?? new Set()
      buckets.push({ size: set.size, key: `country:${country}`, entries: () => [...set] })
    }
    if (query.region !== undefined) {
      const region = query.region.toLowerCase()
      const set = this.#byRegion.get(region) ?? new Set()
      buckets.push({ size: set.size, key: `region:${region}`, entries: () => [...set] })
    }
    if (buckets.length === 0) return undefined
    const smallest = buckets.reduce((best, bucket) => (bucket.size < best.size ? bucket : best))
    const cacheKey = `${smallest.key}|${sortKey}`
    const cached = this.#sortedBuckets.get(cacheKey)
    if (cached && cached.generation === this.#generation) return cached.entries
    const entries = smallest.entries().sort(comparators[sortKey])
    if (this.#sortedBuckets.size >= maxCachedBuckets) this.#sortedBuckets.clear()
    this.#sortedBuckets.set(cacheKey, { generation: this.#generation, entries })
    return entries
  }

  #order(sortKey: SortKey): Entry[] {
    let order = this.#sorted.get(sortKey)
    if (!order) {
      order = [...this.#entries.values()].filter((entry) => entry.listed).sort(comparators[sortKey])
      this.#sorted.set(sortKey, order)
    }
    return order
  }

  #list(entry: Entry): void {
    if (!entry.listed) return
    this.#generation += 1
    for (const [sortKey, order] of this.#sorted)
      order.splice(insertionPoint(order, entry, comparators[sortKey]), 0, entry)
    addTo(this.#byModel, entry.modelKey, entry)
    addTo(this.#byCountry, entry.offer.country, entry)
    addTo(this.#byRegion, entry.offer.region, entry)
  }

  #unlist(entry: Entry): void {
    if (!entry.listed) return
    this.#generation += 1
    for (const [sortKey, order] of this.#sorted) {
      const position = insertionPoint(order, entry, comparators[sortKey])
      // The comparators are total (device id breaks ties), so the entry sits exactly there.
      if (order[position] === entry) order.splice(position, 1)
      else {
        const fallback = order.indexOf(entry)
        if (fallback >= 0) order.splice(fallback, 1)
      }
    }
    this.#byModel.get(entry.modelKey)?.delete(entry)
    this.#byCountry.get(entry.offer.country)?.delete(entry)
    this.#byRegion.get(entry.offer.region)?.delete(entry)
  }
}

/** Sorted buckets kept at once (each model, country and region, in each order, fits many times over). */
const maxCachedBuckets = 1_000
const matchesEverything = () => true

function addTo(buckets: Map<string, Set<Entry>>, key: string, entry: Entry): void {
  let bucket = buckets.get(key)
  if (!bucket) {
    bucket = new Set()
    buckets.set(key, bucket)
  }
  bucket.add(entry)
}

/** First position whose entry does not sort before `entry` (binary search). */
function insertionPoint(
  order: readonly Entry[],
  entry: Entry,
  compare: (a: Entry, b: Entry) => number,
): number {
  let low = 0
  let high = order.length
  while (low < high) {
    const middle = (low + high) >>> 1
    if (compare(order[middle]!, entry) < 0) low = middle + 1
    else high = middle
  }
  return low
}

/** Placement ranks a device without history as half reliable: below proven ones, above poor ones. */
export const newDeviceReliabilityForPlacement = 0.5
/** Sorting and filters: a new device ranks below every measured one. */
const reliabilityRank = (entry: Entry) => entry.offer.reliability ?? -1
const byDeviceId = (a: Entry, b: Entry) =>
  a.offer.deviceId < b.offer.deviceId ? -1 : a.offer.deviceId > b.offer.deviceId ? 1 : 0
const comparators: Record<SortKey, (a: Entry, b: Entry) => number> = {
  price: (a, b) =>
    a.priceMicroUsd - b.priceMicroUsd || reliabilityRank(b) - reliabilityRank(a) || byDeviceId(a, b),
  performance: (a, b) =>
    b.performance - a.performance || a.priceMicroUsd - b.priceMicroUsd || byDeviceId(a, b),
  reliability: (a, b) =>
    reliabilityRank(b) - reliabilityRank(a) || a.priceMicroUsd - b.priceMicroUsd || byDeviceId(a, b),
}

function compileFilter(query: OffersQuery): (entry: Entry) => boolean {
  const checks: ((entry: Entry) => boolean)[] = []
  if (query.gpuModel !== undefined) {
    const wanted = normalizeModelQuery(query.gpuModel)
    const wantedLower = query.gpuModel.toLowerCase()
    const family = `${wanted}-`
    checks.push(
      (entry) =>
        entry.modelKey === wanted ||
        entry.modelKey.startsWith(family) ||
        entry.modelNameLower.includes(wantedLower),
    )
  }
  if (query.minGpus !== undefined) {
    const minGpus = query.minGpus
    checks.push((entry) => entry.offer.gpuCount >= minGpus)
  }
  if (query.maxGpus !== undefined) {
    const maxGpus = query.maxGpus
    checks.push((entry) => entry.offer.gpuCount <= maxGpus)
  }
  if (query.minVramGb !== undefined) {
    const minVramMib = query.minVramGb * 1024
    checks.push((entry) => entry.offer.vramMibPerGpu >= minVramMib)
  }
  if (query.minCpuCores !== undefined) {
    const minCpuCores = query.minCpuCores
    checks.push((entry) => entry.offer.cpuCores >= minCpuCores)
  }
  if (query.minRamGb !== undefined) {
    const minMemoryMib = query.minRamGb * 1024
    checks.push((entry) => entry.offer.memoryMib >= minMemoryMib)
  }
  if (query.region !== undefined) {
    const region = query.region.toLowerCase()
    checks.push((entry) => entry.offer.region === region)
  }
  if (query.country !== undefined) {
    const country = query.country.toUpperCase()
    checks.push((entry) => entry.offer.country === country)
  }
  if (query.minBandwidthTier !== undefined) {
    const minRank = bandwidthTierRank[query.minBandwidthTier]
    checks.push((entry) => entry.bandwidthRank >= minRank)
  }
  if (query.maxPricePerGpuHourUsd !== undefined) {
    const maxPrice = Number(parseUsdToMicro(query.maxPricePerGpuHourUsd) ?? 0n)
    checks.push((entry) => entry.priceMicroUsd <= maxPrice)
  }
  if (query.verifiedOnly) checks.push((entry) => entry.offer.verificationState === 'verified')
  if (query.minReliability !== undefined) {
    const minReliability = query.minReliability
    checks.push((entry) => reliabilityRank(entry) >= minReliability)
  }
  if (checks.length === 0) return matchesEverything
  return (entry) => checks.every((check) => check(entry))
}

/**
 * A device is in the index once it has reported hardware and location. It is listed when it is online, not
 * failed, has a price (its own, or an automatic one), and is not held by a cluster (a hired machine is not on
 * offer until it is released).
 */
function toEntry(device: DeviceRecord, quote: (priced: PricedDevice) => DeviceQuote): Entry | undefined {
  const { inventory } = device
  if (!inventory || device.region === null || device.country === null) return undefined
  const available = device.state === 'online' && device.verificationState !== 'failed'
  const hired = device.reservedByClusterId !== null
  const clusterNodes = device.capabilities?.clusterNodes
  const runsClusterNodes = clusterNodes?.available === true
  const clusterNodesReason = runsClusterNodes
    ? null
    : (clusterNodes?.reason ?? 'its worker has not reported what it can do')
  const model = dominantModel(inventory.gpus)
  const gpuCount = inventory.gpus.length
  const spec = model ? gpuModelById(model.modelKey) : undefined
  const fp16 = spec ? spec.fp16TensorTflops : null
  const priced: PricedDevice = {
    gpuModel: model ? model.modelKey : 'cpu',
    gpuCount,
    cpuCores: inventory.cpu.logicalCores,
    catalogFp32TflopsPerGpu: spec ? spec.fp32Tflops : null,
    measuredFp32Tflops: device.measuredFp32Tflops,
    bandwidthTier: device.bandwidthTier,
    region: device.region,
    pricing: { mode: device.pricingMode, askingPriceMicroUsd: device.askingPriceMicroUsd },
  }
  const offer: Offer = {
    deviceId: device.id,
    gpuModel: model ? model.modelKey : 'cpu',
    gpuModelName: model ? (spec?.displayName ?? model.productName) : `CPU (${inventory.cpu.model})`,
    gpuCount,
    vramMibPerGpu: gpuCount === 0 ? 0 : Math.min(...inventory.gpus.map((gpu) => gpu.vramMib)),
    cpuCores: inventory.cpu.logicalCores,
    memoryMib: inventory.memoryMib,
    region: device.region,
    country: device.country,
    bandwidthTier: device.bandwidthTier,
    pricingMode: device.pricingMode,
    pricePerGpuHourUsd: '0.00',
    pricePerHourUsd: '0.00',
    performance: {
      fp16TensorTflopsPerGpu: fp16,
      measuredFp32Tflops: device.measuredFp32Tflops,
      source: device.measuredFp32Tflops !== null ? 'measured' : fp16 === null ? 'unknown' : 'catalog',
    },
    reliability: device.reliability,
    verificationState: device.verificationState,
    probeSource: inventory.probeSource,
  }
  return withQuote(
    {
      signature: '',
      offer,
      listed: available && !hired && runsClusterNodes,
      idle: available && !hired,
      runsClusterNodes,
      clusterNodesReason,
      capabilities: device.capabilities,
      available,
      hired,
      priced,
      supplierAccountId: device.accountId,
      priceExactMicroUsd: 0n,
      modelKey: offer.gpuModel,
      modelNameLower: offer.gpuModelName.toLowerCase(),
      bandwidthRank: device.bandwidthTier ? bandwidthTierRank[device.bandwidthTier as BandwidthTier] : 0,
      priceMicroUsd: 0,
      performance: (fp16 ?? 0) * gpuCount,
    },
    quote(priced),
  )
}

/** The entry at a new quote: its price, the offer's prices, whether it can be listed, and its signature. */
function withQuote(entry: Entry, quote: DeviceQuote): Entry {
  const price = quote.priced ? quote.pricePerGpuHourMicroUsd : 0n
  const offer: Offer = {
    ...entry.offer,
    pricePerGpuHourUsd: formatMicroUsd(price),
    pricePerHourUsd: formatMicroUsd(price * BigInt(Math.max(1, entry.offer.gpuCount))),
  }
  const idle = entry.available && !entry.hired && quote.priced
  const listed = idle && entry.runsClusterNodes
  return {
    ...entry,
    offer,
    listed,
    idle,
    priceExactMicroUsd: price,
    priceMicroUsd: Number(price),
    // The offer carries every priced input but the supplier's minimum.
    signature: `${listed}|${idle}|${entry.clusterNodesReason}|${entry.hired}|${entry.supplierAccountId}|${entry.priced.pricing.askingPriceMicroUsd}|${JSON.stringify(offer)}`,
  }
}

function dominantModel<T extends { modelKey: string }>(gpus: readonly T[]): T | undefined {
  const counts = new Map<string, number>()
  for (const gpu of gpus) counts.set(gpu.modelKey, (counts.get(gpu.modelKey) ?? 0) + 1)
  let best: T | undefined
  for (const gpu of gpus)
    if (!best || (counts.get(gpu.modelKey) ?? 0) > (counts.get(best.modelKey) ?? 0)) best = gpu
  return best
}
