import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto'
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

// The worker's Ed25519 identity. The private key is made on the machine, never leaves it, and is kept
// (mode 0600) across restarts: the same key is the same device to the coordinator.

export type WorkerIdentity = {
  /** Raw 32-byte public key, base64url. */
  readonly publicKey: string
  sign(payload: string): string
}

export const identityKeyFileName = 'identity.key'
export const enrollmentFileName = 'enrollment.json'

export function loadOrCreateIdentity(stateDir: string): WorkerIdentity {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 })
  const keyPath = join(stateDir, identityKeyFileName)
  let privateKey: KeyObject
  if (existsSync(keyPath)) {
    privateKey = createPrivateKey(readFileSync(keyPath))
  } else {
    privateKey = generateKeyPairSync('ed25519').privateKey
    writeFileAtomic(keyPath, privateKey.export({ type: 'pkcs8', format: 'pem' }).toString())
  }
  chmodSync(keyPath, 0o600)
  const jwk = createPublicKey(privateKey).export({ format: 'jwk' })
  if (typeof jwk.x !== 'string') throw new Error(`${keyPath} is not an Ed25519 key`)
  const publicKey = jwk.x
  return {
    publicKey,
    sign: (payload: string) => sign(null, Buffer.from(payload), privateKey).toString('base64url'),
  }
}

export type EnrollmentRecord = {
  readonly deviceId: string
  readonly accountId: string
  readonly coordinatorUrl: string
}

export function readEnrollment(stateDir: string): EnrollmentRecord | undefined {
  const path = join(stateDir, enrollmentFileName)
  if (!existsSync(path)) return undefined
  const parsed = JSON.parse(readFileSync(path, 'utf8')) as Partial<EnrollmentRecord>
  if (
    typeof parsed.deviceId !== 'string' ||
    typeof parsed.accountId !== 'string' ||
    typeof parsed.coordinatorUrl !== 'string'
  ) {
    throw new Error(`${path} is damaged: delete it and enroll again with a new token`)
  }
  return parsed as EnrollmentRecord
}

export function writeEnrollment(stateDir: string, record: EnrollmentRecord): void {
  writeFileAtomic(join(stateDir, enrollmentFileName), `${JSON.stringify(record, null, 2)}\n`)
}

/** Write-then-rename, so a crash mid-write never leaves a half file that would lose the identity. */
function writeFileAtomic(path: string, content: string): void {
  const temporary = `${path}.${process.pid}.tmp`
  writeFileSync(temporary, content, { mode: 0o600 })
  renameSync(temporary, path)
}
