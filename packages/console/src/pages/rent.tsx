import { gpuCatalog } from '@gpumesh/core'
import type {
  ClusterPlan,
  ClusterRequestBody,
  Offer,
  OffersPage,
  OffersQuery,
  QuoteQuery,
} from '@gpumesh/protocol'
import { GpumeshApiError } from '@gpumesh/sdk'
import { useEffect, useState, type FormEvent } from 'react'
import { Link, useLocation } from 'wouter'
import { PriceFactorList } from '../components/price-factors.tsx'
import {
  Badge,
  CheckField,
  DataTable,
  ErrorBanner,
  Loading,
  numeric,
  PageHeader,
  Section,
  SelectField,
  Stat,
  SubmitButton,
  TextField,
  type Choice,
} from '../components/ui.tsx'
import { describeError, fieldErrorsOf } from '../errors.ts'
import { bindFields, useFormSubmission } from '../form.ts'
import { formatReliability, formatMib, formatTflops } from '../format.ts'
import { useTitle } from '../hooks.tsx'
import { useSession } from '../session.tsx'
import {
  checks,
  hasErrors,
  maxClusterDurationHours,
  maxClusterNodes,
  maxGpusPerNode,
  optionalNumber,
  optionalText,
  validateForm,
  type FieldSpec,
} from '../validation.ts'

// Renting: search the marketplace, price a cluster (every node's price with each factor that made it), and
// deploy it. The quote follows the deploy form as it is filled in.

const bandwidthTiers = ['low', 'medium', 'high'] as const
type BandwidthChoice = '' | (typeof bandwidthTiers)[number]
const bandwidthChoices: readonly Choice<BandwidthChoice>[] = [
  { value: '', label: 'any' },
  ...bandwidthTiers.map((tier) => ({ value: tier, label: tier })),
]
const quoteDelayMs = 400

function ModelOptions({ id }: { id: string }) {
  return (
    <datalist id={id}>
      {gpuCatalog.map((model) => (
        <option key={model.id} value={model.id}>
          {model.displayName}
        </option>
      ))}
      <option value="cpu">CPU only (no GPU)</option>
    </datalist>
  )
}

// --- Offers -----------------------------------------------------------------------------------------------

type OfferFilters = {
  gpuModel: string
  minGpus: string
  minVramGb: string
  region: string
  minBandwidthTier: BandwidthChoice
  maxPricePerGpuHourUsd: string
  verifiedOnly: boolean
  sort: 'price' | 'performance' | 'reliability'
}

const sortChoices: readonly Choice<OfferFilters['sort']>[] = [
  { value: 'price', label: 'price' },
  { value: 'performance', label: 'performance' },
  { value: 'reliability', label: 'reliability' },
]

const offerFilterSpec: Record<string, FieldSpec> = {
  gpuModel: { checks: [checks.maxLength(64)] },
  minGpus: { checks: [checks.integer(0, 64)] },
  minVramGb: { checks: [checks.number({ minimum: 0, maximum: 4096 })] },
  region: { checks: [checks.maxLength(63)] },
  maxPricePerGpuHourUsd: { checks: [checks.usd] },
}

function offersQuery(filters: OfferFilters): OffersQuery {
  const gpuModel = optionalText(filters.gpuModel)
  const minGpus = optionalNumber(filters.minGpus)
  const minVramGb = optionalNumber(filters.minVramGb)
  const region = optionalText(filters.region)
  const maxPrice = optionalText(filters.maxPricePerGpuHourUsd)
  return {
    ...(gpuModel ? { gpuModel } : {}),
    ...(minGpus !== undefined ? { minGpus } : {}),
    ...(minVramGb !== undefined ? { minVramGb } : {}),
    ...(region ? { region } : {}),
    ...(filters.minBandwidthTier ? { minBandwidthTier: filters.minBandwidthTier } : {}),
    ...(maxPrice ? { maxPricePerGpuHourUsd: maxPrice } : {}),
    ...(filters.verifiedOnly ? { verifiedOnly: true } : {}),
    sort: filters.sort,
    limit: 50,
  }
}

