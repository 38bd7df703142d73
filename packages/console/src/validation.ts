import type { maxJobEntrypointLength as protocolMaxJobEntrypointLength } from '@gpumesh/protocol'
import type { FieldErrors } from './errors.ts'

// Client-side checks that mirror the protocol schemas, so a form says what is wrong before it is sent. The
// coordinator checks again (it is the authority); its field errors show in the same place.
// Values are imported from @gpumesh/protocol as types only: importing them as values would bundle TypeBox.

/** Answers a message when the text is not acceptable. */
export type Check = (text: string) => string | undefined

export type FieldSpec = { readonly required?: boolean; readonly checks?: readonly Check[] }

export const maxClusterNodes = 64
export const maxGpusPerNode = 16
export const maxClusterDurationHours = 24 * 30
export const maxJobEntrypointLength: typeof protocolMaxJobEntrypointLength = 4096
export const maxNameLength = 64

const usdPattern = /^(0|[1-9][0-9]{0,8})(\.[0-9]{1,6})?$/
const gmtPattern = /^(0|[1-9][0-9]{0,11})(\.[0-9]{1,6})?$/

export const checks = {
  integer:
    (minimum: number, maximum: number): Check =>
    (text) => {
      if (!/^-?[0-9]+$/.test(text.trim())) return 'must be a whole number'
      const value = Number(text)
      if (value < minimum) return `must be at least ${minimum}`
      if (value > maximum) return `must be at most ${maximum}`
      return undefined
    },
  /** A decimal number; `above` excludes its bound (hours must be more than 0). */
  number:
    (bounds: { minimum?: number; above?: number; maximum?: number }): Check =>
    (text) => {
      if (!/^-?[0-9]*\.?[0-9]+$/.test(text.trim())) return 'must be a number'
      const value = Number(text)
      if (bounds.above !== undefined && value <= bounds.above) return `must be more than ${bounds.above}`
      if (bounds.minimum !== undefined && value < bounds.minimum) return `must be at least ${bounds.minimum}`
      if (bounds.maximum !== undefined && value > bounds.maximum) return `must be at most ${bounds.maximum}`
      return undefined
    },
  usd: ((text) =>
    usdPattern.test(text.trim())
      ? undefined
      : 'must be a USD amount such as 1.25 (at most 6 decimals)') satisfies Check,
  positiveGmt: ((text) => {
    if (!gmtPattern.test(text.trim())) return 'must be a GMT amount such as 12.5 (at most 6 decimals)'
    if (/^0(\.0+)?$/.test(text.trim())) return 'must be more than 0'
    return undefined
  }) satisfies Check,
  pattern:
    (pattern: RegExp, message: string): Check =>
    (text) =>
      pattern.test(text.trim()) ? undefined : message,
  maxLength:
    (maximum: number): Check =>
    (text) =>
      text.length > maximum ? `must be at most ${maximum} characters` : undefined,
  /** A name as the API takes it: 1 to 64 characters, no control characters. */
  name: ((text) => {
    if (text.length > maxNameLength) return `must be at most ${maxNameLength} characters`
    // eslint-disable-next-line no-control-regex
    if (/[\u0000-\u001f]/.test(text)) return 'must not contain control characters'
    return undefined
  }) satisfies Check,
  region: ((text) =>
    /^[a-z0-9][a-z0-9-]{0,62}$/.test(text.trim())
      ? undefined
      : 'must be a region label such as eu-west (lowercase letters, digits and -)') satisfies Check,
  country: ((text) =>
    /^[A-Za-z]{2}$/.test(text.trim())
      ? undefined
      : 'must be a two-letter country code such as DE') satisfies Check,
} as const

/** Checks every field the spec names: empty optional fields pass, empty required ones do not. */
export function validateForm(
  values: Readonly<Record<string, string>>,
  spec: Readonly<Record<string, FieldSpec>>,
): FieldErrors {
  const errors: Record<string, string> = {}
  for (const [field, fieldSpec] of Object.entries(spec)) {
    const text = values[field] ?? ''
    if (text.trim() === '') {
      if (fieldSpec.required) errors[field] = 'is required'
      continue
    }
    for (const check of fieldSpec.checks ?? []) {
      const message = check(text)
      if (message) {
        errors[field] = message
        break
      }
    }
  }
  return errors
}

export function hasErrors(errors: FieldErrors): boolean {
  return Object.keys(errors).length > 0
}

/** A trimmed text, or undefined for an empty one: optional fields are left out of the request. */
export function optionalText(text: string): string | undefined {
  const trimmed = text.trim()
  return trimmed === '' ? undefined : trimmed
}

export function optionalNumber(text: string): number | undefined {
  const trimmed = text.trim()
  return trimmed === '' ? undefined : Number(trimmed)
}

/** An id that makes a money request safe to retry (the coordinator answers a replay with the first result). */
export function newRequestId(): string {
  // getRandomValues, not randomUUID: the latter exists only in secure contexts, and a coordinator may be
  // opened over plain HTTP on a LAN address.
  const bytes = crypto.getRandomValues(new Uint8Array(16))
  return `console-${Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('')}`
}
