import { readFileSync } from 'node:fs'
import { ValidationError } from '@gpumesh/core'
import { createValidator } from '@gpumesh/protocol'
import type { Static, TSchema } from 'typebox'
import { Value } from 'typebox/value'

// A daemon's settings: config file (JSON) under CLI flags, defaults filled from the schema, then validated.
// A bad value names its field and where it came from; nothing starts.

export function loadSettings<S extends TSchema>(
  schema: S,
  what: string,
  configPath: string | undefined,
  flags: Record<string, unknown>,
): Static<S> {
  let fromFile: Record<string, unknown> = {}
  if (configPath) {
    let text: string
    try {
      text = readFileSync(configPath, 'utf8')
    } catch (error) {
      throw new ValidationError(
        [{ field: 'config', message: `cannot read ${configPath}: ${(error as Error).message}` }],
        what,
      )
    }
    try {
      fromFile = JSON.parse(text) as Record<string, unknown>
    } catch (error) {
      throw new ValidationError(
        [{ field: 'config', message: `${configPath} is not valid JSON: ${(error as Error).message}` }],
        what,
      )
    }
    if (typeof fromFile !== 'object' || fromFile === null || Array.isArray(fromFile)) {
      throw new ValidationError([{ field: 'config', message: `${configPath} must hold a JSON object` }], what)
    }
  }
  const definedFlags = Object.fromEntries(Object.entries(flags).filter(([, value]) => value !== undefined))
  const merged = Value.Default(schema, structuredClone({ ...fromFile, ...definedFlags }))
  return createValidator(schema, what).parse(merged)
}

/** Commander hands numbers over as strings; converts those that look like integers, leaving the schema to judge. */
export function integerFlag(value: string | undefined): number | string | undefined {
  if (value === undefined) return undefined
  return /^-?\d+$/.test(value) ? Number(value) : value
}