function OfferSearch({ onUse }: { onUse(offer: Offer): void }) {
  const { client } = useSession()
  const [filters, setFilters] = useState<OfferFilters>({
    gpuModel: '',
    minGpus: '',
    minVramGb: '',
    region: '',
    minBandwidthTier: '',
    maxPricePerGpuHourUsd: '',
    verifiedOnly: false,
    sort: 'price',
  })
  const [page, setPage] = useState<OffersPage | null>(null)
  const [query, setQuery] = useState<OffersQuery | null>(null)
  const [moreError, setMoreError] = useState<unknown>(undefined)
  const form = useFormSubmission()
  const set = (change: Partial<OfferFilters>) => {
    setFilters((current) => ({ ...current, ...change }))
    form.clear(Object.keys(change))
  }
  const bind = bindFields(filters, set, form.fieldErrors)

  const search = async (event?: FormEvent) => {
    event?.preventDefault()
    const errors = validateForm(filters as unknown as Record<string, string>, offerFilterSpec)
    const next = offersQuery(filters)
    await form.submit(errors, Object.keys(filters), async () => {
      setPage(await client.searchOffers(next))
      setQuery(next)
      setMoreError(undefined)
    })
  }

  const loadMore = async () => {
    if (!page?.nextCursor || !query) return
    try {
      const more = await client.searchOffers({ ...query, cursor: page.nextCursor })
      setPage({ ...more, offers: [...page.offers, ...more.offers] })
    } catch (caught) {
      setMoreError(caught)
    }
  }

  useEffect(() => {
    void search()
    // The first search, with no filters, runs once when the page opens.
  }, [])

  return (
    <Section title="Offers" testId="offers">
      <form className="filters" onSubmit={(event) => void search(event)} noValidate>
        <TextField
          label="GPU model"
          {...bind('gpuModel')}
          list="offer-models"
          placeholder="any, e.g. a100"
          testId="filter-model"
        />
        <ModelOptions id="offer-models" />
        <TextField
          label="Min GPUs per node"
          {...bind('minGpus')}
          inputMode="numeric"
          placeholder="any"
          testId="filter-count"
        />
        <TextField
          label="Min VRAM per GPU (GB)"
          {...bind('minVramGb')}
          inputMode="decimal"
          placeholder="any"
          testId="filter-vram"
        />
        <TextField
          label="Region"
          {...bind('region')}
          placeholder="any, e.g. eu-west"
          testId="filter-region"
        />
        <SelectField
          label="Min bandwidth"
          {...bind('minBandwidthTier')}
          choices={bandwidthChoices}
          testId="filter-bandwidth"
        />
        <TextField
          label="Max $ / GPU-hour"
          {...bind('maxPricePerGpuHourUsd')}
          inputMode="decimal"
          placeholder="any, e.g. 2.50"
          testId="filter-max-price"
        />
        <SelectField label="Sort by" {...bind('sort')} choices={sortChoices} testId="filter-sort" />
        <div className="filters-actions">
          <CheckField
            label="Verified only"
            checked={filters.verifiedOnly}
            onChange={(on) => set({ verifiedOnly: on })}
            testId="filter-verified"
          />
          <SubmitButton label="Search" busyLabel="Searching…" busy={form.busy} testId="search-offers" />
        </div>
      </form>
      <ErrorBanner message={form.banner ?? undefined} />
      {page ? (
        <>
          <p className="muted">
            {page.total} offer{page.total === 1 ? '' : 's'} match.
          </p>
          <DataTable
            columns={[
              'Device',
              'Hardware',
              numeric('VRAM / GPU'),
              numeric('CPU · RAM'),
              'Location',
              'Bandwidth',
              numeric('$ / GPU-h'),
              numeric('$ / h'),
              numeric('Performance'),
              numeric('Reliability'),
              'Verified',
              '',
            ]}
            rows={page.offers}
            empty="No offer matches these filters."
          >
            {(offer) => (
              <tr key={offer.deviceId} data-testid="offer-row" data-device-id={offer.deviceId}>
                <td className="code">{offer.deviceId}</td>
                <td className="nowrap">
                  {offer.gpuCount > 0 ? `${offer.gpuCount}× ${offer.gpuModelName}` : offer.gpuModelName}
                </td>
                <td className="numeric">{offer.gpuCount > 0 ? formatMib(offer.vramMibPerGpu) : '—'}</td>
                <td className="numeric nowrap">
                  {offer.cpuCores} · {formatMib(offer.memoryMib)}
                </td>
                <td className="nowrap">
                  {offer.region} · {offer.country}
                </td>
                <td>{offer.bandwidthTier ?? '—'}</td>
                <td className="numeric" data-testid="offer-price">
                  {offer.pricePerGpuHourUsd}
                  {offer.pricingMode === 'auto' ? <span className="muted"> auto</span> : null}
                </td>
                <td className="numeric">{offer.pricePerHourUsd}</td>
                <td className="numeric nowrap" title={`source: ${offer.performance.source}`}>
                  {offer.performance.measuredFp32Tflops !== null
                    ? `${formatTflops(offer.performance.measuredFp32Tflops)} FP32`
                    : offer.performance.fp16TensorTflopsPerGpu !== null
                      ? `${offer.performance.fp16TensorTflopsPerGpu} FP16 (sheet)`
                      : '—'}
                </td>
                <td className="numeric">{formatReliability(offer.reliability)}</td>
                <td>
                  <Badge>{offer.verificationState}</Badge>
                </td>
                <td>
                  <button
                    type="button"
                    className="button button-small"
                    data-testid="offer-use"
                    onClick={() => onUse(offer)}
                  >
                    Use
                  </button>
                </td>
              </tr>
            )}
          </DataTable>
          {page.nextCursor ? (
            <div className="pager">
              <button
                type="button"
                className="button button-small"
                data-testid="offers-more"
                onClick={() => void loadMore()}
              >
                More offers
              </button>
            </div>
          ) : null}
          <ErrorBanner {...(moreError !== undefined ? { error: moreError } : {})} />
        </>
      ) : form.busy ? (
        <Loading what="Searching" />
      ) : null}
    </Section>
  )
}

