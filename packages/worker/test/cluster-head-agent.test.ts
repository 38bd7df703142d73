import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import {
  createRayNode,
  parseClusterHeadEvent,
  startClusterHeadAgent,
  type ClusterHeadAgent,
  type RayJobStatus,
  type RayNode,
  type RaySubmission,
} from '@gpumesh/worker'

// The cluster head agent against a real single-node Ray head in a throwaway network namespace: a job with a
// working dir, a failing job and a stopped job, all submitted at once, then hostile tarballs. Ray and the
// agent both run as nobody, as on a supplier's machine; the agent must run as Ray's own user, since a driver
// cannot use another user's raylet socket or log directories.

const python = new URL('../../../.venv/bin/python', import.meta.url).pathname
const usable = process.getuid?.() === 0 && existsSync(python)
const jobTimeoutMs = 120_000
const nobody = { uid: 65534, gid: 65534 }

describe('cluster head agent events', () => {
  it('accepts well-formed events', () => {
    assert.deepEqual(parseClusterHeadEvent('{"event":"ready"}'), { event: 'ready' })
    assert.deepEqual(parseClusterHeadEvent('{"event":"nodes","alive":["100.64.0.1"]}'), {
      event: 'nodes',
      alive: ['100.64.0.1'],
    })
    assert.deepEqual(
      parseClusterHeadEvent('{"event":"job","jobId":"job_a","status":"failed","message":"m","exitCode":3}'),
      { event: 'job', jobId: 'job_a', status: 'failed', message: 'm', exitCode: 3 },
    )
    assert.deepEqual(parseClusterHeadEvent('{"event":"error","message":"m"}'), {
      event: 'error',
      message: 'm',
    })
  })

  it('refuses malformed ones', () => {
    for (const line of [
      'not json',
      '[]',
      'null',
      '{"event":"nodes","alive":[1]}',
      '{"event":"log","jobId":"job_a"}',
      '{"event":"job","jobId":"job_a","status":"FAILED","message":"m","exitCode":3}',
      '{"event":"job","jobId":"job_a","status":"failed","message":"m","exitCode":3.5}',
      '{"event":"error","jobId":7,"message":"m"}',
      '{"event":"surprise"}',
    ])
      assert.equal(parseClusterHeadEvent(line), undefined, line)
  })
})

describe('cluster head agent that cannot start', () => {
  it('rejects ready and reports the exit', async () => {
    const workDir = mkdtempSync(join(tmpdir(), 'gpumesh-head-'))
    const exits: string[] = []
    const errors: string[] = []
    try {
      const agent = startClusterHeadAgent(
        {
          pythonPath: python,
          namespace: `gmh-missing-${randomBytes(3).toString('hex')}`,
          headAddress: '127.0.0.1',
          gcsPort: 6379,
          workDir,
        },
        {
          onNodes: () => {},
          onJobLog: () => {},
          onJobStatus: () => {},
          onError: (message) => errors.push(message),
          onExit: (detail) => exits.push(detail),
        },
      )
      await assert.rejects(agent.ready, /before it was ready/)
      assert.equal(exits.length, 1)
      agent.submit('job_late', 'true')
      assert.deepEqual(errors, ['cluster head agent is not running'])
      await agent.close()
    } finally {
      rmSync(workDir, { recursive: true, force: true })
    }
  })
})

type JobRecord = {
  submittedAtMs: number
  statuses: { status: RayJobStatus; message: string; exitCode: number | null; atMs: number }[]
  log: string
  errors: string[]
}

