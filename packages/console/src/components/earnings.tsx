import type { EarningsLine } from '@gpumesh/protocol'
import { formatDayLabel, gmtToNumber, lastUtcDays } from '../format.ts'
import { amountsBySourceAndDay } from '../series.ts'
import { BarChart } from './charts.tsx'
import { DataTable, numeric } from './ui.tsx'

// A supplier's earnings statement lines (device, UTC day, source), as a chart and as the exact table.

export function EarningsChart({
  lines,
  days,
  nowMs,
}: {
  lines: readonly EarningsLine[]
  days: number
  nowMs: number
}) {
  const labels = lastUtcDays(days, nowMs)
  const series = amountsBySourceAndDay(lines, labels, (line) => gmtToNumber(line.amountGmt))
  if (series.length === 0) return <p className="muted">Nothing earned in the last {days} days.</p>
  return (
    <BarChart
      label="Earnings per day by source"
      labels={labels.map(formatDayLabel)}
      series={series.map((one) => ({ label: one.source, values: one.values }))}
      yTitle="GMT"
      stacked
      height={220}
    />
  )
}

export function EarningsTable({
  lines,
  hostnameOf,
  showDevice,
}: {
  lines: readonly EarningsLine[]
  hostnameOf?: (deviceId: string) => string | undefined
  showDevice: boolean
}) {
  const sorted = [...lines].sort(
    (a, b) => b.day.localeCompare(a.day) || (a.deviceId ?? '').localeCompare(b.deviceId ?? ''),
  )
  return (
    <DataTable
      columns={[
        'Day (UTC)',
        ...(showDevice ? ['Device'] : []),
        'Source',
        numeric('Amount (GMT)'),
        numeric('Transfers'),
      ]}
      rows={sorted}
      empty="No earnings in this period."
    >
      {(line) => (
        <tr
          key={`${line.day}:${line.deviceId ?? ''}:${line.source}`}
          data-testid="earnings-row"
          data-device-id={line.deviceId ?? ''}
          data-day={line.day}
          data-source={line.source}
        >
          <td className="nowrap">{line.day}</td>
          {showDevice ? (
            <td>
              {line.deviceId ? (
                (hostnameOf?.(line.deviceId) ?? line.deviceId)
              ) : (
                <span className="muted">not tied to a device</span>
              )}
            </td>
          ) : null}
          <td>{line.source}</td>
          <td className="numeric" data-testid="earnings-amount">
            {line.amountGmt}
          </td>
          <td className="numeric">{line.transfers}</td>
        </tr>
      )}
    </DataTable>
  )
}
