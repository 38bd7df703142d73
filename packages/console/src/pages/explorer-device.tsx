import type { ExplorerDeviceDetail } from '@gpumesh/protocol'
import { BarChart } from '../components/charts.tsx'
import {
  asInventory,
  HardwareDetails,
  machineLabel,
  SpeedtestDetails,
  UptimeChart,
  VerificationTable,
} from '../components/device-parts.tsx'
import { RewardsTable } from '../components/rewards.tsx'
import { Badge, Breadcrumb, ErrorBanner, Loading, PageHeader, Section, Stat } from '../components/ui.tsx'
import { isNotFound } from '../errors.ts'
import {
  formatReliability,
  formatAgo,
  formatDayLabel,
  formatTflops,
  formatTime,
  unitsToGmt,
  unitsToNumber,
} from '../format.ts'
import { useResource, useTitle } from '../hooks.tsx'
import { amountsBySourceAndDay } from '../series.ts'
import { useSession } from '../session.tsx'

// One device as the public sees it: hardware, network, proof-of-compute history, uptime, income, rewards.

function EarningsPerDay({ detail }: { detail: ExplorerDeviceDetail }) {
  const days = [...new Set(detail.earningsDaily.map((line) => line.day))].sort()
  if (days.length === 0) return <p className="muted">No income recorded in the last 30 days.</p>
  const totalUnits = detail.earningsDaily.reduce((sum, line) => sum + BigInt(line.units), 0n)
  return (
    <>
      <p className="muted">Last 30 days: {unitsToGmt(totalUnits.toString())} GMT.</p>
      <BarChart
        label="Income per day by source"
        labels={days.map(formatDayLabel)}
        series={amountsBySourceAndDay(detail.earningsDaily, days, (line) => unitsToNumber(line.units)).map(
          (source) => ({
            label: source.source,
            values: source.values,
          }),
        )}
        yTitle="GMT"
        stacked
        height={220}
      />
    </>
  )
}

function DeviceDetail({ detail }: { detail: ExplorerDeviceDetail }) {
  const { device } = detail
  const inventory = asInventory(detail.inventory)
  return (
    <>
      <PageHeader
        title={device.hostname ?? machineLabel(device)}
        subtitle={
          <>
            <span className="code">{device.id}</span> ·{' '}
            {[device.region, device.country].filter(Boolean).join(' · ') || 'location not reported'}
          </>
        }
        actions={
          <div className="badges">
            <Badge>{device.state}</Badge>
            <Badge>{device.verificationState}</Badge>
            {device.hired ? <Badge tone="info">hired</Badge> : null}
          </div>
        }
      />
      <Section>
        <div className="stat-row stat-row-wrap">
          <Stat
            label="GPUs"
            value={device.gpuCount > 0 ? `${device.gpuCount}× ${device.gpuModelKey ?? 'GPU'}` : 'CPU only'}
          />
          <Stat
            label="Measured FP32"
            value={formatTflops(device.measuredFp32Tflops)}
            sub="last passed proof-of-compute"
          />
          <Stat label="Bandwidth tier" value={device.bandwidthTier ?? '—'} />
          <Stat
            label="Reliability"
            value={formatReliability(device.reliability)}
            sub="online share, 30 days"
          />
          <Stat
            label="Enrolled"
            value={formatTime(detail.enrolledAtMs)}
            sub={`last seen ${formatAgo(detail.lastSeenAtMs, detail.generatedAtMs)}`}
          />
        </div>
      </Section>
      <div className="grid-2">
        <Section title="Hardware">
          <HardwareDetails inventory={inventory} />
        </Section>
        <Section title="Speedtest">
          <SpeedtestDetails speedtest={detail.speedtest} />
        </Section>
        <Section title="Uptime, last 30 days">
          <UptimeChart days={detail.uptimeDaily} />
        </Section>
        <Section title="Income per day">
          <EarningsPerDay detail={detail} />
        </Section>
      </div>
      <Section title="Verification history">
        <VerificationTable rows={detail.verifications} />
      </Section>
      <Section title="Rewards per epoch">
        <RewardsTable payouts={detail.rewards} />
      </Section>
    </>
  )
}

export function ExplorerDevicePage({ deviceId }: { deviceId: string }) {
  useTitle('Device')
  const { publicClient } = useSession()
  const detail = useResource(() => publicClient.explorerDevice(deviceId), [deviceId])
  return (
    <>
      <Breadcrumb href="/">← Network explorer</Breadcrumb>
      {detail.data ? (
        <DeviceDetail detail={detail.data} />
      ) : detail.error !== undefined ? (
        <>
          <PageHeader title="Device" subtitle={<span className="code">{deviceId}</span>} />
          <ErrorBanner
            {...(isNotFound(detail.error)
              ? { message: `This network has no device ${deviceId}.` }
              : { error: detail.error })}
          />
        </>
      ) : (
        <Loading what="Loading the device" />
      )}
    </>
  )
}
