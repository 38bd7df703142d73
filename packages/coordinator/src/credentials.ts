import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { formatId, idBodyAlphabet, idBodyLength, IdPrefix } from '@gpumesh/core'

// Secrets handed to people: `gmk_<id>_<secret>` for API keys, `gme_<id>_<secret>` for enrollment tokens.
// The id part finds the row; only SHA-256 of the secret part is stored, and it is compared in constant time.

const secretAlphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'
const secretLength = 40
const apiKeyPrefix = 'gmk'
const enrollmentTokenPrefix = 'gme'

export function mintIdBody(): string {
  return randomString(idBodyAlphabet, idBodyLength)
}

export function mintId(prefix: IdPrefix): string {
  return formatId(prefix, mintIdBody())
}

function randomString(alphabet: string, length: number): string {
  // 256 is a multiple of neither alphabet size, so reject bytes past the last full multiple (no modulo bias).
  const limit = 256 - (256 % alphabet.length)
  let out = ''
  while (out.length < length) {
    for (const byte of randomBytes(length * 2)) {
      if (byte < limit && out.length < length) out += alphabet[byte % alphabet.length]
    }
  }
  return out
}

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex')
}

export function safeEqualHex(a: string, b: string): boolean {
  const left = Buffer.from(a, 'hex')
  const right = Buffer.from(b, 'hex')
  return left.length === right.length && timingSafeEqual(left, right)
}

export type MintedSecret = {
  readonly id: string
  readonly secret: string
  readonly secretSha256: string
  readonly presented: string
}

function mint(kind: 'apiKey' | 'enrollmentToken'): MintedSecret {
  const body = mintIdBody()
  const secret = randomString(secretAlphabet, secretLength)
  const id = formatId(kind === 'apiKey' ? IdPrefix.apiKey : IdPrefix.enrollmentToken, body)
  const prefix = kind === 'apiKey' ? apiKeyPrefix : enrollmentTokenPrefix
  return { id, secret, secretSha256: sha256Hex(secret), presented: `${prefix}_${body}_${secret}` }
}

export const mintApiKey = () => mint('apiKey')
export const mintEnrollmentToken = () => mint('enrollmentToken')

export type ParsedSecret = { readonly id: string; readonly secretSha256: string }

function parse(presented: string, kind: 'apiKey' | 'enrollmentToken'): ParsedSecret | undefined {
  const prefix = kind === 'apiKey' ? apiKeyPrefix : enrollmentTokenPrefix
  const match = new RegExp(`^${prefix}_([a-z0-9]{${idBodyLength}})_([A-Za-z0-9]{${secretLength}})$`).exec(
    presented,
  )
  if (!match) return undefined
  const id = formatId(kind === 'apiKey' ? IdPrefix.apiKey : IdPrefix.enrollmentToken, match[1] ?? '')
  return { id, secretSha256: sha256Hex(match[2] ?? '') }
}

export const parseApiKey = (presented: string) => parse(presented, 'apiKey')
export const parseEnrollmentToken = (presented: string) => parse(presented, 'enrollmentToken')
