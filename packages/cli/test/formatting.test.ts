import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import type { ClusterEventView, ClusterView } from '@gpumesh/protocol'
import {
  clockTime,
  firstLine,
  formatClusterEvent,
  parsePositiveNumber,
  readyNodes,
  shortDeviceId,
} from '../src/commands/cluster.ts'
import { entrypointOf, jobExitCode, shellQuote } from '../src/commands/job.ts'
import { UsageError } from '../src/credentials.ts'

// What the CLI prints and sends, checked without a coordinator: event lines, the job's entrypoint as the
// shell on the head node will split it, exit codes, and flag checks.

/** The words `sh` makes of `command`. */
function shellWords(command: string): string[] {
  const output = execFileSync('sh', ['-c', `printf '%s\\0' ${command}`], { encoding: 'utf8' })
  return output.split('\0').slice(0, -1)
}

describe('entrypointOf', () => {
  it('leaves plain words alone and quotes the rest', () => {
    assert.equal(
      entrypointOf(['python', 'train.py', '--lr=3e-4', '--out', 'runs/a,b:c@d%e+f']),
      'python train.py --lr=3e-4 --out runs/a,b:c@d%e+f',
    )
    assert.equal(entrypointOf(['echo', 'two words']), "echo 'two words'")
    assert.equal(entrypointOf(['echo', "it's"]), "echo 'it'\\''s'")
    assert.equal(entrypointOf(['echo', '']), "echo ''")
    assert.equal(entrypointOf(['echo', '$HOME', '*.py', 'a;b', '~']), "echo '$HOME' '*.py' 'a;b' '~'")
    assert.equal(shellQuote('bash'), 'bash')
  })

  it('refuses an empty command', () => {
    assert.throws(() => entrypointOf([]), UsageError)
  })

  it('gives back the same words when a POSIX shell splits it', () => {
    const word = fc.string({ unit: 'binary', maxLength: 12 }).filter((text) => !text.includes('\0'))
    fc.assert(
      fc.property(fc.array(word, { minLength: 1, maxLength: 5 }), (words) => {
        assert.deepEqual(shellWords(entrypointOf(words)), words)
      }),
      { numRuns: 150 },
    )
  })
})

