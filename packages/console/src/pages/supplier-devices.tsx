import { Link, useLocation } from 'wouter'
import { gpuSummary } from '../components/device-parts.tsx'
import { Badge, EmptyRow, Loaded, PageHeader, Section, TableScroll } from '../components/ui.tsx'
import { formatAgo, formatPercent, formatTflops } from '../format.ts'
import { useInterval, useNowMs, useResource, useTitle } from '../hooks.tsx'
import { useSession } from '../session.tsx'

// A supplier's machines: whether each is online and verified, and why not when it is not.

const refreshMs = 10_000

export function SupplierDevicesPage() {
  useTitle('My devices')
  const { client } = useSession()
  const [, navigate] = useLocation()
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
            <TableScroll>
              <table className="clickable-rows">
                <thead>
                  <tr>
                    <th>Device</th>
                    <th>State</th>
                    <th>Verification</th>
                    <th>Hardware</th>
                    <th>Location</th>
                    <th>Bandwidth</th>
                    <th className="numeric">Asking $ / GPU-h</th>
                    <th className="numeric">Measured FP32</th>
                    <th className="numeric">Reliability</th>
                    <th>Last seen</th>
                  </tr>
                </thead>
                <tbody>
                  {reply.devices.length === 0 ? (
                    <EmptyRow columns={10}>
                      No devices yet. <Link href="/supplier/tokens">Create an enrollment token</Link> and run
                      the worker on your machine.
                    </EmptyRow>
                  ) : null}
                  {reply.devices.map((device) => (
                    <tr
                      key={device.id}
                      data-testid="device-row"
                      data-device-id={device.id}
                      onClick={(event) => {
                        if (!(event.target as HTMLElement).closest('a'))
                          navigate(`/supplier/devices/${encodeURIComponent(device.id)}`)
                      }}
                    >
                      <td>
                        <Link href={`/supplier/devices/${encodeURIComponent(device.id)}`}>
                          {device.hostname}
                        </Link>
                        <div className="muted code">{device.id}</div>
                      </td>
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
                      <td className="numeric">{formatPercent(device.reliability)}</td>
                      <td className="nowrap">{formatAgo(device.lastSeenAtMs, nowMs)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </TableScroll>
          )}
        </Loaded>
      </Section>
    </>
  )
}
