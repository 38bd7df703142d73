import type { BandwidthTier, DeviceState, Role, StateReasonCode, VerificationState } from '@gpumesh/core'
import type { HardwareInventory } from '@gpumesh/protocol'

export type AccountRecord = {
  readonly id: string
  readonly name: string
  readonly roles: readonly Role[]
  readonly createdAtMs: number
}

export type ApiKeyRecord = {
  readonly id: string
  readonly accountId: string
  readonly name: string
  readonly roles: readonly Role[]
  readonly secretSha256: string
  readonly createdAtMs: number
  readonly lastUsedAtMs: number | null
  readonly revokedAtMs: number | null
}

export type EnrollmentTokenRecord = {
  readonly id: string
  readonly accountId: string
  readonly label: string | null
  readonly secretSha256: string
  readonly createdAtMs: number
  readonly expiresAtMs: number
  readonly usedAtMs: number | null
  readonly usedByPublicKey: string | null
  readonly deviceId: string | null
}

export type DeviceRecord = {
  readonly id: string
  readonly accountId: string
  readonly publicKey: string
  readonly hostname: string
  readonly state: DeviceState
  readonly stateReasonCode: StateReasonCode
  readonly stateReason: string
  readonly stateChangedAtMs: number
  readonly verificationState: VerificationState
  readonly verificationReason: string
  readonly region: string | null
  readonly country: string | null
  readonly askingPriceMicroUsd: bigint | null
  readonly bandwidthTier: BandwidthTier | null
  readonly inventory: HardwareInventory | null
  readonly enrolledAtMs: number
  readonly lastSeenAtMs: number | null
  readonly uptimeMsTotal: number
  readonly reliability: number
  readonly changeSeq: bigint
}

export type DeviceEventRecord = {
  readonly atMs: number
  readonly state: DeviceState
  readonly reasonCode: StateReasonCode
  readonly reason: string
}

export type UptimeBucket = { readonly bucketStartMs: number; readonly onlineMs: number }

/** What the heartbeat flusher writes for one device: one row per device per flush, never per heartbeat. */
export type HeartbeatFlushEntry = {
  readonly deviceId: string
  readonly lastSeenAtMs: number
  readonly uptimeBuckets: readonly UptimeBucket[]
}

export type DeviceStateChange = {
  readonly deviceId: string
  readonly state: DeviceState
  readonly reasonCode: StateReasonCode
  readonly reason: string
  readonly atMs: number
}

export type DeviceReport = {
  readonly hostname: string
  readonly inventory: HardwareInventory
  readonly region: string
  readonly country: string
  readonly askingPriceMicroUsd: bigint | null
}

export type EnrollRequest = {
  readonly tokenId: string
  readonly tokenSecretSha256: string
  readonly publicKey: string
  readonly newDeviceId: string
  readonly nowMs: number
}

export type EnrollOutcome =
  | { readonly ok: true; readonly deviceId: string; readonly accountId: string; readonly reenrolled: boolean }
  | {
      readonly ok: false
      readonly reason: 'unknown_token' | 'expired' | 'already_used' | 'key_of_other_account'
    }
