import type { ExplorerDevicesQuery, ExplorerSummary, PriceIndexReply } from '@gpumesh/protocol'
import { useState } from 'react'
import { BarChart, LineChart } from '../components/charts.tsx'
import {
  Badge,
  DataTable,
  LinkedRow,
  Loaded,
  NameCell,
  numeric,
  PageHeader,
  Section,
  SegmentedChoice,
  SelectField,
  Stat,
  type Choice,
} from '../components/ui.tsx'
import {
  formatReliability,
  formatDayLabel,
  formatHours,
  formatPercent,
  formatTflops,
  formatTime,
  unitsToGmt,
} from '../format.ts'
import { machineLabel } from '../components/device-parts.tsx'
import { bindFields } from '../form.ts'
import { useInterval, useResource, useTitle } from '../hooks.tsx'
import { useSession } from '../session.tsx'

// The public network explorer: what anyone can see without an API key. Each part loads on its own, so one
// endpoint down shows its own error and the rest of the page still works.

const summaryRefreshMs = 30_000
const devicesPageSize = 25
const priceWindows = [1, 7, 30, 90] as const

function SupplyStats({ summary }: { summary: ExplorerSummary }) {
  const { devices, gpus } = summary
  return (
    <div className="stat-groups">
      <div className="stat-group">
        <h3>Devices</h3>
        <div className="stat-row">
          <Stat
            label="Connected"
            value={devices.connected}
            testId="stat-devices-connected"
            sub={`${devices.enrolled} enrolled`}
          />
          <Stat
            label="Verified"
            value={devices.verified}
            testId="stat-devices-verified"
            sub="proof-of-compute passed"
          />
          <Stat label="Hired" value={devices.hired} testId="stat-devices-hired" sub="in a running cluster" />
        </div>
      </div>
      <div className="stat-group">
        <h3>GPUs</h3>
        <div className="stat-row">
          <Stat
            label="Connected"
            value={gpus.connected}
            testId="stat-gpus-connected"
            sub={`${gpus.enrolled} enrolled`}
          />
          <Stat label="Verified" value={gpus.verified} testId="stat-gpus-verified" />
          <Stat label="Hired" value={gpus.hired} testId="stat-gpus-hired" />
        </div>
      </div>
      <div className="stat-group">
        <h3>Activity</h3>
        <div className="stat-row">
          <Stat
            label="Clusters running"
            value={summary.clusters.running}
            testId="stat-clusters-running"
            sub={`${summary.clusters.total} ever`}
          />
          <Stat
            label="Compute hours"
            value={formatHours(summary.computeHours.totalNodeHours)}
            testId="stat-compute-hours"
            sub={`node-hours · ${formatHours(summary.computeHours.totalGpuHours)} GPU-hours`}
          />
          <Stat
            label="Epochs closed"
            value={summary.rewards.epochsClosed}
            testId="stat-epochs-closed"
            sub={`${unitsToGmt(summary.rewards.emittedUnits)} GMT emitted`}
          />
        </div>
      </div>
    </div>
  )
}

function ByModel({ summary }: { summary: ExplorerSummary }) {
  if (summary.byModel.length === 0) return <p className="muted">No devices connected yet.</p>
  const labels = summary.byModel.map((model) =>
    model.modelKey === 'cpu' ? 'CPU only (devices)' : model.name,
  )
  return (
    <BarChart
      label="GPUs by model: connected, verified and hired"
      labels={labels}
      series={[
        { label: 'connected', values: summary.byModel.map((model) => model.gpus.connected) },
        { label: 'verified', values: summary.byModel.map((model) => model.gpus.verified) },
        { label: 'hired', values: summary.byModel.map((model) => model.gpus.hired) },
      ]}
      yTitle="GPUs"
    />
  )
}

function ByCountry({ summary }: { summary: ExplorerSummary }) {
  const countries = [...summary.byCountry].sort((a, b) => b.gpus - a.gpus || b.devices - a.devices)
  return (
    <>
      {countries.length > 0 ? (
        <BarChart
          label="Connected devices and GPUs by country"
          labels={countries.slice(0, 20).map((country) => country.country)}
          series={[
            { label: 'devices', values: countries.slice(0, 20).map((country) => country.devices) },
            { label: 'GPUs', values: countries.slice(0, 20).map((country) => country.gpus) },
          ]}
          horizontal
          height={Math.max(140, 28 * Math.min(20, countries.length) + 60)}
        />
      ) : null}
      <DataTable
        columns={['Country', numeric('Devices'), numeric('GPUs')]}
        rows={countries}
        empty="No devices connected yet."
      >
        {(country) => (
          <tr key={country.country} data-testid="country-row">
            <td>{country.country}</td>
            <td className="numeric">{country.devices}</td>
            <td className="numeric">{country.gpus}</td>
          </tr>
        )}
      </DataTable>
    </>
  )
}

