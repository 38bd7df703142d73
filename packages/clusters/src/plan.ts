import {
  bandwidthTierRank,
  formatGmtUnits,
  formatMicroUsd,
  normalizeModelQuery,
  parseUsdToMicro,
  ValidationError,
} from '@gpumesh/core'
import { holdFor, usdToGmtUnits } from '@gpumesh/ledger'
import type { DeviceQuote } from '@gpumesh/pricing'
import type {
  ClusterPlan,
  ClusterQuote,
  ClusterRequestBody,
  NodeQuote,
  Offer,
  PriceFactorView,
} from '@gpumesh/protocol'
import {
  nodeHourPrice,
  placeCluster,
  type ClusterRequest,
  type NodeCandidate,
  type PlacementResult,
  type RejectionReason,
  type SupplySnapshot,
} from '@gpumesh/scheduler'

/** A whole 8-GPU node is the common unit; "A100:16" becomes two 8-GPU nodes. */
export const defaultGpusPerNodeForShorthand = 8
export const defaultClusterDurationHours = 1

type ResolvedRequest = { readonly request: ClusterRequest; readonly durationHours: number }

/**
 * Turns the API body (with its shorthands) into the scheduler's request. A request that says nothing about
 * GPUs asks for one per node where the market has GPU machines, and for any node where it has none (a CPU
 * market is a market too); `supply` is what it looks at.
 */
export function resolveClusterRequest(body: ClusterRequestBody, supply?: SupplySnapshot): ResolvedRequest {
  let gpuModel = body.gpuModel === undefined ? undefined : normalizeModelQuery(body.gpuModel)
  let totalGpus: number | undefined
  if (typeof body.gpus === 'string') {
    const [model, count] = body.gpus.split(':') as [string, string]
    const shorthandModel = normalizeModelQuery(model)
    if (gpuModel !== undefined && gpuModel !== shorthandModel) {
      throw new ValidationError([
        { field: 'gpus', message: `names model ${model} but gpuModel is ${body.gpuModel}` },
      ])
    }
    gpuModel = shorthandModel
    totalGpus = Number(count)
  } else if (typeof body.gpus === 'number') {
    totalGpus = body.gpus
  }
  let nodeCount = body.nodes
  let gpusPerNode = body.gpusPerNode
  if (totalGpus !== undefined) {
    nodeCount ??= Math.ceil(totalGpus / (gpusPerNode ?? defaultGpusPerNodeForShorthand))
    gpusPerNode ??= Math.ceil(totalGpus / nodeCount)
    if (nodeCount * gpusPerNode < totalGpus) {
      throw new ValidationError([
        { field: 'gpus', message: `${nodeCount} nodes × ${gpusPerNode} GPUs cannot hold ${totalGpus} GPUs` },
      ])
    }
  }
  nodeCount ??= 1
  const saysNothingOfGpus =
    gpuModel === undefined && body.minVramGb === undefined && body.minFp16TflopsPerGpu === undefined
  gpusPerNode ??=
    gpuModel === 'cpu' || (saysNothingOfGpus && supply !== undefined && !offersGpuNodes(supply)) ? 0 : 1
  const maxPrice =
    body.maxPricePerGpuHourUsd === undefined ? undefined : parseUsdToMicro(body.maxPricePerGpuHourUsd)
  return {
    durationHours: body.durationHours ?? defaultClusterDurationHours,
    request: {
      nodeCount,
      gpusPerNode,
      ...(gpuModel === undefined ? {} : { gpuModel }),
      ...(body.minVramGb === undefined ? {} : { minVramMibPerGpu: Math.ceil(body.minVramGb * 1024) }),
      ...(body.minFp16TflopsPerGpu === undefined ? {} : { minFp16TflopsPerGpu: body.minFp16TflopsPerGpu }),
      ...(body.region === undefined ? {} : { region: body.region.toLowerCase() }),
      ...(body.country === undefined ? {} : { country: body.country.toUpperCase() }),
      ...(body.minBandwidthTier === undefined
        ? {}
        : { minBandwidthRank: bandwidthTierRank[body.minBandwidthTier] }),
      ...(maxPrice === undefined || maxPrice === null ? {} : { maxPricePerGpuHourMicroUsd: maxPrice }),
      ...(body.verifiedOnly === undefined ? {} : { verifiedOnly: body.verifiedOnly }),
    },
  }
}

