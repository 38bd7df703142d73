import { mintApiKey } from '@gpumesh/coordinator'
import type { Store } from '@gpumesh/store'

// The coordinator's operations as its own OpenAPI document states them, for tests that go over every route
// (a route added later is covered without editing the tests).

export type JsonSchema = {
  readonly type?: string | readonly string[]
  readonly properties?: Readonly<Record<string, JsonSchema>>
  readonly items?: JsonSchema
  readonly anyOf?: readonly JsonSchema[]
  readonly required?: readonly string[]
  readonly enum?: readonly unknown[]
  readonly const?: unknown
  readonly [keyword: string]: unknown
}

export type Operation = {
  readonly method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'
  /** The OpenAPI path, with `{name}` placeholders. */
  readonly path: string
  readonly pathParams: readonly string[]
  readonly query: Readonly<Record<string, JsonSchema>>
  /** The JSON body's schema, where the operation takes one. */
  readonly jsonBody: JsonSchema | undefined
}

type OpenApiDocument = {
  readonly paths?: Record<
    string,
    Record<
      string,
      {
        parameters?: { in: string; name: string; schema?: JsonSchema }[]
        requestBody?: { content?: Record<string, { schema?: JsonSchema }> }
      }
    >
  >
}

export function openApiOperations(document: unknown): Operation[] {
  const operations: Operation[] = []
  for (const [path, methods] of Object.entries((document as OpenApiDocument).paths ?? {})) {
    for (const [method, operation] of Object.entries(methods)) {
      const upper = method.toUpperCase()
      if (!['GET', 'POST', 'PUT', 'PATCH', 'DELETE'].includes(upper)) continue
      const parameters = operation.parameters ?? []
      operations.push({
        method: upper as Operation['method'],
        path,
        pathParams: parameters.filter((p) => p.in === 'path').map((p) => p.name),
        query: Object.fromEntries(
          parameters.filter((p) => p.in === 'query').map((p) => [p.name, p.schema ?? {}]),
        ),
        jsonBody: operation.requestBody?.content?.['application/json']?.schema,
      })
    }
  }
  return operations
}

/** The operation's path with each `{name}` replaced by `value(name)` (already URL-encoded). */
export function pathWith(operation: Operation, value: (name: string) => string): string {
  return operation.path.replace(/\{([^}]+)\}/g, (_match, name: string) => value(name))
}

/** An account holding every role, and its key: each route's own checks are reached, whatever role it needs. */
export async function allRolesKey(store: Store, accountId = 'acc_all_roles'): Promise<string> {
  const key = mintApiKey()
  const roles = ['renter', 'supplier', 'operator'] as const
  await store.createAccount({ id: accountId, name: 'all roles', roles: [...roles], createdAtMs: 0 })
  await store.insertApiKey({
    id: key.id,
    accountId,
    name: 'all roles',
    roles: [...roles],
    secretSha256: key.secretSha256,
    createdAtMs: 0,
    lastUsedAtMs: null,
    revokedAtMs: null,
  })
  return key.presented
}
