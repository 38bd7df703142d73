import assert from 'node:assert/strict'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import * as core from '@gpumesh/core'

// docs/errors.md is the reference for every error code a client can meet: this keeps it in step with the
// codes the code defines, both ways, and with each error class's HTTP status.

const repoRoot = new URL('../../../', import.meta.url).pathname
const doc = readFileSync(join(repoRoot, 'docs/errors.md'), 'utf8')
const codePattern = /GPUMESH_ERR_[A-Z0-9_]+/g

function sourceFiles(dir: string): string[] {
  const files: string[] = []
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry)
    if (statSync(path).isDirectory()) files.push(...sourceFiles(path))
    else if (/\.tsx?$/.test(entry) && !/\.test\.tsx?$/.test(entry)) files.push(path)
  }
  return files
}

const codesInSource = new Set<string>()
for (const pkg of readdirSync(join(repoRoot, 'packages'))) {
  const src = join(repoRoot, 'packages', pkg, 'src')
  try {
    statSync(src)
  } catch {
    continue
  }
  for (const file of sourceFiles(src))
    for (const match of readFileSync(file, 'utf8').matchAll(codePattern)) codesInSource.add(match[0])
}
/** `## gpumesh_err_x` sections, with their text up to the next heading. */
const sections = new Map(
  [...doc.matchAll(/^## (gpumesh_err_[a-z0-9_]+)\n([\s\S]*?)(?=^## |(?![\s\S]))/gm)].map((match) => [
    match[1]!.toUpperCase(),
    match[2]!,
  ]),
)

describe('docs/errors.md', () => {
  it('documents every error code the code can send', () => {
    const documented = new Set(doc.toUpperCase().match(codePattern) ?? [])
    const missing = [...codesInSource].filter((code) => !documented.has(code)).sort()
    assert.deepEqual(
      missing,
      [],
      `codes used in packages/*/src but not in docs/errors.md: ${missing.join(', ')}`,
    )
  })

  it('has no section for a code the code no longer defines', () => {
    const stale = [...sections.keys()].filter((code) => !codesInSource.has(code)).sort()
    assert.deepEqual(stale, [], `docs/errors.md sections without a code in the source: ${stale.join(', ')}`)
  })

  it("gives every error class its own section, with the class's name and HTTP status", () => {
    const classes = (Object.values(core) as unknown[]).filter(
      (value): value is { name: string; prototype: unknown } =>
        typeof value === 'function' && value.prototype instanceof core.GpumeshError,
    )
    assert.ok(classes.length >= 10, `found ${classes.length} error classes`)
    for (const ErrorClass of classes) {
      const error = new (ErrorClass as unknown as new (arg: never) => core.GpumeshError)([] as never)
      const section = sections.get(error.code)
      assert.ok(section, `${ErrorClass.name} (${error.code}) has no section in docs/errors.md`)
      assert.match(
        section,
        new RegExp(`(HTTP|status is) ${error.httpStatus}\\b`),
        `${error.code}: HTTP ${error.httpStatus}`,
      )
      assert.match(section, new RegExp(`\\b${ErrorClass.name}\\b`), `${error.code}: class ${ErrorClass.name}`)
    }
  })
})