/** Whether any idle machine that can run a cluster node has a GPU. */
export function offersGpuNodes(supply: SupplySnapshot): boolean {
  return supply.nodes.some(
    (node) => node.online && !node.reserved && node.runsClusterNodes && node.gpuCount > 0,
  )
}

/** The request with one constraint removed: what the market could do if the renter gave that one up. */
export function relax(
  request: ClusterRequest,
  constraint: RejectionReason | 'node_count',
): ClusterRequest | undefined {
  const {
    gpuModel,
    minVramMibPerGpu,
    minFp16TflopsPerGpu,
    region,
    country,
    minBandwidthRank,
    maxPricePerGpuHourMicroUsd,
    ...rest
  } = request
  const keep = {
    gpuModel,
    minVramMibPerGpu,
    minFp16TflopsPerGpu,
    region,
    country,
    minBandwidthRank,
    maxPricePerGpuHourMicroUsd,
  }
  const without = (field: keyof typeof keep) =>
    ({
      ...rest,
      ...Object.fromEntries(
        Object.entries(keep).filter(([key, value]) => key !== field && value !== undefined),
      ),
    }) as ClusterRequest
  switch (constraint) {
    case 'gpu_model':
      return without('gpuModel')
    case 'vram':
      return without('minVramMibPerGpu')
    case 'performance':
      return without('minFp16TflopsPerGpu')
    case 'region':
      return without('region')
    case 'country':
      return without('country')
    case 'bandwidth':
      return without('minBandwidthRank')
    case 'price':
      return without('maxPricePerGpuHourMicroUsd')
    case 'unverified':
      return { ...request, verifiedOnly: false }
    case 'gpu_count':
      // At least 0 GPUs: any node, CPU machines included.
      return { ...request, gpusPerNode: 0 }
    default:
      return undefined
  }
}

/** What a plan needs of the market beside the placement snapshot. */
export type PlanMarket = {
  offerOf(deviceId: string): Offer | undefined
  /** A device's price for a rental this long (the offer index's pricing engine). */
  quoteOf(deviceId: string, commitmentHours: number): DeviceQuote | undefined
  readonly gmtUnitsPerUsd: bigint
}

export type PricedNodes = {
  /** Per node, in the placement's order: its GPUs at its quoted price for the rental's length. */
  readonly nodePricesPerHourMicroUsd: readonly bigint[]
  readonly pricePerHourMicroUsd: bigint
  readonly quote: ClusterQuote
}

/**
 * Prices placed nodes for the whole rental: an automatic price gets the commitment discount the duration
 * earns; a fixed one is the supplier's. A node the index can no longer quote keeps its listed price.
 */
export function priceNodes(
  nodes: readonly NodeCandidate[],
  durationHours: number,
  market: PlanMarket,
): PricedNodes {
  const nodeQuotes: NodeQuote[] = []
  const prices: bigint[] = []
  let policyVersion = ''
  for (const node of nodes) {
    const quote = market.quoteOf(node.deviceId, durationHours)
    const perGpu = quote?.priced ? quote.pricePerGpuHourMicroUsd : node.pricePerGpuHourMicroUsd
    const perNode = nodeHourPrice({ pricePerGpuHourMicroUsd: perGpu, gpuCount: node.gpuCount })
    prices.push(perNode)
    if (quote) policyVersion = quote.policyVersion
    nodeQuotes.push({
      deviceId: node.deviceId,
      gpuModel: node.gpuModel,
      gpuCount: node.gpuCount,
      pricingMode: quote?.mode ?? 'fixed',
      pricePerGpuHourUsd: formatMicroUsd(perGpu),
      pricePerHourUsd: formatMicroUsd(perNode),
      factors: quote ? factorViews(quote) : [],
    })
  }
  const pricePerHourMicroUsd = prices.reduce((sum, price) => sum + price, 0n)
  const hourGmt = usdToGmtUnits(pricePerHourMicroUsd, market.gmtUnitsPerUsd)
  return {
    nodePricesPerHourMicroUsd: prices,
    pricePerHourMicroUsd,
    quote: {
      policyVersion,
      commitmentHours: durationHours,
      gmtPerUsd: formatGmtUnits(market.gmtUnitsPerUsd),
      pricePerHourGmt: formatGmtUnits(hourGmt),
      totalGmt: formatGmtUnits(holdFor(hourGmt, Math.round(durationHours * 3_600_000))),
      nodes: nodeQuotes,
    },
  }
}

