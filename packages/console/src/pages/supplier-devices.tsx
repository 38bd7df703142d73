import { Link } from 'wouter'
import { gpuSummary } from '../components/device-parts.tsx'
import {
  Badge,
  DataTable,
  LinkedRow,
  Loaded,
  NameCell,
  numeric,
  PageHeader,
  Section,
} from '../components/ui.tsx'
import { formatReliability, formatAgo, formatTflops } from '../format.ts'
import { useInterval, useNowMs, useResource, useTitle } from '../hooks.tsx'
import { useSession } from '../session.tsx'

// A supplier's machines: whether each is online and verified, and why not when it is not.

const refreshMs = 10_000

export function SupplierDevicesPage() {
  useTitle('My devices')
  const { client } = useSession()
  const nowMs = useNowMs(5_000)
  const devices = useResource(() => client.listDevices(), [client])
  useInterval(devices.reload, refreshMs)

  return (
    <>
      <PageHeader
        title="My devices"
        subtitle="Each machine you enrolled, its state and verification with their reasons, and its price."
        actions={
          <Link href="/supplier/tokens" className="button button-primary">
            Enroll a machine
          </Link>
        }
      />
      <Section>
        <Loaded resource={devices} what="Loading devices">
          {(reply) => (
            <DataTable
              className="clickable-rows"
              columns={[
                'Device',
                'State',
                'Verification',
                'Hardware',
                'Location',
                'Bandwidth',
                numeric('Asking $ / GPU-h'),
                numeric('Measured FP32'),
                numeric('Reliability'),
                'Last seen',
              ]}
              rows={reply.devices}
              empty={
                <>
                  No devices yet. <Link href="/supplier/tokens">Create an enrollment token</Link> and run the
                  worker on your machine.
                </>
              }
            >
              {(device) => {
                const href = `/supplier/devices/${encodeURIComponent(device.id)}`
                return (
                  <LinkedRow key={device.id} href={href} data-testid="device-row" data-device-id={device.id}>
                    <NameCell id={device.id} href={href}>
                      {device.hostname}
                    </NameCell>
                    <td data-testid="device-state" data-state={device.state}>
                      <Badge>{device.state}</Badge>
                      <div className="reason">{device.stateReason}</div>
                    </td>
                    <td data-testid="device-verification" data-verification={device.verificationState}>
                      <Badge>{device.verificationState}</Badge>
                      <div className="reason">{device.verificationReason}</div>
                    </td>
                    <td>{gpuSummary(device.inventory)}</td>
                    <td className="nowrap">
                      {device.location ? `${device.location.region} · ${device.location.country}` : '—'}
                    </td>
                    <td data-testid="device-bandwidth">{device.bandwidthTier ?? '—'}</td>
                    <td className="numeric" data-testid="device-price">
                      {device.askingPricePerGpuHourUsd ?? '—'}
                    </td>
                    <td className="numeric nowrap">{formatTflops(device.measuredFp32Tflops)}</td>
                    <td className="numeric">{formatReliability(device.reliability)}</td>
                    <td className="nowrap">{formatAgo(device.lastSeenAtMs, nowMs)}</td>
                  </LinkedRow>
                )
              }}
            </DataTable>
          )}
        </Loaded>
      </Section>
    </>
  )
}
