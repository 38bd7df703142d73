// The inventory schema bounds warnings (64 of at most 1024 characters each); a probe of a broken machine
// must still produce a valid inventory, so every warning goes through here.

export const maxProbeWarnings = 64
export const maxProbeWarningLength = 1024

const omittedNotice = 'further warnings omitted'

export function pushWarning(warnings: string[], message: string): void {
  if (warnings.length >= maxProbeWarnings) return
  if (warnings.length === maxProbeWarnings - 1) {
    warnings.push(omittedNotice)
    return
  }
  warnings.push(truncateText(message, maxProbeWarningLength))
}

export function truncateText(text: string, maxLength: number): string {
  return text.length <= maxLength ? text : `${text.slice(0, maxLength - 1)}…`
}

/** Quotes a value read from the machine for a warning, short enough to keep the warning readable. */
export function quoteValue(value: string): string {
  return JSON.stringify(truncateText(value, 80))
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}