/** A quote's factors as the API shows them. */
export function factorViews(quote: DeviceQuote): PriceFactorView[] {
  if (!quote.priced) return []
  return quote.factors.map((factor) => ({
    factor: factor.factor,
    multiplier: factor.multiplierBp === null ? null : (factor.multiplierBp / 10_000).toFixed(4),
    priceAfterUsd: formatMicroUsd(factor.priceAfterMicroUsd),
    detail: factor.detail,
  }))
}

export function planCluster(
  snapshot: SupplySnapshot,
  body: ClusterRequestBody,
  market: PlanMarket,
): ClusterPlan {
  const { offerOf } = market
  const { request, durationHours } = resolveClusterRequest(body, snapshot)
  const result = placeCluster(snapshot, request)
  const offersOf = (nodes: readonly NodeCandidate[]) =>
    nodes.map((node) => offerOf(node.deviceId)).filter((offer) => offer !== undefined)
  const resolved = {
    nodes: request.nodeCount,
    gpusPerNode: request.gpusPerNode,
    gpuModel: request.gpuModel ?? null,
    durationHours,
  }
  if (result.ok) {
    const priced = priceNodes(result.nodes, durationHours, market)
    return {
      placeable: true,
      request: resolved,
      nodes: offersOf(result.nodes),
      pricePerHourUsd: formatMicroUsd(priced.pricePerHourMicroUsd),
      totalUsd: formatMicroUsd(totalFor(priced.pricePerHourMicroUsd, durationHours)),
      quote: priced.quote,
      blockingConstraint: null,
      detail: `placeable on ${result.nodes.length} node${result.nodes.length === 1 ? '' : 's'}`,
      rejections: {},
      withoutBlockingConstraint: null,
      market: marketSummary(snapshot),
    }
  }
  const relaxed = relax(request, result.blockingConstraint)
  const alternative: PlacementResult | undefined = relaxed ? placeCluster(snapshot, relaxed) : undefined
  return {
    placeable: false,
    request: resolved,
    nodes: [],
    pricePerHourUsd: null,
    totalUsd: null,
    quote: null,
    blockingConstraint: result.blockingConstraint,
    detail: explainRefusal(result, request),
    rejections: result.rejections as Record<string, number>,
    withoutBlockingConstraint:
      alternative?.ok === true
        ? {
            pricePerHourUsd: formatMicroUsd(alternative.pricePerHourMicroUsd),
            nodes: offersOf(alternative.nodes),
          }
        : null,
    market: marketSummary(snapshot),
  }
}

/** The placement's reason, and the one change of the request that most often fixes it. */
export function explainRefusal(
  result: Extract<PlacementResult, { ok: false }>,
  request: ClusterRequest,
): string {
  if (result.blockingConstraint === 'gpu_count' && request.gpusPerNode > 0)
    return `${result.detail}; to rent machines without GPUs ask for gpusPerNode 0 (CLI: --gpus-per-node 0)`
  return result.detail
}

/** Hours may be fractional; the total is rounded down to the micro-dollar. */
function totalFor(pricePerHourMicroUsd: bigint, durationHours: number): bigint {
  const millihours = BigInt(Math.round(durationHours * 1000))
  return (pricePerHourMicroUsd * millihours) / 1000n
}

export const maxMarketModels = 20

function marketSummary(snapshot: SupplySnapshot): ClusterPlan['market'] {
  const byModel = new Map<string, { nodes: number; gpus: number; minPrice: bigint }>()
  for (const node of snapshot.nodes) {
    if (!node.online || node.reserved || !node.runsClusterNodes) continue
    const summary = byModel.get(node.gpuModel) ?? {
      nodes: 0,
      gpus: 0,
      minPrice: node.pricePerGpuHourMicroUsd,
    }
    summary.nodes += 1
    summary.gpus += node.gpuCount
    if (node.pricePerGpuHourMicroUsd < summary.minPrice) summary.minPrice = node.pricePerGpuHourMicroUsd
    byModel.set(node.gpuModel, summary)
  }
  return [...byModel.entries()]
    .sort((a, b) => b[1].gpus - a[1].gpus || (a[0] < b[0] ? -1 : 1))
    .slice(0, maxMarketModels)
    .map(([gpuModel, summary]) => ({
      gpuModel,
      nodes: summary.nodes,
      gpus: summary.gpus,
      minPricePerGpuHourUsd: formatMicroUsd(summary.minPrice),
    }))
}
