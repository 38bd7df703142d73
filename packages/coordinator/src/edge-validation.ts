import { AjvCompiler, type BuildCompilerFromPool, type ErrorObject } from '@fastify/ajv-compiler'
import { ValidationError, type FieldIssue } from '@gpumesh/core'
import type { FastifyRequest } from 'fastify'

// What the HTTP edge refuses before any route's code runs, so no handler and no store sees it:
// - JSON bodies are validated without type coercion: "7" is not a number, "true" not a boolean.
// - Query and path numbers are decimal text only (ajv's coercion would take "Infinity", "1e400", "0x10" and
//   "  7"), finite, and within the schema's bounds.
// - No number in a body is non-finite (JSON.parse turns 1e400 into Infinity).
// - No text anywhere holds what the database refuses: a NUL character, or a lone surrogate (not UTF-8).

type RouteDefinition = { schema: unknown; httpPart?: string; method?: string; url?: string }
type ValidateFunction = ((data: unknown, context?: unknown) => boolean | Promise<unknown>) & {
  errors?: ErrorObject[] | null
  schemaEnv?: unknown
}
type AjvServerOption = { customOptions?: Record<string, unknown>; plugins?: unknown[] }

/** Ajv's settings for every part; only query strings and path params (text by nature) are coerced. */
export const edgeAjvOptions = { removeAdditional: false, useDefaults: true, allErrors: true } as const

/**
 * Fastify's `schemaController.compilersFactory.buildValidator`: one ajv without coercion for bodies, one
 * that coerces (after a strict check of numeric text) for query strings, params and headers.
 */
function edgeValidator(externalSchemas: Record<string, unknown>, ajvServerOption?: AjvServerOption) {
  const fromPool = AjvCompiler()
  const plugins = (ajvServerOption?.plugins ?? []) as never
  const bodyCompiler = fromPool(externalSchemas as never, {
    customOptions: { ...edgeAjvOptions, coerceTypes: false },
    plugins,
  })
  const textCompiler = fromPool(externalSchemas as never, {
    customOptions: { ...edgeAjvOptions, coerceTypes: 'array' },
    plugins,
  })
  return (route: RouteDefinition): ValidateFunction => {
    if (route.httpPart === 'body') return bodyCompiler(route as never) as ValidateFunction
    const validate = textCompiler(route as never) as ValidateFunction
    const numericFields = numericProperties(route.schema)
    if (numericFields.size === 0) return validate
    const strict: ValidateFunction = (data, context) => {
      const issue = parseNumericText(data, numericFields)
      if (issue) {
        strict.errors = [issue]
        return false
      }
      const valid = validate(data, context)
      strict.errors = validate.errors ?? null
      return valid
    }
    if (validate.schemaEnv) strict.schemaEnv = validate.schemaEnv
    return strict
  }
}

// Our validate functions carry ajv's `errors` (and `schemaEnv`, which fastify reads) but not the rest of ajv's type.
export const buildEdgeValidator = edgeValidator as unknown as BuildCompilerFromPool

type NumericKind = 'integer' | 'number'

/** The top-level properties of a query or params schema that take a number and never text. */
function numericProperties(schema: unknown): Map<string, NumericKind> {
  const fields = new Map<string, NumericKind>()
  const properties = (schema as { properties?: Record<string, unknown> } | undefined)?.properties
  if (!properties) return fields
  for (const [name, property] of Object.entries(properties)) {
    const types = typesOf(property)
    if (types.has('string')) continue
    if (types.has('number')) fields.set(name, 'number')
    else if (types.has('integer')) fields.set(name, 'integer')
  }
  return fields
}

function typesOf(schema: unknown): Set<string> {
  const types = new Set<string>()
  const visit = (node: unknown) => {
    if (!node || typeof node !== 'object') return
    const { type, anyOf, oneOf, allOf, items } = node as Record<string, unknown>
    for (const name of Array.isArray(type) ? type : [type]) if (typeof name === 'string') types.add(name)
    for (const branch of [anyOf, oneOf, allOf]) if (Array.isArray(branch)) branch.forEach(visit)
    if (types.has('array')) visit(items)
  }
  visit(schema)
  return types
}