function ComputeHoursChart({ summary }: { summary: ExplorerSummary }) {
  const daily = summary.computeHours.daily
  return (
    <LineChart
      label="Compute hours served to clusters per day, last 30 days"
      labels={daily.map((day) => formatDayLabel(day.day))}
      series={[
        { label: 'node-hours', values: daily.map((day) => day.nodeHours) },
        { label: 'GPU-hours', values: daily.map((day) => day.gpuHours) },
      ]}
      yTitle="hours"
      fill
    />
  )
}

function ClustersBySize({ summary }: { summary: ExplorerSummary }) {
  const sizes = [...summary.clusters.bySize].sort((a, b) => a.nodes - b.nodes)
  if (sizes.length === 0) return <p className="muted">No cluster is running right now.</p>
  return (
    <BarChart
      label="Running clusters by node count"
      labels={sizes.map((size) => `${size.nodes} node${size.nodes === 1 ? '' : 's'}`)}
      series={[{ label: 'clusters', values: sizes.map((size) => size.clusters) }]}
      yTitle="clusters"
      height={200}
    />
  )
}

function LedgerTotals({ summary }: { summary: ExplorerSummary }) {
  const { ledger, rewards } = summary
  return (
    <div className="stat-row stat-row-wrap">
      <Stat
        label="Supplier earnings from rentals"
        value={`${unitsToGmt(ledger.rentalEarningsUnits)} GMT`}
        testId="stat-rental-earnings"
      />
      <Stat
        label="Supplier earnings from rewards"
        value={`${unitsToGmt(ledger.rewardEarningsUnits)} GMT`}
        testId="stat-reward-earnings"
      />
      <Stat label="Network fees" value={`${unitsToGmt(ledger.feesUnits)} GMT`} testId="stat-fees" />
      <Stat
        label="Rewards paid"
        value={`${unitsToGmt(rewards.paidUnits)} GMT`}
        sub={`of ${unitsToGmt(rewards.emittedUnits)} GMT emitted`}
        testId="stat-rewards-paid"
      />
    </div>
  )
}

/** Labels for the price index's sample times: the hour for a one-day window, the date and hour otherwise. */
function priceLabel(atMs: number, days: number): string {
  const date = new Date(atMs)
  const time = date.toLocaleTimeString('en', { hour: '2-digit', minute: '2-digit', hour12: false })
  return days <= 1 ? time : `${date.toLocaleDateString('en', { month: 'short', day: 'numeric' })} ${time}`
}

function PriceIndexChart({ prices, days }: { prices: PriceIndexReply; days: number }) {
  const times = [...new Set(prices.models.flatMap((model) => model.points.map((point) => point.atMs)))].sort(
    (a, b) => a - b,
  )
  if (times.length === 0) return <p className="muted">No price samples in this window yet.</p>
  return (
    <LineChart
      label="Median asking price per GPU-hour by model"
      labels={times.map((atMs) => priceLabel(atMs, days))}
      series={prices.models.map((model) => {
        const byTime = new Map(model.points.map((point) => [point.atMs, Number(point.medianUsdPerGpuHour)]))
        return {
          label: model.modelKey === 'cpu' ? 'CPU node-hour' : model.name,
          values: times.map((atMs) => byTime.get(atMs) ?? null),
        }
      })}
      yTitle="USD per GPU-hour (median)"
    />
  )
}

function InferenceByModel() {
  const { publicClient } = useSession()
  const inference = useResource(() => publicClient.explorerInference(), [])
  useInterval(inference.reload, summaryRefreshMs)
  return (
    <Section title="Inference by model" testId="inference">
      <Loaded resource={inference} what="Loading inference figures">
        {({ models }) => (
          <DataTable
            columns={[
              'Model',
              numeric('Replicas ready'),
              numeric('Requests'),
              numeric('Input tokens'),
              numeric('Output tokens'),
              numeric('Paid by callers (GMT)'),
              numeric('Earned by suppliers (GMT)'),
            ]}
            rows={models}
            empty="No model has been served yet."
          >
            {(row) => (
              <tr key={row.model} data-testid="inference-row" data-model={row.model}>
                <td>{row.model}</td>
                <td className="numeric">{row.replicasReady}</td>
                <td className="numeric">{row.requests.toLocaleString('en-US')}</td>
                <td className="numeric">{row.promptTokens.toLocaleString('en-US')}</td>
                <td className="numeric">{row.completionTokens.toLocaleString('en-US')}</td>
                <td className="numeric">{row.spentGmt}</td>
                <td className="numeric">{row.supplierEarningsGmt}</td>
              </tr>
            )}
          </DataTable>
        )}
      </Loaded>
    </Section>
  )
}