// --- Quote and deploy -------------------------------------------------------------------------------------

type DeployValues = {
  name: string
  nodes: string
  gpusPerNode: string
  gpuModel: string
  durationHours: string
  region: string
  minBandwidthTier: BandwidthChoice
  maxPricePerGpuHourUsd: string
  verifiedOnly: boolean
}

const deploySpec: Record<string, FieldSpec> = {
  name: {
    checks: [
      checks.maxLength(64),
      checks.pattern(
        /^[a-z0-9][a-z0-9-]*$/,
        'lowercase letters, digits and -, starting with a letter or digit',
      ),
    ],
  },
  nodes: { required: true, checks: [checks.integer(1, maxClusterNodes)] },
  gpusPerNode: { required: true, checks: [checks.integer(0, maxGpusPerNode)] },
  gpuModel: { checks: [checks.maxLength(64)] },
  durationHours: { required: true, checks: [checks.number({ above: 0, maximum: maxClusterDurationHours })] },
  region: { checks: [checks.maxLength(63)] },
  maxPricePerGpuHourUsd: { checks: [checks.usd] },
}

const deployFields = [...Object.keys(deploySpec), 'minBandwidthTier', 'verifiedOnly', 'gpus']

function validateDeploy(values: DeployValues) {
  return validateForm(values as unknown as Record<string, string>, deploySpec)
}

function quoteQueryOf(values: DeployValues): QuoteQuery {
  const gpuModel = optionalText(values.gpuModel)
  const region = optionalText(values.region)
  const maxPrice = optionalText(values.maxPricePerGpuHourUsd)
  return {
    nodes: Number(values.nodes),
    gpusPerNode: Number(values.gpusPerNode),
    durationHours: Number(values.durationHours),
    verifiedOnly: values.verifiedOnly,
    ...(gpuModel ? { gpuModel } : {}),
    ...(region ? { region } : {}),
    ...(values.minBandwidthTier ? { minBandwidthTier: values.minBandwidthTier } : {}),
    ...(maxPrice ? { maxPricePerGpuHourUsd: maxPrice } : {}),
  }
}

function requestBodyOf(values: DeployValues): ClusterRequestBody {
  const name = optionalText(values.name)
  return { ...quoteQueryOf(values), ...(name ? { name } : {}) }
}

function QuotePanel({
  plan,
  error,
  pricing,
  invalid,
}: {
  plan: ClusterPlan | null
  error: unknown
  pricing: boolean
  invalid: boolean
}) {
  return (
    <Section
      title="Quote"
      testId="quote-panel"
      actions={pricing ? <span className="muted">pricing…</span> : null}
    >
      {invalid ? <p className="muted">Correct the form to see a price.</p> : null}
      {error !== undefined ? (
        <ErrorBanner
          message={
            hasErrors(fieldErrorsOf(error))
              ? `The coordinator cannot price this request: ${Object.entries(fieldErrorsOf(error))
                  .map(([field, message]) => `${field} ${message}`)
                  .join('; ')}`
              : describeError(error)
          }
        />
      ) : null}
      {plan && !invalid ? <Plan plan={plan} /> : null}
      {!plan && error === undefined && !invalid ? <Loading what="Pricing" /> : null}
    </Section>
  )
}

