import type {
  BandwidthTier,
  DevicePricing,
  DeviceState,
  PricingMode,
  Role,
  StateReasonCode,
  VerificationState,
} from '@gpumesh/core'
import type { HardwareInventory, WorkerCapabilities } from '@gpumesh/protocol'

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
  readonly pricingMode: PricingMode
  readonly bandwidthTier: BandwidthTier | null
  readonly inventory: HardwareInventory | null
  readonly enrolledAtMs: number
  readonly lastSeenAtMs: number | null
  readonly uptimeMsTotal: number
  /** Measured share of time online over 30 days; null (\"new\") before an hour of history. */
  readonly reliability: number | null
  readonly changeSeq: bigint
  readonly verificationFailures: number
  readonly nextVerificationAtMs: number
  /** Effective FP32 TFLOPS per GPU from the last passed proof-of-compute; null until one passed. */
  readonly measuredFp32Tflops: number | null
  /** The cluster whose reservation holds the device; null when it is free. */
  readonly reservedByClusterId: string | null
  /** The device's latest self-test outcome; null until its worker reports one. */
  readonly capabilities: WorkerCapabilities | null
}

export type DeviceEventRecord = {
  readonly atMs: number
  readonly state: DeviceState
  readonly reasonCode: StateReasonCode
  readonly reason: string
}

export type DeviceReport = {
  readonly hostname: string
  readonly inventory: HardwareInventory
  readonly region: string
  readonly country: string
  /** The pricing the worker was started with; absent: the device keeps what it has (set through the API). */
  readonly pricing?: DevicePricing
  /** The worker's self-test outcome, when the report carries one. */
  readonly capabilities?: WorkerCapabilities
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

export type GpuUuidConflict = { readonly uuid: string; readonly deviceId: string }

export type ChallengeOutcome = 'issued' | 'passed' | 'failed'

export type ChallengeRecord = {
  readonly id: string
  readonly deviceId: string
  readonly issuedAtMs: number
  readonly matrixSize: number
  readonly seedHex: string
  readonly commitDeadlineAtMs: number
  readonly outcome: ChallengeOutcome
  readonly reasonCode: string | null
  readonly reason: string
  readonly merkleRootHex: string | null
  readonly committedAtMs: number | null
  readonly finishedAtMs: number | null
  readonly backend: string | null
  readonly effectiveTflops: number | null
}

export type VerificationOutcome = {
  readonly state: VerificationState
  readonly reason: string
  readonly failures: number
  readonly nextVerificationAtMs: number
  readonly measuredFp32Tflops?: number
}

export type SpeedtestRecord = {
  readonly id: string
  readonly deviceId: string
  readonly measuredAtMs: number
  readonly latencyMs: number
  readonly jitterMs: number
  readonly downloadMbps: number
  readonly uploadMbps: number
  readonly bandwidthTier: BandwidthTier | null
  readonly compute: Record<string, unknown> | null
}

export type GangReservation = {
  readonly clusterId: string
  readonly accountId: string
  readonly deviceIds: readonly string[]
  readonly nowMs: number
}

export type GangReservationOutcome =
  | { readonly ok: true }
  /** Nothing was reserved: these devices were already held. */
  | { readonly ok: false; readonly alreadyReserved: readonly string[] }
