import type { HardwareInventory, PublicHardwareInventory } from '@gpumesh/protocol'
import { formatDayLabel, formatMib, formatPercent, formatTflops, formatTime } from '../format.ts'
import { BarChart } from './charts.tsx'
import { Badge, DataTable, numeric } from './ui.tsx'

// Parts of a device's page that the public explorer and the supplier's own view share.

/**
 * A machine's hardware as shown: the whole inventory to its owner, the public part (no hostname, OS release,
 * disk or warnings) to everyone else.
 */
export type ShownInventory = HardwareInventory | PublicHardwareInventory

/** The explorer sends the inventory untyped: use it only when it has the shape a worker reports. */
export function asInventory(value: unknown): ShownInventory | null {
  if (typeof value !== 'object' || value === null) return null
  const candidate = value as Partial<PublicHardwareInventory>
  if (!Array.isArray(candidate.gpus) || typeof candidate.cpu !== 'object' || candidate.cpu === null)
    return null
  return candidate as ShownInventory
}

/** What the public explorer calls a machine, which has no hostname there: its GPUs and region. */
export function machineLabel(device: {
  gpuCount: number
  gpuModelKey: string | null
  region: string | null
}): string {
  const gpus = device.gpuCount > 0 ? `${device.gpuCount}× ${device.gpuModelKey ?? 'GPU'}` : 'CPU machine'
  return device.region ? `${gpus} in ${device.region}` : gpus
}

export function gpuSummary(inventory: ShownInventory | null): string {
  if (!inventory) return 'not reported yet'
  if (inventory.gpus.length === 0) return `no GPU · ${inventory.cpu.logicalCores} CPU cores`
  const byName = new Map<string, number>()
  for (const gpu of inventory.gpus) byName.set(gpu.productName, (byName.get(gpu.productName) ?? 0) + 1)
  return [...byName].map(([name, count]) => `${count}× ${name}`).join(', ')
}

export function HardwareDetails({ inventory }: { inventory: ShownInventory | null }) {
  if (!inventory) return <p className="muted">The worker has not reported its hardware yet.</p>
  return (
    <>
      <dl className="facts">
        <dt>CPU</dt>
        <dd>
          {inventory.cpu.model} · {inventory.cpu.logicalCores} logical cores · {inventory.cpu.architecture}
        </dd>
        <dt>Memory</dt>
        <dd>{formatMib(inventory.memoryMib)}</dd>
        {'disk' in inventory ? (
          <>
            <dt>Disk</dt>
            <dd>
              {formatMib(inventory.disk.freeMib)} free of {formatMib(inventory.disk.totalMib)}
            </dd>
          </>
        ) : null}
        <dt>OS</dt>
        <dd>
          {'release' in inventory.os
            ? `${inventory.os.distribution ?? inventory.os.platform} ${inventory.os.release}`
            : inventory.os.platform}
        </dd>
        {inventory.driverVersion ? (
          <>
            <dt>Driver</dt>
            <dd>
              {inventory.driverVersion}
              {inventory.cudaVersion ? ` · CUDA ${inventory.cudaVersion}` : ''}
            </dd>
          </>
        ) : null}
        <dt>Probe</dt>
        <dd>
          {inventory.probeSource}
          {inventory.probeSource === 'nvidia-smi-xml-file' ? ' (replayed capture, not this machine)' : ''}
        </dd>
      </dl>
      {inventory.gpus.length > 0 ? (
        <DataTable
          columns={['#', 'GPU', 'Model key', numeric('VRAM'), 'Architecture', 'PCIe', 'MIG']}
          rows={inventory.gpus}
        >
          {(gpu) => (
            <tr key={gpu.index}>
              <td>{gpu.index}</td>
              <td>{gpu.productName}</td>
              <td>{gpu.modelKey}</td>
              <td className="numeric">{formatMib(gpu.vramMib)}</td>
              <td>{gpu.architecture ?? '—'}</td>
              <td>
                {gpu.pcieGeneration ? `Gen ${gpu.pcieGeneration}` : '—'}
                {gpu.pcieWidthLanes ? ` ×${gpu.pcieWidthLanes}` : ''}
              </td>
              <td>{gpu.migMode}</td>
            </tr>
          )}
        </DataTable>
      ) : (
        <p className="muted">No GPU: this device offers CPU compute.</p>
      )}
      {'warnings' in inventory && inventory.warnings.length > 0 ? (
        <ul className="warnings">
          {inventory.warnings.map((warning, index) => (
            <li key={index}>{warning}</li>
          ))}
        </ul>
      ) : null}
    </>
  )
}

