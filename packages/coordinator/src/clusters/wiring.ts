import { defaultReconcilePolicy, type PlanMarket } from '@gpumesh/clusters'
import type { Store } from '@gpumesh/store'
import { createClusterBilling, type ClusterBilling } from './billing.ts'
import { ClusterController, type ClusterControllerComponents } from './controller.ts'

// The cluster controller with its billing and market, wired one way for the coordinator and for sim/: the
// simulation runs exactly what production runs, over its own links and clock.

/** How often the cluster controller looks at every active cluster (reports also wake it at once). */
export const clusterTickMs = 500

export type ClusterControlComponents = Omit<ClusterControllerComponents, 'market' | 'billing'>

export type ClusterControlSettings = {
  /** Heartbeat interval × missed heartbeats: when a silent worker is offline. */
  readonly offlineAfterMs: number
  readonly gmtUnitsPerUsd: bigint
  readonly billingEnabled: boolean
  readonly feeBasisPoints: number
  readonly billingIntervalMs: number
  readonly provisionTimeoutMs: number
  readonly nodeJoinTimeoutMs: number
}

export type ClusterControl = {
  readonly controller: ClusterController
  readonly market: PlanMarket
  readonly billing: ClusterBilling | undefined
}

export function buildClusterControl(
  components: ClusterControlComponents,
  settings: ClusterControlSettings,
): ClusterControl {
  const { store, clock, index } = components
  const billing = settings.billingEnabled
    ? createClusterBilling(
        { store, clock, supplierOf: supplierLookup(store) },
        {
          gmtUnitsPerUsd: settings.gmtUnitsPerUsd,
          feeBasisPoints: settings.feeBasisPoints,
          intervalMs: settings.billingIntervalMs,
          // A silent node is found lost offlineAfterMs after it was seen offline, within a tick or two.
          settleDelayMs: settings.offlineAfterMs + 2 * clusterTickMs,
          holdGraceMs: 3_600_000,
        },
      )
    : undefined
  const market: PlanMarket = {
    offerOf: (deviceId) => index.offerOf(deviceId),
    quoteOf: (deviceId, commitmentHours) => index.quoteOf(deviceId, commitmentHours),
    gmtUnitsPerUsd: settings.gmtUnitsPerUsd,
  }
  const controller = new ClusterController(
    { ...components, market, ...(billing ? { billing } : {}) },
    {
      ...defaultReconcilePolicy,
      nodeLostAfterMs: settings.offlineAfterMs,
      provisionTimeoutMs: settings.provisionTimeoutMs,
      nodeJoinTimeoutMs: settings.nodeJoinTimeoutMs,
    },
  )
  return { controller, market, billing }
}

/** A device's supplier account, read once per device: devices never change hands. */
function supplierLookup(store: Store): (deviceId: string) => Promise<string> {
  const supplierOfDevice = new Map<string, string>()
  return async (deviceId) => {
    let accountId = supplierOfDevice.get(deviceId)
    if (!accountId) {
      const device = await store.getDevice(deviceId)
      if (!device) throw new Error(`billing: no device ${deviceId}`)
      accountId = device.accountId
      supplierOfDevice.set(deviceId, accountId)
    }
    return accountId
  }
}
