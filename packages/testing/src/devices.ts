import type { Store } from '@gpumesh/store'

/** Enrolls a device with the given id straight through the store, as if its worker had presented a token. */
export async function enrollTestDevice(
  store: Store,
  deviceId: string,
  accountId: string,
  nowMs: number,
): Promise<void> {
  await store.insertEnrollmentToken({
    id: `enr_${deviceId}`,
    accountId,
    label: null,
    secretSha256: deviceId,
    createdAtMs: nowMs,
    expiresAtMs: nowMs + 3_600_000,
    usedAtMs: null,
    usedByPublicKey: null,
    deviceId: null,
  })
  const outcome = await store.enroll({
    tokenId: `enr_${deviceId}`,
    tokenSecretSha256: deviceId,
    publicKey: `pk_${deviceId}`,
    newDeviceId: deviceId,
    nowMs,
  })
  if (!outcome.ok) throw new Error(`could not enroll ${deviceId}: ${outcome.reason}`)
}