describe(
  'cluster head agent on a real Ray head',
  { skip: usable ? false : 'needs root and .venv with Ray (scripts/setup-python.sh)' },
  () => {
    const runId = randomBytes(3).toString('hex')
    const namespace = `gmh-${runId}`
    // Short: Ray's unix socket paths must stay under 108 bytes.
    const rayTempDir = `/tmp/gmh-${runId}`
    // Made in before(), so a skipped or filtered run leaves nothing behind.
    let scratch = ''
    let workDir = ''
    let namespaceCreated = false
    let rayNode: RayNode | undefined
    let agent: ClusterHeadAgent | undefined
    const nodeSets: string[][] = []
    const agentErrors: string[] = []
    const unexpectedExits: string[] = []
    const jobs = new Map<string, JobRecord>()
    let readyMs = 0

    const job = (jobId: string): JobRecord => {
      let record = jobs.get(jobId)
      if (!record) {
        record = { submittedAtMs: 0, statuses: [], log: '', errors: [] }
        jobs.set(jobId, record)
      }
      return record
    }
    const submit = (jobId: string, entrypoint: string, workingDirTarGz?: Buffer, ray?: RaySubmission) => {
      job(jobId).submittedAtMs = performance.now()
      agent!.submit(jobId, entrypoint, workingDirTarGz, ray)
    }
    /** A directory zipped by Ray's own packaging code, as Ray's job client uploads it, with its URI. */
    const rayPackage = (name: string, files: Record<string, string>) => {
      const source = join(scratch, `pkg-${name}`)
      for (const [path, content] of Object.entries(files)) {
        mkdirSync(dirname(join(source, path)), { recursive: true })
        writeFileSync(join(source, path), content)
      }
      const zip = join(scratch, `${name}.zip`)
      const uri = execFileSync(
        python,
        [
          '-c',
          [
            'import sys',
            'from pathlib import Path',
            'from ray._private.runtime_env.packaging import create_package, get_uri_for_directory',
            'uri = get_uri_for_directory(sys.argv[1], include_gitignore=True)',
            'create_package(sys.argv[1], Path(sys.argv[2]), include_gitignore=True)',
            'print(uri)',
          ].join('\n'),
          source,
          zip,
        ],
        { encoding: 'utf8' },
      ).trim()
      return { uri, zipBase64: readFileSync(zip).toString('base64') }
    }
    const waitFor = async <T>(what: string, probe: () => T | undefined): Promise<T> => {
      const deadline = Date.now() + jobTimeoutMs
      for (;;) {
        const value = probe()
        if (value !== undefined) return value
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
    }
    const finalStatus = (jobId: string) =>
      waitFor(`${jobId} to end`, () =>
        job(jobId).statuses.find((entry) => ['succeeded', 'failed', 'stopped'].includes(entry.status)),
      )
    const report = (jobId: string) => {
      const record = job(jobId)
      const since = (status: RayJobStatus) => {
        const entry = record.statuses.find((candidate) => candidate.status === status)
        return entry ? `${Math.round(entry.atMs - record.submittedAtMs)} ms` : 'not seen'
      }
      const steps = ['pending', 'running', 'succeeded', 'failed', 'stopped'] as const
      process.stdout.write(`# ${jobId}: ${steps.map((status) => `${status} ${since(status)}`).join(', ')}\n`)
    }
    /** A gzipped tar of `files`, made by the system's tar as a supplier's tooling would. */
    const tarball = (name: string, files: Record<string, string>, extraMembers: readonly string[] = []) => {
      const source = join(scratch, `src-${name}`, 'dir')
      for (const [path, content] of Object.entries(files)) {
        mkdirSync(dirname(join(source, path)), { recursive: true })
        writeFileSync(join(source, path), content)
      }
      const archive = join(scratch, `${name}.tar.gz`)
      // -P keeps member names such as ../escape as given (tar strips them otherwise).
      execFileSync('tar', ['-czPf', archive, '-C', source, ...Object.keys(files), ...extraMembers])
      return readFileSync(archive)
    }

    before(async () => {
      scratch = mkdtempSync(join(tmpdir(), 'gpumesh-head-'))
      // The agent, as nobody, must reach its work dir inside.
      chmodSync(scratch, 0o755)
      workDir = join(scratch, 'work')
      execFileSync('ip', ['netns', 'add', namespace])
      namespaceCreated = true
      execFileSync('ip', ['-n', namespace, 'link', 'set', 'lo', 'up'])
      // The agent's configured index, as a supplier sets it: here the machine's local one (the namespace
      // has no other network).
      process.env['GPUMESH_PIP_INDEX_URL'] ??= 'file:///opt/pypi/simple'
      rayNode = createRayNode({
        pythonPath: python,
        namespace,
        nodeAddress: '127.0.0.1',
        gcsPort: 6379,
        numCpus: 2,
        numGpus: 0,
        tempDir: rayTempDir,
        objectStoreMemoryBytes: 100 * 1024 * 1024,
        runAs: nobody,
      })
      await rayNode.start()
      const started = performance.now()
      agent = startClusterHeadAgent(
        { pythonPath: python, namespace, headAddress: '127.0.0.1', gcsPort: 6379, workDir, runAs: nobody },
        {
          onNodes: (alive) => nodeSets.push([...alive]),
          onJobLog: (jobId, text) => {
            job(jobId).log += text
          },
          onJobStatus: (jobId, status, message, exitCode) =>
            job(jobId).statuses.push({ status, message, exitCode, atMs: performance.now() }),
          onError: (message, jobId) => (jobId ? job(jobId).errors.push(message) : agentErrors.push(message)),
          onExit: (detail) => unexpectedExits.push(detail),
        },
      )
      await agent.ready
      readyMs = performance.now() - started
      process.stdout.write(`# agent ready after ${Math.round(readyMs)} ms\n`)

      // All at once: the agent follows concurrent jobs.
      submit(
        'job_ok',
        'python train.py',
        tarball('ok', {
          'train.py': [
            'import ray',
            'ray.init()',
            '@ray.remote',
            'def greet(name):',
            '    import helper  # the working dir travels with the job to Ray workers too',
            '    return helper.greet(name)',
            'print(ray.get(greet.remote("task")), flush=True)',
          ].join('\n'),
          'lib/helper.py': 'def greet(name):\n    return f"gpumesh says hello from the {name}"\n',
          'helper.py': 'from lib.helper import greet\n',
        }),
      )
      submit('job_fail', 'python -c "import sys; sys.exit(3)"')
      submit('job_sleep', 'sleep 600')
    })

    after(async () => {
      const steps: [string, () => unknown][] = [
        ['close the agent', () => agent?.close()],
        ['stop Ray', () => rayNode?.stop()],
        ['delete the namespace', () => namespaceCreated && execFileSync('ip', ['netns', 'del', namespace])],
        ['remove the scratch dir', () => scratch && rmSync(scratch, { recursive: true, force: true })],
        ['remove the Ray temp dir', () => rmSync(rayTempDir, { recursive: true, force: true })],
      ]
      for (const [what, step] of steps) {
        try {
          await step()
        } catch (error) {
          process.stdout.write(`# cleanup: could not ${what}: ${String(error)}\n`)
        }
      }
    })

    it('reports the head among the alive nodes', async () => {
      const alive = await waitFor('a nodes event', () => nodeSets.at(-1))
      assert.ok(alive.includes('127.0.0.1'), `alive: ${alive.join(', ')}`)
    })

    it('runs a job whose working dir holds a module imported in a Ray task', async () => {
      const final = await finalStatus('job_ok')
      report('job_ok')
      const record = job('job_ok')
      assert.equal(final.status, 'succeeded', `${final.message}\n${record.log}`)
      assert.equal(final.exitCode, 0)
      assert.match(record.log, /gpumesh says hello from the task/)
      assert.deepEqual(record.errors, [])
      // Ray's own order, each status once.
      const order = record.statuses.map((entry) => entry.status)
      assert.deepEqual(
        order,
        ['pending', 'running', 'succeeded'].filter((status) => order.includes(status as RayJobStatus)),
      )
    })

    it('reports a failing job with its exit code', async () => {
      const final = await finalStatus('job_fail')
      report('job_fail')
      assert.equal(final.status, 'failed')
      assert.equal(final.exitCode, 3)
    })

    it('stops a running job', async () => {
      await waitFor('job_sleep to run', () =>
        job('job_sleep').statuses.find((entry) => entry.status === 'running'),
      )
      const stopAtMs = performance.now()
      agent!.stop('job_sleep')
      const final = await finalStatus('job_sleep')
      report('job_sleep')
      process.stdout.write(`# job_sleep: stop → stopped ${Math.round(final.atMs - stopAtMs)} ms\n`)
      assert.equal(final.status, 'stopped')
      assert.deepEqual(job('job_sleep').errors, [])
    })

    it('runs Ray submissions: env_vars, a working_dir zip, pip from the configured index, reused', async () => {
      const workingDir = rayPackage('rayjob', {
        'main.py': [
          'import os, sys, termcolor',
          'print("seed", os.environ["SEED"], "prefix", sys.prefix.startswith(os.environ["HOME"]), flush=True)',
          'print("termcolor from", termcolor.__file__, flush=True)',
        ].join('\n'),
      })
      const pip = { packages: ['termcolor'], pip_check: false }
      const runtimeEnv = { working_dir: workingDir.uri, env_vars: { SEED: '7' }, pip }
      const startedAt = performance.now()
      submit('job_ray_pip', 'python main.py', undefined, { runtimeEnv, packages: [workingDir] })
      const first = await finalStatus('job_ray_pip')
      const firstMs = first.atMs - startedAt
      report('job_ray_pip')
      assert.equal(first.status, 'succeeded', `${first.message}\n${job('job_ray_pip').log}`)
      assert.match(
        job('job_ray_pip').log,
        /seed 7 prefix True/,
        'the driver runs in a virtualenv in the sandbox',
      )
      const installedAt = /termcolor from (\S+)/.exec(job('job_ray_pip').log)?.[1] ?? ''
      assert.ok(installedAt.startsWith(rayTempDir), `installed inside the node's temp dir: ${installedAt}`)

      // The same requirements again: Ray's virtualenv for them is reused, nothing installs twice.
      const againAt = performance.now()
      submit('job_ray_pip_again', 'python main.py', undefined, { runtimeEnv, packages: [workingDir] })
      const second = await finalStatus('job_ray_pip_again')
      const secondMs = second.atMs - againAt
      process.stdout.write(
        `# pip job: first ${Math.round(firstMs)} ms, same requirements again ${Math.round(secondMs)} ms\n`,
      )
      assert.equal(second.status, 'succeeded', second.message)
      assert.equal(/termcolor from (\S+)/.exec(job('job_ray_pip_again').log)?.[1], installedAt)

      submit('job_ray_badpip', 'python -c "print(1)"', undefined, {
        runtimeEnv: { pip: ['gpumesh-no-such-package==9.9.9'] },
      })
      const bad = await finalStatus('job_ray_badpip')
      assert.equal(bad.status, 'failed')
      assert.match(bad.message, /gpumesh-no-such-package/, "pip's own message")
      assert.match(bad.message, /No matching distribution|Could not find a version/, bad.message)
    })

    it('refuses working dirs that reach outside themselves, writing nothing', async () => {
      const escapee = join(scratch, 'src-evil', 'escape')
      mkdirSync(dirname(escapee), { recursive: true })
      writeFileSync(escapee, 'should stay put\n')
      submit(
        'job_evil',
        'python train.py',
        tarball('evil', { 'train.py': 'print("never")\n' }, ['../escape']),
      )
      const linkSource = join(scratch, 'src-link')
      mkdirSync(linkSource)
      symlinkSync('/etc', join(linkSource, 'etc'))
      execFileSync('tar', ['-czf', join(scratch, 'link.tar.gz'), '-C', linkSource, 'etc'])
      submit('job_link', 'python train.py', readFileSync(join(scratch, 'link.tar.gz')))
      submit('job_garbage', 'python train.py', Buffer.from('not a tarball'))
      const refusal = (jobId: string) => waitFor(`${jobId} refused`, () => job(jobId).errors[0])
      assert.match(await refusal('job_evil'), /escapes the working dir/)
      assert.match(await refusal('job_link'), /not a regular file or directory/)
      assert.match(await refusal('job_garbage'), /submit failed/)
      for (const jobId of ['job_evil', 'job_link', 'job_garbage']) {
        assert.equal(existsSync(join(workDir, jobId)), false, jobId)
        assert.deepEqual(job(jobId).statuses, [], jobId)
      }
      assert.equal(existsSync(join(workDir, 'escape')), false)
    })

    it('answers a stop for an unknown job with an error and keeps running', async () => {
      agent!.stop('job_nobody_submitted')
      const [message] = await waitFor('the error', () =>
        job('job_nobody_submitted').errors.length > 0 ? job('job_nobody_submitted').errors : undefined,
      )
      assert.match(message!, /unknown job/)
      submit('job_after', 'python -c "print(\'still here\')"')
      const final = await finalStatus('job_after')
      assert.equal(final.status, 'succeeded')
      assert.match(job('job_after').log, /still here/)
    })

    it('exits on close, leaving running jobs to Ray', async () => {
      // A sleep no other test on this machine runs, to find its process by.
      const entrypoint = `sleep ${100_000 + parseInt(runId, 16)}`
      submit('job_outlives', entrypoint)
      await waitFor('job_outlives to run', () =>
        job('job_outlives').statuses.find((entry) => entry.status === 'running'),
      )
      const started = performance.now()
      await agent!.close()
      process.stdout.write(`# agent closed after ${Math.round(performance.now() - started)} ms\n`)
      await agent!.close()
      assert.deepEqual(unexpectedExits, [])
      assert.deepEqual(agentErrors, [])
      const processes = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).split('\n')
      assert.ok(
        processes.some((line) => line.trim() === entrypoint),
        'the job still runs',
      )
    })
  },
)
