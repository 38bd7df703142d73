import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { routeRuleOf, routesWithoutAccessRule, type Coordinator } from '@gpumesh/coordinator'
import type { Role } from '@gpumesh/core'
import { insertOperatorKey, startTestCoordinator, storeBackends } from '@gpumesh/testing'

// Issue 22, finding 3: every route of the OpenAPI document declares who may call it, and that is what
// happens: with no key, a wrong key and a key of every combination of roles, each route answers 401 where a
// key is needed, 403 naming the roles where the key has none of them, and neither where it has one.

const roleSets: readonly (readonly Role[])[] = [
  ['renter'],
  ['supplier'],
  ['operator'],
  ['renter', 'supplier'],
  ['renter', 'operator'],
  ['supplier', 'operator'],
  ['renter', 'supplier', 'operator'],
]
const wrongKey = `gmk_${'a'.repeat(20)}_${'b'.repeat(40)}`

type Operation = { readonly method: string; readonly openApiPath: string; readonly url: string }

for (const backend of storeBackends) {
  describe(`route access on ${backend.name}`, () => {
    let coordinator: Coordinator
    let cleanup: () => Promise<void>
    const keys = new Map<string, string>()
    let operations: Operation[] = []
    before(async () => {
      const opened = await backend.open()
      // Hundreds of refusals from one test address: the throttle is tested on its own.
      coordinator = await startTestCoordinator(opened.store, {
        runBackgroundLoops: false,
        failedAuthLimits: {
          perSource: { burst: 100_000, windowMs: 1_000, maxSubjects: 10 },
          perKeyId: { burst: 100_000, windowMs: 1_000, maxSubjects: 10 },
        },
      })
      cleanup = async () => {
        await coordinator.stop()
        await opened.cleanup()
      }
      const operatorKey = await insertOperatorKey(opened.store)
      const created = await coordinator.app.inject({
        method: 'POST',
        url: '/v1/accounts',
        headers: { authorization: `Bearer ${operatorKey}` },
        payload: { name: 'everyone', roles: ['renter', 'supplier', 'operator'] },
      })
      assert.equal(created.statusCode, 201, created.body)
      const broadKey = created.json().apiKey.key as string
      for (const roles of roleSets) {
        const narrowed = await coordinator.app.inject({
          method: 'POST',
          url: '/v1/api-keys',
          headers: { authorization: `Bearer ${broadKey}` },
          payload: { name: roles.join('+'), roles },
        })
        assert.equal(narrowed.statusCode, 201, narrowed.body)
        keys.set(roles.join('+'), narrowed.json().key)
      }
      const document = (await coordinator.app.inject({ method: 'GET', url: '/v1/openapi.json' })).json()
      operations = Object.entries<Record<string, unknown>>(document.paths).flatMap(([openApiPath, methods]) =>
        Object.keys(methods).map((method) => ({
          method: method.toUpperCase(),
          openApiPath,
          url: openApiPath.replace(/\{(\w+)\}/g, ':$1'),
        })),
      )
    })
    after(() => cleanup())

    const call = (operation: Operation, key: string | undefined) =>
      coordinator.app.inject({
        method: operation.method as 'GET',
        // Path parameters get ids that exist nowhere: access is decided before any lookup.
        url: operation.openApiPath.replace(/\{(\w+)\}/g, (_all, name: string) => `unknown-${name}`),
        headers: key ? { authorization: `Bearer ${key}` } : {},
      })
    // The OpenAI-compatible routes answer in OpenAI's error shape, which has no details.
    const refusedForRole = (response: { statusCode: number; json(): any }) =>
      response.statusCode === 403 &&
      (Array.isArray(response.json().details?.requiredRoles) ||
        response.json().error?.type === 'permission_error')

    it('has an access rule for every route the coordinator serves', () => {
      assert.ok(operations.length >= 70, `the OpenAPI document lists ${operations.length} operations`)
      const undeclared = operations.filter((operation) => !routeRuleOf(operation.method, operation.url))
      assert.deepEqual(
        undeclared.map((operation) => `${operation.method} ${operation.url}`),
        [],
        'add these to routeRules in packages/coordinator/src/route-access.ts',
      )
      assert.deepEqual(routesWithoutAccessRule(coordinator.app), [], 'hidden routes need a rule too')
    })

    it('answers every route with no key, a wrong key and each role combination as its rule says', async () => {
      const mismatches: string[] = []
      let checked = 0
      for (const operation of operations) {
        const rule = routeRuleOf(operation.method, operation.url)
        if (!rule) continue
        const what = `${operation.method} ${operation.openApiPath}`
        const anonymous = await call(operation, undefined)
        const wrong = await call(operation, wrongKey)
        checked += 2
        if (rule.access.kind === 'public') {
          if (anonymous.statusCode === 401) mismatches.push(`${what} without a key: 401 on a public route`)
        } else {
          if (anonymous.statusCode !== 401) mismatches.push(`${what} without a key: ${anonymous.statusCode}`)
          if (wrong.statusCode !== 401) mismatches.push(`${what} with a wrong key: ${wrong.statusCode}`)
        }
        for (const roles of roleSets) {
          const response = await call(operation, keys.get(roles.join('+')))
          checked += 1
          const label = `${what} with a ${roles.join('+')} key`
          if (rule.access.kind === 'device-signed') {
            if (response.statusCode !== 401) mismatches.push(`${label}: ${response.statusCode}, not 401`)
            continue
          }
          if (rule.access.kind === 'public') {
            if (refusedForRole(response) || response.statusCode === 401)
              mismatches.push(`${label}: ${response.statusCode} on a public route`)
            continue
          }
          const allowed = rule.access.roles.some((role) => roles.includes(role))
          if (response.statusCode === 401) mismatches.push(`${label}: 401 with a valid key`)
          else if (allowed && refusedForRole(response))
            mismatches.push(`${label}: refused (${response.body})`)
          else if (!allowed) {
            if (!refusedForRole(response)) mismatches.push(`${label}: ${response.statusCode}, not 403`)
            else {
              const body = response.json()
              if (body.details) assert.deepEqual(body.details.requiredRoles, rule.access.roles, label)
              const message = (body.message ?? body.error.message) as string
              for (const role of rule.access.roles) assert.match(message, new RegExp(role), label)
            }
          }
        }
      }
      assert.deepEqual(mismatches, [])
      assert.ok(checked >= 70 * 9, `${checked} requests checked`)
    })
  })
}