const decimalIntegerText = /^-?\d{1,16}$/
const decimalNumberText = /^-?\d{1,16}(\.\d{1,16})?$/

/** Replaces each numeric field's text by its number; returns the first field whose text is not one. */
function parseNumericText(data: unknown, fields: ReadonlyMap<string, NumericKind>): ErrorObject | undefined {
  if (!data || typeof data !== 'object') return undefined
  const record = data as Record<string, unknown>
  for (const [name, kind] of fields) {
    const value = record[name]
    if (value === undefined) continue
    const texts = Array.isArray(value) ? value : [value]
    const parsed: unknown[] = []
    for (const text of texts) {
      if (typeof text !== 'string') {
        parsed.push(text)
        continue
      }
      const pattern = kind === 'integer' ? decimalIntegerText : decimalNumberText
      const number = Number(text)
      if (
        !pattern.test(text) ||
        !Number.isFinite(number) ||
        (kind === 'integer' && !Number.isSafeInteger(number))
      )
        return {
          keyword: 'type',
          instancePath: `/${name}`,
          schemaPath: `#/properties/${name}/type`,
          params: { type: kind },
          message: kind === 'integer' ? 'must be a decimal integer' : 'must be a finite decimal number',
        }
      parsed.push(number)
    }
    record[name] = Array.isArray(value) ? parsed : parsed[0]
  }
  return undefined
}

const maxReportedIssues = 10

/**
 * Fastify `preValidation` hook: refuses text the database cannot store in params, query and body, and
 * non-finite numbers in the body, each issue naming its field.
 */
export async function refuseUnstorableInput(request: FastifyRequest): Promise<void> {
  for (const [part, value, prefix] of [
    ['params', request.params, 'params'],
    ['querystring', request.query, 'querystring'],
    ['body', request.body, ''],
  ] as const) {
    const issues = unstorableFields(value, prefix)
    if (issues.length > 0) throw new ValidationError(issues, part)
  }
}

/**
 * The fields of a parsed value (a request part or a worker message) that no store may take: text with a
 * NUL or a lone surrogate, a non-finite number. Walks without recursion, so a deep value cannot overflow
 * the stack.
 */
export function unstorableFields(root: unknown, prefix = ''): FieldIssue[] {
  const issues: FieldIssue[] = []
  const stack: { value: unknown; field: string }[] = [{ value: root, field: prefix }]
  while (stack.length > 0 && issues.length < maxReportedIssues) {
    const { value, field } = stack.pop()!
    if (typeof value === 'string') {
      const problem = unstorableText(value)
      if (problem) issues.push({ field: field || '(body)', message: problem })
    } else if (typeof value === 'number') {
      if (!Number.isFinite(value))
        issues.push({ field: field || '(body)', message: 'must be a finite number' })
    } else if (Array.isArray(value)) {
      value.forEach((item, position) => stack.push({ value: item, field: `${field}[${position}]` }))
    } else if (isPlainObject(value)) {
      for (const [key, item] of Object.entries(value)) {
        const child = field ? `${field}.${key}` : key
        const keyProblem = unstorableText(key)
        if (keyProblem) issues.push({ field: child, message: `name ${keyProblem}` })
        else stack.push({ value: item, field: child })
      }
    }
  }
  return issues
}

function unstorableText(text: string): string | undefined {
  if (text.includes('\u0000')) return 'must not contain a NUL character'
  if (!text.isWellFormed()) return 'must be valid Unicode text (it has a lone surrogate)'
  return undefined
}

/**
 * Only what a parser made from text: a body streamed to its route (an artifact upload) is a stream whose
 * fields reach the socket, the server and everything they hold. Path params are find-my-way's objects, whose
 * prototype has no prototype.
 */
function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object') return false
  const prototype = Object.getPrototypeOf(value) as object | null
  return prototype === null || prototype === Object.prototype || Object.getPrototypeOf(prototype) === null
}