function Plan({ plan }: { plan: ClusterPlan }) {
  if (!plan.placeable) {
    return (
      <div data-testid="quote-unplaceable">
        <p>
          <Badge tone="warn">cannot place</Badge> <strong>{plan.blockingConstraint ?? 'no capacity'}</strong>:{' '}
          {plan.detail}
        </p>
        {Object.keys(plan.rejections).length > 0 ? (
          <p className="muted">
            Nodes turned away:{' '}
            {Object.entries(plan.rejections)
              .map(([reason, count]) => `${reason} ${count}`)
              .join(' · ')}
          </p>
        ) : null}
        {plan.withoutBlockingConstraint ? (
          <p>
            Without that constraint: {plan.withoutBlockingConstraint.nodes.length} node(s) at $
            {plan.withoutBlockingConstraint.pricePerHourUsd}/h.
          </p>
        ) : null}
        {plan.market.length > 0 ? (
          <DataTable
            columns={['Model on offer', numeric('Nodes'), numeric('GPUs'), numeric('From $ / GPU-h')]}
            rows={plan.market}
          >
            {(row) => (
              <tr key={row.gpuModel}>
                <td>{row.gpuModel}</td>
                <td className="numeric">{row.nodes}</td>
                <td className="numeric">{row.gpus}</td>
                <td className="numeric">{row.minPricePerGpuHourUsd}</td>
              </tr>
            )}
          </DataTable>
        ) : (
          <p className="muted">Nothing is on offer right now.</p>
        )}
      </div>
    )
  }
  const quote = plan.quote
  return (
    <div data-testid="quote-placeable">
      <div className="stat-row stat-row-wrap">
        <Stat
          label="Per hour"
          value={`$${plan.pricePerHourUsd}`}
          sub={quote ? `${quote.pricePerHourGmt} GMT` : null}
          testId="quote-price-per-hour"
        />
        <Stat
          label={`Total for ${plan.request.durationHours} h`}
          value={`$${plan.totalUsd}`}
          sub={quote ? `${quote.totalGmt} GMT held at deploy` : null}
          testId="quote-total"
        />
      </div>
      <p className="muted">
        {plan.request.nodes} node(s) × {plan.request.gpusPerNode} GPU(s)
        {plan.request.gpuModel ? ` of ${plan.request.gpuModel}` : ''}
        {quote ? ` · policy ${quote.policyVersion} · 1 USD = ${quote.gmtPerUsd} GMT` : ''}
      </p>
      <div className="quote-nodes">
        {(quote?.nodes ?? []).map((node) => (
          <div
            key={node.deviceId}
            className="quote-node"
            data-testid="quote-node-row"
            data-device-id={node.deviceId}
          >
            <div className="quote-node-header">
              <span>
                <span className="code">{node.deviceId}</span>{' '}
                <span className="muted">
                  {node.gpuCount > 0 ? `${node.gpuCount}× ${node.gpuModel}` : node.gpuModel} ·{' '}
                  {node.pricingMode} pricing
                </span>
              </span>
              <span className="nowrap">
                <strong data-testid="quote-node-price">${node.pricePerGpuHourUsd}</strong>
                <span className="muted"> / GPU-h · ${node.pricePerHourUsd} / h</span>
              </span>
            </div>
            <PriceFactorList factors={node.factors} testId="quote-factor" />
          </div>
        ))}
      </div>
    </div>
  )
}