export type SpeedtestFigures = {
  readonly measuredAtMs: number
  /** Null where the stored figure is not a finite number. */
  readonly latencyMs: number | null
  readonly downloadMbps: number | null
  readonly uploadMbps: number | null
  readonly bandwidthTier: string | null
}

export function SpeedtestDetails({ speedtest }: { speedtest: SpeedtestFigures | null }) {
  if (!speedtest) return <p className="muted">No speedtest yet: workers run one shortly after connecting.</p>
  return (
    <dl className="facts">
      <dt>Bandwidth tier</dt>
      <dd>{speedtest.bandwidthTier ? <Badge tone="info">{speedtest.bandwidthTier}</Badge> : '—'}</dd>
      <dt>Download</dt>
      <dd>{speedtest.downloadMbps === null ? '—' : `${speedtest.downloadMbps.toFixed(0)} Mbit/s`}</dd>
      <dt>Upload</dt>
      <dd>{speedtest.uploadMbps === null ? '—' : `${speedtest.uploadMbps.toFixed(0)} Mbit/s`}</dd>
      <dt>Latency</dt>
      <dd>{speedtest.latencyMs === null ? '—' : `${speedtest.latencyMs.toFixed(1)} ms`}</dd>
      <dt>Measured</dt>
      <dd>{formatTime(speedtest.measuredAtMs)}</dd>
    </dl>
  )
}

export type VerificationRow = {
  readonly issuedAtMs: number
  readonly outcome: string
  readonly reasonCode: string | null
  readonly reason: string
  readonly effectiveTflops: number | null
  readonly backend: string | null
}

/** Proof-of-compute challenges, newest first, each with why it passed or failed. */
export function VerificationTable({ rows }: { rows: readonly VerificationRow[] }) {
  return (
    <DataTable
      columns={['Issued', 'Outcome', 'Reason', numeric('Measured'), 'Backend']}
      rows={rows}
      empty="No proof-of-compute challenge yet."
    >
      {(row, index) => (
        <tr key={`${row.issuedAtMs}:${index}`} data-testid="verification-row" data-outcome={row.outcome}>
          <td className="nowrap">{formatTime(row.issuedAtMs)}</td>
          <td>
            <Badge>{row.outcome}</Badge>
          </td>
          <td>
            {row.reason}
            {row.reasonCode ? <span className="muted code"> {row.reasonCode}</span> : null}
          </td>
          <td className="numeric nowrap">{formatTflops(row.effectiveTflops)}</td>
          <td>{row.backend ?? '—'}</td>
        </tr>
      )}
    </DataTable>
  )
}

export function UptimeChart({ days }: { days: readonly { day: string; onlineRatio: number }[] }) {
  const average = days.length === 0 ? 0 : days.reduce((sum, day) => sum + day.onlineRatio, 0) / days.length
  return (
    <>
      <p className="muted">
        Average over {days.length} days: {formatPercent(average)} online.
      </p>
      <BarChart
        label="Share of each day online, last 30 days"
        labels={days.map((day) => formatDayLabel(day.day))}
        series={[{ label: 'online %', values: days.map((day) => Math.round(day.onlineRatio * 1000) / 10) }]}
        yTitle="% online"
        yMax={100}
        height={200}
      />
    </>
  )
}
