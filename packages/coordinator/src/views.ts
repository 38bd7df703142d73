import { formatMicroUsd } from '@gpumesh/core'
import type {
  AccountView,
  ApiKeyView,
  DeviceView,
  EnrollmentTokenView,
  HardwareInventory,
  PublicHardwareInventory,
} from '@gpumesh/protocol'
import type { AccountRecord, ApiKeyRecord, DeviceRecord, EnrollmentTokenRecord } from '@gpumesh/store'

// Records to API shapes. Secrets and their hashes never leave through here.

export function accountView(account: AccountRecord): AccountView {
  return { id: account.id, name: account.name, roles: [...account.roles], createdAtMs: account.createdAtMs }
}

export function apiKeyView(key: ApiKeyRecord): ApiKeyView {
  return {
    id: key.id,
    name: key.name,
    roles: [...key.roles],
    createdAtMs: key.createdAtMs,
    lastUsedAtMs: key.lastUsedAtMs,
    revokedAtMs: key.revokedAtMs,
  }
}

export function enrollmentTokenView(token: EnrollmentTokenRecord): EnrollmentTokenView {
  return {
    id: token.id,
    label: token.label,
    createdAtMs: token.createdAtMs,
    expiresAtMs: token.expiresAtMs,
    usedAtMs: token.usedAtMs,
    deviceId: token.deviceId,
  }
}

export function deviceView(device: DeviceRecord): DeviceView {
  return {
    id: device.id,
    hostname: device.hostname,
    state: device.state,
    stateReasonCode: device.stateReasonCode,
    stateReason: device.stateReason,
    stateChangedAtMs: device.stateChangedAtMs,
    verificationState: device.verificationState,
    verificationReason: device.verificationReason,
    location:
      device.region !== null && device.country !== null
        ? { region: device.region, country: device.country }
        : null,
    askingPricePerGpuHourUsd:
      device.askingPriceMicroUsd === null ? null : formatMicroUsd(device.askingPriceMicroUsd),
    bandwidthTier: device.bandwidthTier,
    inventory: device.inventory,
    reliability: device.reliability,
    measuredFp32Tflops: device.measuredFp32Tflops,
    uptimeMsTotal: device.uptimeMsTotal,
    enrolledAtMs: device.enrolledAtMs,
    lastSeenAtMs: device.lastSeenAtMs,
    capabilities: device.capabilities,
  }
}

/** The public explorer's part of an inventory: fields listed one by one, so a new probe field stays private. */
export function publicInventoryView(inventory: HardwareInventory): PublicHardwareInventory {
  return {
    gpus: inventory.gpus.map((gpu) => ({
      index: gpu.index,
      productName: gpu.productName,
      modelKey: gpu.modelKey,
      vramMib: gpu.vramMib,
      ...(gpu.architecture === undefined ? {} : { architecture: gpu.architecture }),
      ...(gpu.pcieGeneration === undefined ? {} : { pcieGeneration: gpu.pcieGeneration }),
      ...(gpu.pcieWidthLanes === undefined ? {} : { pcieWidthLanes: gpu.pcieWidthLanes }),
      migMode: gpu.migMode,
    })),
    ...(inventory.driverVersion === undefined ? {} : { driverVersion: inventory.driverVersion }),
    ...(inventory.cudaVersion === undefined ? {} : { cudaVersion: inventory.cudaVersion }),
    cpu: { ...inventory.cpu },
    memoryMib: inventory.memoryMib,
    os: { platform: inventory.os.platform },
    probeSource: inventory.probeSource,
  }
}