function RecentEpochs() {
  const { publicClient } = useSession()
  const epochs = useResource(() => publicClient.rewardEpochs({ limit: 12 }), [])
  useInterval(epochs.reload, summaryRefreshMs)
  return (
    <Section title="Recent reward epochs" testId="epochs">
      <Loaded resource={epochs} what="Loading epochs">
        {({ epochs: rows }) => (
          <DataTable
            columns={[
              'Epoch',
              'Window',
              numeric('Emission (GMT)'),
              numeric('Paid (GMT)'),
              numeric('Devices paid'),
              numeric('Eligible / considered'),
              'Pools',
            ]}
            rows={rows}
            empty="No epoch has closed yet."
          >
            {(epoch) => (
              <tr key={epoch.epoch} data-testid="epoch-row" data-epoch={epoch.epoch}>
                <td>#{epoch.epoch}</td>
                <td className="nowrap">
                  {formatTime(epoch.startsAtMs)} – {formatTime(epoch.endsAtMs).slice(11)}
                </td>
                <td className="numeric">{epoch.emissionGmt}</td>
                <td className="numeric">{epoch.paidGmt}</td>
                <td className="numeric">{epoch.devicesPaid}</td>
                <td className="numeric">
                  {epoch.devicesEligible} / {epoch.devicesConsidered}
                </td>
                <td className="nowrap">
                  {epoch.pools
                    .map((pool) => `${pool.pool} ${formatPercent(pool.shareBp / 10_000, 0)}`)
                    .join(' · ')}
                </td>
              </tr>
            )}
          </DataTable>
        )}
      </Loaded>
    </Section>
  )
}

type DeviceFilters = { modelKey: string; country: string; state: '' | 'online' | 'offline' }
const stateChoices: readonly Choice<DeviceFilters['state']>[] = [
  { value: '', label: 'Any' },
  { value: 'online', label: 'Online' },
  { value: 'offline', label: 'Offline' },
]

