import type { DeviceQuoteReply, PriceFactorView } from '@gpumesh/protocol'
import { useState, type FormEvent } from 'react'
import { Link } from 'wouter'
import {
  HardwareDetails,
  SpeedtestDetails,
  UptimeChart,
  VerificationTable,
} from '../components/device-parts.tsx'
import { EarningsChart, EarningsTable } from '../components/earnings.tsx'
import { RewardsTable } from '../components/rewards.tsx'
import { PriceFactorList } from '../components/price-factors.tsx'
import {
  Badge,
  Breadcrumb,
  DataTable,
  ErrorBanner,
  Loaded,
  Loading,
  Notice,
  PageHeader,
  Section,
  Stat,
  SubmitButton,
  TextField,
} from '../components/ui.tsx'
import { isNotFound } from '../errors.ts'
import { useFormSubmission } from '../form.ts'
import { formatReliability, formatAgo, formatDuration, formatTflops, formatTime } from '../format.ts'
import { useInterval, useNowMs, useResource, useTitle } from '../hooks.tsx'
import { dailyUptimeRatios } from '../series.ts'
import { useSession } from '../session.tsx'
import { checks, optionalText, validateForm } from '../validation.ts'

// One of my devices: its state and why, proof-of-compute history, speedtest, uptime, what it earned and its
// rewards with their factors, and how it is priced.

const uptimeDays = 30
const earningsDays = 30
const refreshMs = 15_000

function Factors({ factors }: { factors: readonly PriceFactorView[] }) {
  if (factors.length === 0) return <p className="muted">No factors: the device has no price.</p>
  return <PriceFactorList factors={factors} testId="price-factor" />
}

function Pricing({ deviceId }: { deviceId: string }) {
  const { client } = useSession()
  const quote = useResource(() => client.deviceQuote(deviceId), [client, deviceId])
  return (
    <Loaded resource={quote} what="Loading the price">
      {(reply) => <PricingForm quote={reply} onSaved={quote.set} />}
    </Loaded>
  )
}

function PricingForm({
  quote,
  onSaved,
}: {
  quote: DeviceQuoteReply
  onSaved(quote: DeviceQuoteReply): void
}) {
  const { client } = useSession()
  const [mode, setMode] = useState<'fixed' | 'auto'>(quote.pricingMode)
  const [price, setPrice] = useState(quote.askingPricePerGpuHourUsd ?? '')
  const [saved, setSaved] = useState(false)
  const form = useFormSubmission()
  const priceField = mode === 'fixed' ? 'pricePerGpuHourUsd' : 'minimumPricePerGpuHourUsd'

  const submit = async (event: FormEvent) => {
    event.preventDefault()
    setSaved(false)
    const errors = validateForm(
      { [priceField]: price },
      { [priceField]: { required: mode === 'fixed', checks: [checks.usd] } },
    )
    await form.submit(errors, [priceField, 'mode'], async () => {
      const asked = optionalText(price) ?? null
      const body =
        mode === 'fixed' ? { mode, pricePerGpuHourUsd: asked } : { mode, minimumPricePerGpuHourUsd: asked }
      onSaved(await client.setDevicePricing(quote.deviceId, body))
      setSaved(true)
    })
  }

  return (
    <>
      <div className="stat-row stat-row-wrap">
        <Stat
          label="Renters are quoted"
          value={quote.pricePerGpuHourUsd ? `$${quote.pricePerGpuHourUsd}` : 'not listed'}
          sub={quote.unpricedReason ?? `per GPU-hour, ${quote.pricingMode} pricing`}
          testId="device-quote-price"
        />
        <Stat
          label="Automatic pricing would quote"
          value={quote.automatic.pricePerGpuHourUsd ? `$${quote.automatic.pricePerGpuHourUsd}` : '—'}
          sub={`policy ${quote.policyVersion}`}
        />
      </div>
      <form className="pricing-form" onSubmit={(event) => void submit(event)} noValidate>
        <fieldset className="field">
          <legend className="field-label">Pricing</legend>
          <div className="check-row">
            <label className="check-field">
              <input
                type="radio"
                name="pricing-mode"
                checked={mode === 'fixed'}
                data-testid="pricing-mode-fixed"
                onChange={() => setMode('fixed')}
              />
              <span>Fixed: my price</span>
            </label>
            <label className="check-field">
              <input
                type="radio"
                name="pricing-mode"
                checked={mode === 'auto'}
                data-testid="pricing-mode-auto"
                onChange={() => setMode('auto')}
              />
              <span>Automatic: the network&apos;s pricing engine</span>
            </label>
          </div>
        </fieldset>
        <div className="inline-form">
          <TextField
            label={mode === 'fixed' ? '$ per GPU-hour' : 'Minimum $ per GPU-hour'}
            field={priceField}
            error={form.fieldErrors[priceField]}
            hint={mode === 'auto' ? 'optional: the engine never quotes below it' : undefined}
            inputMode="decimal"
            value={price}
            placeholder="e.g. 1.80"
            testId="pricing-price"
            onChange={(value) => {
              setPrice(value)
              form.clear([priceField])
            }}
          />
          <SubmitButton label="Save pricing" busyLabel="Saving…" busy={form.busy} testId="pricing-submit" />
        </div>
        <ErrorBanner message={form.banner ?? undefined} />
        {saved ? <Notice tone="success">Saved: the marketplace now lists the new price.</Notice> : null}
      </form>
      <div className="grid-2 grid-tight">
        <div>
          <h3>How the quoted price is made</h3>
          <Factors factors={quote.factors} />
        </div>
        <div>
          <h3>Automatic pricing</h3>
          <Factors factors={quote.automatic.factors} />
        </div>
      </div>
    </>
  )
}