describe('formatClusterEvent', () => {
  const at = Date.UTC(2026, 0, 1, 12, 0, 1)
  const utc = (ms: number) => new Date(ms).toISOString().slice(11, 19)
  const event = (kind: string, deviceId: string | null, message: string): ClusterEventView => ({
    seq: '7',
    atMs: at,
    kind,
    deviceId,
    message,
  })
  const addresses: Record<string, string> = { dev_abcdefghij0123456789: '100.64.3.2' }
  const addressOf = (deviceId: string) => addresses[deviceId] ?? null

  it('names the node by overlay address and short device id', () => {
    assert.equal(
      formatClusterEvent(
        event('node_mesh_up', 'dev_abcdefghij0123456789', 'mesh up at 100.64.3.2'),
        addressOf,
        utc,
      ),
      '12:00:01  node 100.64.3.2 (dev_abcdef…)  mesh up',
    )
    assert.equal(
      formatClusterEvent(
        event('node_ray_joined', 'dev_abcdefghij0123456789', 'node 100.64.3.2 joined Ray'),
        addressOf,
        utc,
      ),
      '12:00:01  node 100.64.3.2 (dev_abcdef…)  joined Ray',
    )
    assert.equal(
      formatClusterEvent(
        event('node_reserved', 'dev_abcdefghij0123456789', 'reserved as head'),
        addressOf,
        utc,
      ),
      '12:00:01  node 100.64.3.2 (dev_abcdef…)  reserved as head',
    )
  })

  it('does not repeat the node in messages that name it', () => {
    assert.equal(
      formatClusterEvent(
        event('node_lost', 'dev_abcdefghij0123456789', 'node 100.64.3.2 lost: Ray reports the node dead'),
        addressOf,
        utc,
      ),
      '12:00:01  node 100.64.3.2 (dev_abcdef…)  lost: Ray reports the node dead',
    )
  })

  it('shows the device alone before it has an address, and the cluster for cluster events', () => {
    assert.equal(
      formatClusterEvent(
        event('node_released', 'dev_zzzzzzzzzz0123456789', 'released: by its worker'),
        addressOf,
        utc,
      ),
      '12:00:01  node dev_zzzzzz…  released: by its worker',
    )
    assert.equal(
      formatClusterEvent(
        event('state_changed', null, 'ready: Ray reports all 2 nodes alive'),
        addressOf,
        utc,
      ),
      '12:00:01  cluster  ready: Ray reports all 2 nodes alive',
    )
  })

  it('prints local wall-clock time by default', () => {
    const local = new Date(at)
    const expected = [local.getHours(), local.getMinutes(), local.getSeconds()]
      .map((part) => String(part).padStart(2, '0'))
      .join(':')
    assert.equal(clockTime(at), expected)
    assert.match(
      formatClusterEvent(event('created', null, 'x'), addressOf),
      new RegExp(`^${expected}  cluster  x$`),
    )
  })

  it("keeps to one line when a message goes on (a finished job's output)", () => {
    const message = 'job job_x failed: exited with code 3, last available logs:\nTraceback\n  boom\n'
    assert.equal(
      formatClusterEvent(event('job_finished', null, message), addressOf, utc),
      '12:00:01  cluster  job job_x failed: exited with code 3, last available logs',
    )
    assert.equal(firstLine('one line: as is:'), 'one line: as is:')
  })

  it('keeps short ids whole', () => {
    assert.equal(shortDeviceId('dev_abc'), 'dev_abc')
  })
})

describe('readyNodes', () => {
  it('counts nodes still in the cluster that joined Ray', () => {
    const node = (phase: string, leftAtMs: number | null) => ({
      deviceId: 'dev_x',
      role: 'worker' as const,
      phase,
      phaseReason: '',
      overlayAddress: null,
      joinedAtMs: 0,
      leftAtMs,
    })
    const cluster = {
      nodes: [node('ray_joined', null), node('mesh_up', null), node('ray_joined', 5), node('lost', 5)],
    } as ClusterView
    assert.equal(readyNodes(cluster), 1)
  })
})

describe('jobExitCode', () => {
  it("exits with the job's code, and never 0 for a job that did not succeed", () => {
    assert.equal(jobExitCode({ status: 'succeeded', exitCode: 0 }), 0)
    assert.equal(jobExitCode({ status: 'succeeded', exitCode: null }), 0)
    assert.equal(jobExitCode({ status: 'failed', exitCode: 3 }), 3)
    assert.equal(jobExitCode({ status: 'failed', exitCode: null }), 1)
    assert.equal(jobExitCode({ status: 'failed', exitCode: 0 }), 1)
    assert.equal(jobExitCode({ status: 'failed', exitCode: -9 }), 1)
    assert.equal(jobExitCode({ status: 'failed', exitCode: 300 }), 1)
    assert.equal(jobExitCode({ status: 'stopped', exitCode: null }), 1)
  })
})

describe('parsePositiveNumber', () => {
  it('takes positive numbers and names the flag otherwise', () => {
    assert.equal(parsePositiveNumber('--hours', '2.5'), 2.5)
    assert.equal(parsePositiveNumber('--hours', '720', 720), 720)
    for (const text of ['0', '-1', 'abc', '', ' ', 'Infinity', 'NaN'])
      assert.throws(
        () => parsePositiveNumber('--hours', text),
        (error: unknown) => {
          assert.ok(error instanceof UsageError)
          assert.match(error.message, /^--hours must be a positive number/)
          return true
        },
      )
    assert.throws(() => parsePositiveNumber('--hours', '721', 720), /--hours must be at most 720/)
  })
})
