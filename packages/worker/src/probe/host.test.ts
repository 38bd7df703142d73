import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, it } from 'node:test'
import { parseOsReleaseField, readCpu, readDisk, readHostname, readOperatingSystem } from './host.ts'

const repoRoot = path.resolve(import.meta.dirname, '../../../..')
const osReleaseFixture = path.join(repoRoot, 'packages/worker/test/fixtures/os-release')

describe('parseOsReleaseField', () => {
  it('reads double-quoted, single-quoted and bare values', () => {
    const content = 'NAME="Fedora Linux"\nID=fedora\nVARIANT=\'Cloud Edition\'\n'
    assert.equal(parseOsReleaseField(content, 'NAME'), 'Fedora Linux')
    assert.equal(parseOsReleaseField(content, 'ID'), 'fedora')
    assert.equal(parseOsReleaseField(content, 'VARIANT'), 'Cloud Edition')
  })

  it('undoes shell escapes inside double quotes', () => {
    assert.equal(
      parseOsReleaseField('PRETTY_NAME="Say \\"hi\\" \\\\ \\$HOME"', 'PRETTY_NAME'),
      'Say "hi" \\ $HOME',
    )
  })

  it('matches whole keys only and returns undefined for a missing key', () => {
    const content = 'VERSION_ID="22.04"\nVERSION="22.04.4 LTS (Jammy Jellyfish)"\n'
    assert.equal(parseOsReleaseField(content, 'VERSION'), '22.04.4 LTS (Jammy Jellyfish)')
    assert.equal(parseOsReleaseField(content, 'PRETTY_NAME'), undefined)
  })
})

describe('host readers', () => {
  it('reads the distribution from an os-release file', () => {
    const warnings: string[] = []
    const os = readOperatingSystem(warnings, osReleaseFixture)
    assert.equal(os.distribution, 'Ubuntu 22.04.4 LTS')
    assert.ok(os.platform.length > 0)
    assert.deepEqual(warnings, [])
  })

  it('leaves the distribution out when os-release cannot be read', () => {
    const warnings: string[] = []
    const missingPath = path.join(repoRoot, 'no-such-os-release')
    const os = readOperatingSystem(warnings, missingPath)
    assert.equal('distribution' in os, false)
    if (os.platform === 'linux') assert.ok(warnings.some((warning) => warning.includes(missingPath)))
  })

  it('reports free space no larger than the total', () => {
    const warnings: string[] = []
    const disk = readDisk(repoRoot, warnings)
    assert.deepEqual(warnings, [])
    assert.ok(disk.totalMib > 0 && disk.freeMib >= 0 && disk.freeMib <= disk.totalMib)
  })

  it('reads at least one logical core and names the architecture', () => {
    const cpu = readCpu([])
    assert.ok(Number.isInteger(cpu.logicalCores) && cpu.logicalCores >= 1)
    assert.ok(cpu.architecture.length > 0)
  })

  it('uses an override hostname and replaces a blank one with "unknown" and a warning', () => {
    assert.equal(readHostname([], 'gpu-node-7'), 'gpu-node-7')
    const warnings: string[] = []
    assert.equal(readHostname(warnings, '  '), 'unknown')
    assert.equal(warnings.length, 1)
  })
})
