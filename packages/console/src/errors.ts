import { GpumeshApiError } from '@gpumesh/sdk'

// Turning the coordinator's error replies ({ code, message, details }) into what a form shows: a message per
// field (validation issues and errors that name one field) and one line for everything else.

/** Messages by the API's field name, e.g. { nodes: 'must be >= 1' }. */
export type FieldErrors = Readonly<Record<string, string>>

type Issue = { field: string; message: string }

function isIssue(value: unknown): value is Issue {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as Issue).field === 'string' &&
    typeof (value as Issue).message === 'string'
  )
}

/**
 * The request part a validation issue names is dropped: a query-string filter and a body field show next to
 * the same input ("querystring.minGpus" → "minGpus").
 */
function formFieldName(field: string): string {
  return field.replace(/^(querystring|params|body)\./, '')
}

/** Each field the error names, with its message; the first message wins when a field has several. */
export function fieldErrorsOf(error: unknown): FieldErrors {
  if (!(error instanceof GpumeshApiError)) return {}
  const errors: Record<string, string> = {}
  const issues = error.details['issues']
  if (Array.isArray(issues)) {
    for (const issue of issues) {
      if (!isIssue(issue)) continue
      const field = formFieldName(issue.field)
      errors[field] ??= issue.message
    }
  }
  const field = error.details['field']
  if (typeof field === 'string') errors[formFieldName(field)] ??= error.message
  return errors
}

/** One line for a banner: the message with its code, or what went wrong on the way. */
export function describeError(error: unknown): string {
  if (error instanceof GpumeshApiError) return `${error.message} (${error.code})`
  // AbortSignal.timeout() rejects with a DOMException named TimeoutError; a refused connection is a TypeError.
  if (error instanceof Error && error.name === 'TimeoutError')
    return 'the coordinator did not answer in time; try again'
  if (error instanceof TypeError) return `could not reach the coordinator: ${error.message}`
  if (error instanceof Error) return error.message
  return String(error)
}

/** The banner for an error whose every field is already shown beside its input says only that. */
export function bannerFor(error: unknown, fieldErrors: FieldErrors, shownFields: readonly string[]): string {
  const unshown = Object.keys(fieldErrors).filter((field) => !shownFields.includes(field))
  if (Object.keys(fieldErrors).length > 0 && unshown.length === 0)
    return 'Please correct the fields marked below.'
  return describeError(error)
}

export function isUnauthenticated(error: unknown): boolean {
  return error instanceof GpumeshApiError && error.status === 401
}

export function isNotFound(error: unknown): boolean {
  return error instanceof GpumeshApiError && error.status === 404
}
