import type { EarningsLine } from '@gpumesh/protocol'
import { useState } from 'react'
import { Link } from 'wouter'
import { AmountForm } from '../components/amount-form.tsx'
import { EarningsChart, EarningsTable } from '../components/earnings.tsx'
import { DataTable, Loaded, numeric, PageHeader, Section, SegmentedChoice, Stat } from '../components/ui.tsx'
import { sumGmt } from '../format.ts'
import { useNowMs, useResource, useTitle } from '../hooks.tsx'
import { useSession } from '../session.tsx'

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
    <DataTable
      columns={['Device', ...sources.map((source) => numeric(`${source} (GMT)`)), numeric('Total (GMT)')]}
      rows={[...byDevice]}
      empty="No earnings in this period."
    >
      {([deviceId, deviceLines]) => (
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
      )}
    </DataTable>
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
          <SegmentedChoice
            label="Period"
            options={periods}
            value={days}
            onChange={(period) => setDays(period)}
            optionLabel={(period) => `${period} days`}
          />
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
                <AmountForm
                  required={false}
                  hint="empty: everything uncollected"
                  placeholder="all"
                  clearOnSuccess
                  amountTestId="collect-amount"
                  submitLabel="Collect into wallet"
                  busyLabel="Collecting…"
                  submitTestId="earnings-collect"
                  send={async (amountGmt, requestId) => {
                    const receipt = await client.collectEarnings({
                      requestId,
                      ...(amountGmt ? { amountGmt } : {}),
                    })
                    earnings.reload()
                    return `Collected. Wallet balance: ${receipt.wallet.balanceGmt} GMT.`
                  }}
                />
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
