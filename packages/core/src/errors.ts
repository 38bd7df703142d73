// Expected failures carry a stable code; callers branch on `code`, never on message text.
// Each code has an anchor in docs/errors.md. A broken invariant is not one of these: it is a bug (see `invariant`).

export type ErrorDetails = Readonly<Record<string, unknown>>

export abstract class GpumeshError extends Error {
  abstract readonly code: string
  abstract readonly httpStatus: number
  readonly details: ErrorDetails

  constructor(message: string, details: ErrorDetails = {}) {
    super(message)
    this.name = new.target.name
    this.details = details
  }

  toJSON(): { code: string; message: string; details: ErrorDetails } {
    return { code: this.code, message: this.message, details: this.details }
  }
}

export type FieldIssue = { readonly field: string; readonly message: string }

export class ValidationError extends GpumeshError {
  readonly code = 'GPUMESH_ERR_VALIDATION'
  readonly httpStatus = 400
  readonly issues: readonly FieldIssue[]

  constructor(issues: readonly FieldIssue[], what = 'request') {
    const first = issues[0]
    const summary = first ? `${first.field}: ${first.message}` : 'invalid input'
    super(`invalid ${what}: ${summary}${issues.length > 1 ? ` (and ${issues.length - 1} more)` : ''}`, {
      issues,
    })
    this.issues = issues
  }
}

export class UnauthenticatedError extends GpumeshError {
  readonly code = 'GPUMESH_ERR_UNAUTHENTICATED'
  readonly httpStatus = 401
}

/** Too many attempts (e.g. failed authentications): `details.retryAfterS` is sent as `Retry-After`. */
export class RateLimitedError extends GpumeshError {
  readonly code = 'GPUMESH_ERR_RATE_LIMITED'
  readonly httpStatus = 429
}

export class ForbiddenError extends GpumeshError {
  readonly code = 'GPUMESH_ERR_FORBIDDEN'
  readonly httpStatus = 403
}

// Another account's resource is reported exactly like a missing one, so ids cannot be probed.
export class NotFoundError extends GpumeshError {
  readonly code = 'GPUMESH_ERR_NOT_FOUND'
  readonly httpStatus = 404
}

export class EnrollmentTokenError extends GpumeshError {
  readonly code = 'GPUMESH_ERR_ENROLLMENT_TOKEN'
  readonly httpStatus = 401
}

export class ConflictError extends GpumeshError {
  readonly code = 'GPUMESH_ERR_CONFLICT'
  readonly httpStatus = 409
}

/** No set of nodes satisfies a cluster request right now; details name the blocking constraint and the market. */
export class UnplaceableError extends GpumeshError {
  readonly code = 'GPUMESH_ERR_UNPLACEABLE'
  readonly httpStatus = 409
}

/** The account does not hold enough; details.shortfallGmt says how much more it needs. */
export class InsufficientFundsError extends GpumeshError {
  readonly code = 'GPUMESH_ERR_INSUFFICIENT_FUNDS'
  readonly httpStatus = 409
}

/** The cluster is not in a state that allows this (e.g. a job on a cluster that is not ready). */
export class ClusterStateError extends GpumeshError {
  readonly code = 'GPUMESH_ERR_CLUSTER_STATE'
  readonly httpStatus = 409
}

export class WorkerAuthError extends GpumeshError {
  readonly code = 'GPUMESH_ERR_WORKER_AUTH'
  readonly httpStatus = 401
}

export class InvariantViolation extends Error {
  constructor(message: string) {
    super(`invariant violated: ${message}`)
    this.name = 'InvariantViolation'
  }
}

export function invariant(condition: unknown, message: string): asserts condition {
  if (!condition) throw new InvariantViolation(message)
}
