import type { EarningsLine } from '@gpumesh/protocol'
import { useState, type FormEvent } from 'react'
import { Link } from 'wouter'
import { EarningsChart, EarningsTable } from '../components/earnings.tsx'
import {
  EmptyRow,
  ErrorBanner,
  Field,
  Loaded,
  Notice,
  PageHeader,
  Section,
  Stat,
  TableScroll,
} from '../components/ui.tsx'
import { useFormSubmission } from '../form.ts'
import { sumGmt } from '../format.ts'
import { useNowMs, useResource, useTitle } from '../hooks.tsx'
import { useSession } from '../session.tsx'
import { checks, newRequestId, optionalText, validateForm } from '../validation.ts'

// What my devices earned, per device, UTC day and source (rentals, rewards), and collecting it into the
// wallet. Every line is a sum of ledger transfers; the table shows how many.

const periods = [7, 30, 90] as const

function PerDevice({
  lines,
  hostnameOf,
}: {
  lines: readonly EarningsLine[]
  hostnameOf(deviceId: string): string | undefined
}) {
  const byDevice = new Map<string, EarningsLine[]>()
  for (const line of lines) {
    const key = line.deviceId ?? ''
    byDevice.set(key, [...(byDevice.get(key) ?? []), line])
  }
  const sources = [...new Set(lines.map((line) => line.source))].sort()
  return (
    <TableScroll>
      <table>
        <thead>
          <tr>
            <th>Device</th>
            {sources.map((source) => (
              <th key={source} className="numeric">
                {source} (GMT)
              </th>
            ))}
            <th className="numeric">Total (GMT)</th>
          </tr>
        </thead>
        <tbody>
          {byDevice.size === 0 ? (
            <EmptyRow columns={sources.length + 2}>No earnings in this period.</EmptyRow>
          ) : null}
          {[...byDevice].map(([deviceId, deviceLines]) => (
            <tr key={deviceId} data-testid="earnings-device-row" data-device-id={deviceId}>
              <td>
                {deviceId ? (
                  <Link href={`/supplier/devices/${encodeURIComponent(deviceId)}`}>
                    {hostnameOf(deviceId) ?? deviceId}
                  </Link>
                ) : (
                  <span className="muted">not tied to a device</span>
                )}
              </td>
              {sources.map((source) => (
                <td key={source} className="numeric">
                  {sumGmt(deviceLines.filter((line) => line.source === source).map((line) => line.amountGmt))}
                </td>
              ))}
              <td className="numeric" data-testid="earnings-device-total">
                {sumGmt(deviceLines.map((line) => line.amountGmt))}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </TableScroll>
  )
}

function Collect({ onCollected }: { onCollected(): void }) {
  const { client } = useSession()
  const [amount, setAmount] = useState('')
  const [requestId, setRequestId] = useState(newRequestId)
  const [done, setDone] = useState<string | null>(null)
  const form = useFormSubmission()

  const submit = async (event: FormEvent) => {
    event.preventDefault()
    setDone(null)
    const errors = validateForm({ amountGmt: amount }, { amountGmt: { checks: [checks.positiveGmt] } })
    await form.submit(errors, ['amountGmt'], async () => {
      const amountGmt = optionalText(amount)
      const receipt = await client.collectEarnings({ requestId, ...(amountGmt ? { amountGmt } : {}) })
      setRequestId(newRequestId())
      setAmount('')
      setDone(`Collected. Wallet balance: ${receipt.wallet.balanceGmt} GMT.`)
      onCollected()
    })
  }

  return (
    <form onSubmit={(event) => void submit(event)} noValidate>
      <div className="inline-form">
        <Field
          label="Amount (GMT)"
          field="amountGmt"
          error={form.fieldErrors['amountGmt']}
          hint="empty: everything uncollected"
        >
          <input
            inputMode="decimal"
            value={amount}
            placeholder="all"
            data-testid="collect-amount"
            onChange={(event) => {
              setAmount(event.target.value)
              setRequestId(newRequestId())
              form.clear(['amountGmt'])
            }}
          />
        </Field>
        <button
          type="submit"
          className="button button-primary"
          data-testid="earnings-collect"
          disabled={form.busy}
        >
          {form.busy ? 'Collecting…' : 'Collect into wallet'}
        </button>
      </div>
      <ErrorBanner message={form.banner ?? undefined} />
      {done ? <Notice tone="success">{done}</Notice> : null}
    </form>
  )
}

export function SupplierEarningsPage() {
  useTitle('Earnings')
  const { client } = useSession()
  const nowMs = useNowMs(60_000)
  const [days, setDays] = useState<number>(30)
  const earnings = useResource(() => client.earnings({ days }), [client, days])
  const devices = useResource(() => client.listDevices(), [client])
  const hostnameOf = (deviceId: string) =>
    devices.data?.devices.find((device) => device.id === deviceId)?.hostname

  return (
    <>
      <PageHeader
        title="Earnings"
        subtitle="What your devices earned from rentals and epoch rewards. Earnings wait here until you collect them into your wallet."
        actions={
          <div className="segmented" role="group" aria-label="Period">
            {periods.map((period) => (
              <button
                key={period}
                type="button"
                className={period === days ? 'segmented-active' : ''}
                aria-pressed={period === days}
                onClick={() => setDays(period)}
              >
                {period} days
              </button>
            ))}
          </div>
        }
      />
      <Loaded resource={earnings} what="Loading earnings">
        {(view) => (
          <>
            <div className="grid-2">
              <Section>
                <div className="stat-row stat-row-wrap">
                  <Stat label="Uncollected (GMT)" value={view.uncollectedGmt} testId="earnings-uncollected" />
                  <Stat
                    label={`Earned in ${days} days (GMT)`}
                    value={view.periodTotalGmt}
                    testId="earnings-period-total"
                  />
                </div>
                <Collect onCollected={earnings.reload} />
              </Section>
              <Section title="Per day">
                <EarningsChart lines={view.lines} days={days} nowMs={nowMs} />
              </Section>
            </div>
            <Section title="Per device">
              <PerDevice lines={view.lines} hostnameOf={hostnameOf} />
            </Section>
            <Section title="Per device and day">
              <EarningsTable lines={view.lines} hostnameOf={hostnameOf} showDevice />
            </Section>
          </>
        )}
      </Loaded>
    </>
  )
}
