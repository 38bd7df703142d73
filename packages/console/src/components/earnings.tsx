import type { EarningsLine } from '@gpumesh/protocol'
import { formatDayLabel, gmtToNumber, lastUtcDays } from '../format.ts'
import { amountsBySourceAndDay } from '../series.ts'
import { BarChart } from './charts.tsx'
import { EmptyRow, TableScroll } from './ui.tsx'

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
  const columns = showDevice ? 5 : 4
  return (
    <TableScroll>
      <table>
        <thead>
          <tr>
            <th>Day (UTC)</th>
            {showDevice ? <th>Device</th> : null}
            <th>Source</th>
            <th className="numeric">Amount (GMT)</th>
            <th className="numeric">Transfers</th>
          </tr>
        </thead>
        <tbody>
          {sorted.length === 0 ? <EmptyRow columns={columns}>No earnings in this period.</EmptyRow> : null}
          {sorted.map((line) => (
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
          ))}
        </tbody>
      </table>
    </TableScroll>
  )
}