function ExplorerDevices({ summary }: { summary: ExplorerSummary | undefined }) {
  const { publicClient } = useSession()
  const [filters, setFilters] = useState<DeviceFilters>({ modelKey: '', country: '', state: '' })
  const [offset, setOffset] = useState(0)
  const query: Partial<ExplorerDevicesQuery> = {
    limit: devicesPageSize,
    offset,
    ...(filters.modelKey ? { modelKey: filters.modelKey } : {}),
    ...(filters.country ? { country: filters.country } : {}),
    ...(filters.state ? { state: filters.state } : {}),
  }
  const devices = useResource(() => publicClient.explorerDevices(query), [filters, offset])
  const change = (next: Partial<DeviceFilters>) => {
    setFilters((current) => ({ ...current, ...next }))
    setOffset(0)
  }
  const bind = bindFields(filters, change)
  const modelChoices: Choice<string>[] = [
    { value: '', label: 'Any' },
    ...(summary?.byModel ?? []).map((model) => ({
      value: model.modelKey,
      label: model.modelKey === 'cpu' ? 'CPU only' : model.name,
    })),
  ]
  const countryChoices: Choice<string>[] = [
    { value: '', label: 'Any' },
    ...(summary?.byCountry ?? [])
      .map((country) => country.country)
      .filter((code) => /^[A-Z]{2}$/.test(code))
      .map((code) => ({ value: code, label: code })),
  ]

  return (
    <Section title="Devices" testId="explorer-devices">
      <div className="filters">
        <SelectField
          label="Model"
          {...bind('modelKey')}
          className="field-inline"
          choices={modelChoices}
          testId="explorer-filter-model"
        />
        <SelectField
          label="Country"
          {...bind('country')}
          className="field-inline"
          choices={countryChoices}
          testId="explorer-filter-country"
        />
        <SelectField
          label="State"
          {...bind('state')}
          className="field-inline"
          choices={stateChoices}
          testId="explorer-filter-state"
        />
      </div>
      <Loaded resource={devices} what="Loading devices">
        {(page) => (
          <>
            <DataTable
              className="clickable-rows"
              columns={[
                'Device',
                'State',
                'Verification',
                'Hardware',
                'Location',
                'Bandwidth',
                numeric('Measured FP32'),
                numeric('Reliability'),
              ]}
              rows={page.devices}
              empty="No device matches these filters."
            >
              {(device) => {
                const href = `/explorer/devices/${encodeURIComponent(device.id)}`
                return (
                  <LinkedRow
                    key={device.id}
                    href={href}
                    data-testid="explorer-device-row"
                    data-device-id={device.id}
                  >
                    <NameCell id={device.id} href={href}>
                      {device.hostname ?? machineLabel(device)}
                    </NameCell>
                    <td>
                      <Badge>{device.state}</Badge> {device.hired ? <Badge tone="info">hired</Badge> : null}
                    </td>
                    <td>
                      <Badge>{device.verificationState}</Badge>
                    </td>
                    <td className="nowrap">
                      {device.gpuCount > 0
                        ? `${device.gpuCount}× ${device.gpuModelKey ?? 'GPU'}`
                        : 'CPU only'}
                    </td>
                    <td className="nowrap">
                      {[device.region, device.country].filter(Boolean).join(' · ') || '—'}
                    </td>
                    <td>{device.bandwidthTier ?? '—'}</td>
                    <td className="numeric nowrap">{formatTflops(device.measuredFp32Tflops)}</td>
                    <td className="numeric">{formatReliability(device.reliability)}</td>
                  </LinkedRow>
                )
              }}
            </DataTable>
            <div className="pager">
              <span className="muted">
                {page.total === 0
                  ? 'No devices'
                  : `${offset + 1}–${offset + page.devices.length} of ${page.total}`}
              </span>
              <button
                type="button"
                className="button button-small"
                data-testid="explorer-devices-previous"
                disabled={offset === 0}
                onClick={() => setOffset(Math.max(0, offset - devicesPageSize))}
              >
                Previous
              </button>
              <button
                type="button"
                className="button button-small"
                data-testid="explorer-devices-next"
                disabled={offset + devicesPageSize >= page.total}
                onClick={() => setOffset(offset + devicesPageSize)}
              >
                Next
              </button>
            </div>
          </>
        )}
      </Loaded>
    </Section>
  )
}

function PriceIndex() {
  const { publicClient } = useSession()
  const [days, setDays] = useState<number>(7)
  const prices = useResource(() => publicClient.explorerPrices({ days }), [days])
  return (
    <Section
      title="Price index"
      className="span-2"
      actions={
        <SegmentedChoice
          label="Window"
          options={priceWindows}
          value={days}
          onChange={(window) => setDays(window)}
          optionLabel={(window) => `${window}d`}
        />
      }
    >
      <p className="muted">
        Median asking price of each model&apos;s offers, sampled over time (USD per GPU-hour).
      </p>
      <Loaded resource={prices} what="Loading prices">
        {(reply) => <PriceIndexChart prices={reply} days={days} />}
      </Loaded>
    </Section>
  )
}

export function ExplorerPage() {
  useTitle('Network explorer')
  const { publicClient } = useSession()
  const summary = useResource(() => publicClient.explorerSummary(), [])
  useInterval(summary.reload, summaryRefreshMs)

  return (
    <>
      <PageHeader
        title="Network explorer"
        subtitle={
          summary.data
            ? `The gpumesh network as of ${formatTime(summary.data.generatedAtMs)}. Connected: online now; verified: passed proof-of-compute; hired: in a running cluster.`
            : 'The gpumesh network: supply, usage, prices and rewards.'
        }
      />
      <Section testId="summary">
        <Loaded resource={summary} what="Loading the network summary">
          {(data) => <SupplyStats summary={data} />}
        </Loaded>
      </Section>
      {summary.data ? (
        <div className="grid-2">
          <Section title="GPUs by model">
            <ByModel summary={summary.data} />
          </Section>
          <Section title="By country">
            <ByCountry summary={summary.data} />
          </Section>
          <Section title="Compute hours per day">
            <ComputeHoursChart summary={summary.data} />
          </Section>
          <Section title="Clusters running by size">
            <ClustersBySize summary={summary.data} />
          </Section>
          <Section title="Network earnings" className="span-2">
            <LedgerTotals summary={summary.data} />
          </Section>
        </div>
      ) : null}
      <div className="grid-2">
        <PriceIndex />
      </div>
      <InferenceByModel />
      <RecentEpochs />
      <ExplorerDevices summary={summary.data} />
    </>
  )
}