function DeployForm({
  values,
  setValues,
}: {
  values: DeployValues
  setValues(update: (current: DeployValues) => DeployValues): void
}) {
  const { client } = useSession()
  const [, navigate] = useLocation()
  const form = useFormSubmission()
  const set = (change: Partial<DeployValues>) => {
    setValues((current) => ({ ...current, ...change }))
    form.clear(Object.keys(change))
  }
  const bind = bindFields(values, set, form.fieldErrors)

  const submit = async (event: FormEvent) => {
    event.preventDefault()
    await form.submit(validateDeploy(values), deployFields, async () => {
      const cluster = await client.createCluster(requestBodyOf(values))
      navigate(`/clusters/${encodeURIComponent(cluster.id)}`)
    })
  }
  const shortOfFunds =
    form.error instanceof GpumeshApiError && form.error.code === 'GPUMESH_ERR_INSUFFICIENT_FUNDS'

  return (
    <Section title="Deploy a cluster" testId="deploy">
      <form className="form-grid" onSubmit={(event) => void submit(event)} noValidate>
        <TextField label="Nodes" {...bind('nodes')} inputMode="numeric" testId="deploy-nodes" />
        <TextField
          label="GPUs per node"
          {...bind('gpusPerNode')}
          hint="0 for CPU-only nodes"
          inputMode="numeric"
          testId="deploy-gpus-per-node"
        />
        <TextField
          label="GPU model"
          {...bind('gpuModel')}
          error={form.fieldErrors['gpuModel'] ?? form.fieldErrors['gpus']}
          list="deploy-models"
          placeholder="any"
          testId="deploy-gpu-model"
        />
        <ModelOptions id="deploy-models" />
        <TextField
          label="Hours"
          {...bind('durationHours')}
          hint={`up to ${maxClusterDurationHours}`}
          inputMode="decimal"
          testId="deploy-hours"
        />
        <TextField label="Region" {...bind('region')} placeholder="any" testId="deploy-region" />
        <SelectField
          label="Bandwidth, at least"
          {...bind('minBandwidthTier')}
          choices={bandwidthChoices}
          testId="deploy-bandwidth"
        />
        <TextField
          label="Max $ per GPU-hour"
          {...bind('maxPricePerGpuHourUsd')}
          inputMode="decimal"
          placeholder="no limit"
          testId="deploy-max-price"
        />
        <TextField
          label="Name"
          {...bind('name')}
          hint="optional"
          placeholder="e.g. llm-finetune"
          testId="deploy-name"
        />
        <div className="form-wide">
          <CheckField
            label="Only devices that passed proof-of-compute"
            checked={values.verifiedOnly}
            onChange={(on) => set({ verifiedOnly: on })}
            testId="deploy-verified-only"
          />
        </div>
        <div className="form-wide">
          {form.banner ? (
            <div className="banner banner-error" role="alert">
              {form.banner}
              {shortOfFunds ? (
                <>
                  {' '}
                  <Link href="/wallet">Add funds in the wallet.</Link>
                </>
              ) : null}
            </div>
          ) : null}
          <SubmitButton label="Deploy" busyLabel="Deploying…" busy={form.busy} testId="deploy-submit" />
        </div>
      </form>
    </Section>
  )
}

export function RentPage() {
  useTitle('Rent')
  const { client } = useSession()
  const [values, setValues] = useState<DeployValues>({
    name: '',
    nodes: '1',
    gpusPerNode: '1',
    gpuModel: '',
    durationHours: '1',
    region: '',
    minBandwidthTier: '',
    maxPricePerGpuHourUsd: '',
    verifiedOnly: true,
  })
  const [plan, setPlan] = useState<ClusterPlan | null>(null)
  const [quoteError, setQuoteError] = useState<unknown>(undefined)
  const [pricing, setPricing] = useState(false)
  const invalid = hasErrors(validateDeploy(values))

  // Re-price shortly after the form stops changing; an answer for older values is dropped.
  useEffect(() => {
    if (invalid) return
    let stale = false
    const timer = setTimeout(() => {
      setPricing(true)
      client.quote(quoteQueryOf(values)).then(
        (reply) => {
          if (stale) return
          setPlan(reply)
          setQuoteError(undefined)
          setPricing(false)
        },
        (error: unknown) => {
          if (stale) return
          setPlan(null)
          setQuoteError(error)
          setPricing(false)
        },
      )
    }, quoteDelayMs)
    return () => {
      stale = true
      clearTimeout(timer)
    }
  }, [values, invalid, client])

  const chooseOffer = (offer: Offer) =>
    setValues((current) => ({
      ...current,
      gpuModel: offer.gpuModel,
      gpusPerNode: String(offer.gpuCount),
      region: offer.region,
    }))

  return (
    <>
      <PageHeader
        title="Rent compute"
        subtitle="Find machines, see exactly how each price is made, and deploy a Ray cluster."
      />
      <OfferSearch onUse={chooseOffer} />
      <div className="grid-2">
        <DeployForm values={values} setValues={setValues} />
        <QuotePanel plan={plan} error={quoteError} pricing={pricing} invalid={invalid} />
      </div>
    </>
  )
}
