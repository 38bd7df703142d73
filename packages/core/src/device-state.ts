// A device's connection state and its verification state are separate axes; each always carries a reason
// a supplier can read, so nothing is ever "down" without saying why.

export const DeviceState = { online: 'online', offline: 'offline', blocked: 'blocked' } as const
export type DeviceState = (typeof DeviceState)[keyof typeof DeviceState]

export const VerificationState = {
  unverified: 'unverified',
  verifying: 'verifying',
  verified: 'verified',
  failed: 'failed',
} as const
export type VerificationState = (typeof VerificationState)[keyof typeof VerificationState]

export const BandwidthTier = { low: 'low', medium: 'medium', high: 'high' } as const
export type BandwidthTier = (typeof BandwidthTier)[keyof typeof BandwidthTier]
/** fixed: the supplier's own price; auto: the pricing engine's, never below the supplier's minimum. */
export const PricingMode = { fixed: 'fixed', auto: 'auto' } as const
export type PricingMode = (typeof PricingMode)[keyof typeof PricingMode]

/** How a supplier prices a device. */
export type DevicePricing = {
  readonly mode: PricingMode
  /** fixed: the price per GPU-hour (null: none, not for rent); auto: the minimum, if any. */
  readonly askingPriceMicroUsd: bigint | null
}

export const bandwidthTierRank: Readonly<Record<BandwidthTier, number>> = { low: 1, medium: 2, high: 3 }

/** Why a device changed state: closed list so consoles can translate and group them. */
export const StateReasonCode = {
  enrolled: 'enrolled',
  connected: 'connected',
  missedHeartbeats: 'missed_heartbeats',
  connectionClosed: 'connection_closed',
  workerShutdown: 'worker_shutdown',
  coordinatorRestart: 'coordinator_restart',
  replacedBySession: 'replaced_by_session',
  blockedByOperator: 'blocked_by_operator',
} as const
export type StateReasonCode = (typeof StateReasonCode)[keyof typeof StateReasonCode]