function Speedtest({ deviceId }: { deviceId: string }) {
  const { publicClient } = useSession()
  // The supplier API has no speedtest reply in the SDK; the public explorer's device detail carries the latest.
  const detail = useResource(() => publicClient.explorerDevice(deviceId), [publicClient, deviceId])
  if (detail.data) return <SpeedtestDetails speedtest={detail.data.speedtest} />
  if (detail.error !== undefined) return <p className="muted">The speedtest is not available right now.</p>
  return <Loading what="Loading the speedtest" />
}

export function SupplierDevicePage({ deviceId }: { deviceId: string }) {
  const { client } = useSession()
  const nowMs = useNowMs(10_000)
  const device = useResource(() => client.getDevice(deviceId), [client, deviceId])
  const verifications = useResource(() => client.deviceVerifications(deviceId), [client, deviceId])
  const uptime = useResource(() => client.deviceUptime(deviceId, uptimeDays), [client, deviceId])
  const earnings = useResource(() => client.earnings({ deviceId, days: earningsDays }), [client, deviceId])
  const rewards = useResource(() => client.deviceRewards(deviceId), [client, deviceId])
  const events = useResource(() => client.deviceEvents(deviceId), [client, deviceId])
  useInterval(() => {
    device.reload()
    verifications.reload()
  }, refreshMs)
  useTitle(device.data ? device.data.hostname : 'Device')

  const breadcrumb = <Breadcrumb href="/supplier/devices">← My devices</Breadcrumb>
  if (!device.data) {
    return (
      <>
        {breadcrumb}
        {device.error !== undefined ? (
          <ErrorBanner
            {...(isNotFound(device.error)
              ? { message: `You have no device ${deviceId}.` }
              : { error: device.error })}
          />
        ) : (
          <Loading what="Loading the device" />
        )}
      </>
    )
  }
  const view = device.data
  return (
    <>
      {breadcrumb}
      <PageHeader
        title={view.hostname}
        subtitle={
          <>
            <span className="code">{view.id}</span> ·{' '}
            <Link href={`/explorer/devices/${encodeURIComponent(view.id)}`}>public page</Link>
          </>
        }
        actions={
          <div className="badges">
            <span data-testid="device-state" data-state={view.state}>
              <Badge>{view.state}</Badge>
            </span>
            <span data-testid="device-verification" data-verification={view.verificationState}>
              <Badge>{view.verificationState}</Badge>
            </span>
          </div>
        }
      />
      <Section>
        <dl className="facts">
          <dt>State</dt>
          <dd>
            {view.state}: {view.stateReason}{' '}
            <span className="muted">(since {formatTime(view.stateChangedAtMs)})</span>
          </dd>
          <dt>Verification</dt>
          <dd>
            {view.verificationState}: {view.verificationReason}
          </dd>
        </dl>
        <div className="stat-row stat-row-wrap">
          <Stat
            label="Measured FP32"
            value={formatTflops(view.measuredFp32Tflops)}
            sub="last passed proof-of-compute"
          />
          <Stat label="Bandwidth tier" value={view.bandwidthTier ?? '—'} />
          <Stat label="Reliability" value={formatReliability(view.reliability)} sub="online share, 30 days" />
          <Stat label="Online in total" value={formatDuration(view.uptimeMsTotal)} />
          <Stat
            label="Location"
            value={view.location ? `${view.location.region} · ${view.location.country}` : '—'}
          />
          <Stat
            label="Last seen"
            value={formatAgo(view.lastSeenAtMs, nowMs)}
            sub={`enrolled ${formatTime(view.enrolledAtMs)}`}
          />
        </div>
      </Section>
      <Section title="Pricing" testId="device-pricing">
        <Pricing deviceId={deviceId} />
      </Section>
      <div className="grid-2">
        <Section title="Hardware">
          <HardwareDetails inventory={view.inventory} />
        </Section>
        <Section title="Speedtest">
          <Speedtest deviceId={deviceId} />
        </Section>
        <Section title={`Uptime, last ${uptimeDays} days`}>
          <Loaded resource={uptime} what="Loading uptime">
            {(reply) => <UptimeChart days={dailyUptimeRatios(reply.buckets, nowMs, uptimeDays)} />}
          </Loaded>
        </Section>
        <Section title={`Earnings, last ${earningsDays} days`}>
          <Loaded resource={earnings} what="Loading earnings">
            {(reply) => (
              <>
                <p className="muted">
                  {reply.periodTotalGmt} GMT in the period.{' '}
                  <Link href="/supplier/earnings">All earnings and collecting</Link>
                </p>
                <EarningsChart lines={reply.lines} days={earningsDays} nowMs={nowMs} />
              </>
            )}
          </Loaded>
        </Section>
      </div>
      <Section title="Earnings per day and source">
        <Loaded resource={earnings} what="Loading earnings">
          {(reply) => <EarningsTable lines={reply.lines} showDevice={false} />}
        </Loaded>
      </Section>
      <Section title="Verification history">
        <Loaded resource={verifications} what="Loading verifications">
          {(reply) => <VerificationTable rows={reply.challenges} />}
        </Loaded>
      </Section>
      <Section title="Rewards per epoch">
        <Loaded resource={rewards} what="Loading rewards">
          {(reply) => <RewardsTable payouts={reply.payouts} />}
        </Loaded>
      </Section>
      <Section title="State changes">
        <Loaded resource={events} what="Loading events">
          {(reply) => (
            <DataTable
              columns={['When', 'State', 'Reason']}
              rows={reply.events}
              empty="No state changes recorded."
            >
              {(event, index) => (
                <tr key={`${event.atMs}:${index}`} data-testid="device-event">
                  <td className="nowrap">{formatTime(event.atMs)}</td>
                  <td>
                    <Badge>{event.state}</Badge>
                  </td>
                  <td>
                    {event.reason} <span className="muted code">{event.reasonCode}</span>
                  </td>
                </tr>
              )}
            </DataTable>
          )}
        </Loaded>
      </Section>
    </>
  )
}
