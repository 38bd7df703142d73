import { ValidationError, type FieldIssue } from '@gpumesh/core'
import type { Static, TSchema } from 'typebox'
import { Compile } from 'typebox/compile'

export type Validator<S extends TSchema> = {
  readonly schema: S
  check(value: unknown): value is Static<S>
  /** Returns the value typed, or throws a ValidationError naming every bad field. Never mutates. */
  parse(value: unknown): Static<S>
}

/** Maximum issues reported for one value; a huge bad payload must not produce a huge error. */
export const maxReportedIssues = 20

export function createValidator<S extends TSchema>(schema: S, what: string): Validator<S> {
  const compiled = Compile(schema)
  return {
    schema,
    check: (value: unknown): value is Static<S> => compiled.Check(value),
    parse(value: unknown): Static<S> {
      if (compiled.Check(value)) return value
      throw new ValidationError(describeIssues(compiled.Errors(value)), what)
    },
  }
}

type RawIssue = { instancePath: string; keyword: string; message: string; params: Record<string, unknown> }

export function describeIssues(rawIssues: Iterable<RawIssue>): FieldIssue[] {
  const issues: FieldIssue[] = []
  const seen = new Set<string>()
  for (const raw of rawIssues) {
    // typebox reports each additional property twice (as a false schema and as additionalProperties)
    if (raw.keyword === 'boolean' && raw.message === 'schema is false') {
      const field = fieldFromPointer(raw.instancePath)
      pushIssue(issues, seen, { field, message: 'is not a known field' })
      continue
    }
    // ajv (fastify's HTTP validation) names the extra and the missing property in params
    if (raw.keyword === 'additionalProperties') {
      const extra = raw.params['additionalProperty']
      if (typeof extra === 'string') {
        pushIssue(issues, seen, {
          field: joinField(fieldFromPointer(raw.instancePath), extra),
          message: 'is not a known field',
        })
      }
      continue
    }
    if (raw.keyword === 'required' && typeof raw.params['missingProperty'] === 'string') {
      const field = joinField(fieldFromPointer(raw.instancePath), raw.params['missingProperty'])
      pushIssue(issues, seen, { field, message: 'is required' })
      continue
    }
    if (raw.keyword === 'required' && Array.isArray(raw.params['requiredProperties'])) {
      for (const name of raw.params['requiredProperties'] as string[]) {
        pushIssue(issues, seen, {
          field: joinField(fieldFromPointer(raw.instancePath), name),
          message: 'is required',
        })
      }
      continue
    }
    pushIssue(issues, seen, { field: fieldFromPointer(raw.instancePath) || '(body)', message: raw.message })
    if (issues.length >= maxReportedIssues) break
  }
  if (issues.length === 0) issues.push({ field: '(body)', message: 'does not match the expected shape' })
  return issues
}

function pushIssue(issues: FieldIssue[], seen: Set<string>, issue: FieldIssue): void {
  const key = `${issue.field}\u0000${issue.message}`
  if (seen.has(key) || issues.length >= maxReportedIssues) return
  seen.add(key)
  issues.push(issue)
}

/** "/gpus/0/uuid" -> "gpus[0].uuid" */
export function fieldFromPointer(pointer: string): string {
  let field = ''
  for (const part of pointer.split('/').slice(1)) {
    const name = part.replace(/~1/g, '/').replace(/~0/g, '~')
    field = /^\d+$/.test(name) ? `${field}[${name}]` : joinField(field, name)
  }
  return field
}

function joinField(parent: string, name: string): string {
  return parent ? `${parent}.${name}` : name
}

/**
 * Validates a union tagged by `type` against the one variant its tag names, so errors describe that
 * variant ("seq: must be >= 0") instead of every variant it failed to be.
 */
export function createTaggedValidator<S extends TSchema>(
  union: S,
  variants: Readonly<Record<string, TSchema>>,
  what: string,
): Validator<S> {
  const byType = new Map(
    Object.entries(variants).map(([type, schema]) => [type, createValidator(schema, what)]),
  )
  const known = [...byType.keys()].join(', ')
  const whole = Compile(union)
  return {
    schema: union,
    check: (value: unknown): value is Static<S> => whole.Check(value),
    parse(value: unknown): Static<S> {
      const type =
        typeof value === 'object' && value !== null ? (value as { type?: unknown }).type : undefined
      const variant = typeof type === 'string' ? byType.get(type) : undefined
      if (!variant) throw new ValidationError([{ field: 'type', message: `must be one of: ${known}` }], what)
      return variant.parse(value) as Static<S>
    },
  }
}
