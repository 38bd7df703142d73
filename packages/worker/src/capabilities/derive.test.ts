import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { CapabilityCheck } from '@gpumesh/protocol'
import { CheckName, checkFixes, deriveCapabilities } from './derive.ts'

const allPass: CapabilityCheck[] = Object.values(CheckName).map((name) => ({ name, ok: true, detail: 'ok' }))
const failing = (name: CheckName, detail: string): CapabilityCheck[] =>
  allPass.map((check) => (check.name === name ? { name, ok: false, detail } : check))
const derive = (checks: CapabilityCheck[], clustersEnabled = true, serveModels = true) =>
  deriveCapabilities({ checks, clustersEnabled, serveModels, testedAtMs: 7 })

describe('capabilities from a self-test', () => {
  it('grants cluster nodes, model replicas and GPUs when every check passes', () => {
    const capabilities = derive(allPass)
    assert.deepEqual(capabilities.clusterNodes, { available: true, reason: null, fix: null })
    assert.deepEqual(capabilities.modelReplicas, { available: true, reason: null, fix: null })
    assert.equal(capabilities.gpus.available, true)
    assert.equal(capabilities.testedAtMs, 7)
  })

  it('takes cluster nodes away without wireguard-go, naming it and its fix, and keeps model replicas', () => {
    const capabilities = derive(failing(CheckName.wireguardGo, 'wireguard-go not found'))
    assert.equal(capabilities.clusterNodes.available, false)
    assert.equal(capabilities.clusterNodes.reason, 'wireguard-go: wireguard-go not found')
    assert.equal(capabilities.clusterNodes.fix, checkFixes[CheckName.wireguardGo])
    assert.equal(capabilities.modelReplicas.available, true)
  })

  it('takes both away when the sandbox user cannot run the managed Python', () => {
    const capabilities = derive(failing(CheckName.sandboxPython, 'python3: Permission denied'))
    assert.match(capabilities.clusterNodes.reason!, /sandbox python: python3: Permission denied/)
    assert.match(capabilities.modelReplicas.reason!, /sandbox python/)
  })

  it('takes model replicas away when only the model runtime is missing', () => {
    const capabilities = derive(failing(CheckName.modelRuntime, 'missing: torch'))
    assert.equal(capabilities.clusterNodes.available, true)
    assert.equal(capabilities.modelReplicas.available, false)
  })

  it('names the first failure in the order a node is built (root before everything)', () => {
    const checks = allPass
      .map((check) => (check.name === CheckName.root ? { ...check, ok: false, detail: 'uid 1000' } : check))
      .filter((check) => check.name !== CheckName.namespaces)
    assert.equal(derive(checks).clusterNodes.reason, 'root: uid 1000')
  })

  it('counts a check that could not run as failed', () => {
    const checks = allPass.filter((check) => check.name !== CheckName.namespaces)
    assert.match(derive(checks).clusterNodes.reason!, /network namespaces: not checked/)
  })

  it("respects the supplier's choices, with the flag that changes them", () => {
    const capabilities = derive(allPass, false, false)
    assert.equal(capabilities.clusterNodes.available, false)
    assert.match(capabilities.clusterNodes.reason!, /--no-clusters/)
    assert.equal(capabilities.modelReplicas.available, false)
    assert.match(capabilities.modelReplicas.fix!, /--serve-models/)
  })
})
