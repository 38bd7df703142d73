import assert from 'node:assert/strict'
import { spawnSync, type ChildProcess } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { after, before, describe, it } from 'node:test'
import {
  createTestNetwork,
  eventually,
  hostApi,
  startCoordinatorOnHost,
  type HostApi,
  type TestHost,
  type TestNetwork,
  workerStartArgs,
} from '@gpumesh/testing'
import { removeClusterNodesOf } from '@gpumesh/worker'

// Ray's own job CLI against a gpumesh cluster, end to end: a coordinator and two worker agents on test hosts
// make a 2-node CPU cluster (real wireguard-go, real Ray); the released `ray` CLI of the managed venv, with
// the renter's API key in a header, submits a job with a working dir and env_vars through the coordinator,
// follows its output, and reads its status, its logs and the job list; a second job is stopped. The same
// jobs are gpumesh's own (`gpumesh job ls`), and another account's key gets 404.

const repoRoot = resolve(import.meta.dirname, '../..')
const cli = join(repoRoot, 'packages/cli/src/main.ts')
const python = join(repoRoot, '.venv/bin/python')
const usable = process.getuid?.() === 0 && existsSync(python)

const mainScript = `
import os, ray
ray.init(logging_level='ERROR')

@ray.remote(num_cpus=1)
def where():
    import helper  # the working dir travels to every node's workers
    return helper.tag(ray.util.get_node_ip_address())

print('SEED', os.environ['SEED'], flush=True)
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
pinned = [where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n['NodeID'], soft=False)).remote()
          for n in ray.nodes() if n['Alive']]
print('NODES', sorted(ray.get(pinned, timeout=120)), flush=True)
`

describe(
  "Ray's job CLI through the coordinator",
  { skip: usable ? false : 'needs root and .venv with Ray (scripts/setup-python.sh)' },
  () => {
    let network: TestNetwork
    let coordinatorHost: TestHost
    let baseUrl: string
    let renterKey: string
    let otherKey: string
    let clusterId = ''
    let address = ''
    const workDir = mkdtempSync(join(tmpdir(), 'gpumesh-rayjobs-'))
    const workers: ChildProcess[] = []
    const deviceIds: string[] = []
    let api: HostApi

    /** The released `ray` CLI of the managed venv, run on the coordinator's host (the renter's machine). */
    const ray = (args: readonly string[], key = renterKey) => {
      // Not network.execIn: a job that runs takes longer than its 30 s, and both streams matter here.
      const run = spawnSync(
        'ip',
        [
          'netns',
          'exec',
          coordinatorHost.namespace,
          'env',
          `RAY_JOB_HEADERS=${JSON.stringify({ Authorization: `Bearer ${key}` })}`,
          `HOME=${workDir}`,
          join(repoRoot, '.venv/bin/ray'),
          'job',
          ...args,
        ],
        { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 },
      )
      return { code: run.status ?? -1, output: `${run.stdout}${run.stderr}` }
    }

    before(async () => {
      network = createTestNetwork(['coord', 'w0', 'w1'])
      coordinatorHost = network.hosts[0]!
      baseUrl = await startCoordinatorOnHost(network, coordinatorHost, {
        cli,
        workDir,
        settings: {
          heartbeatIntervalMs: 500,
          missedHeartbeatsBeforeOffline: 3,
          heartbeatFlushIntervalMs: 200,
          verificationEnabled: false,
          clusterProvisionTimeoutMs: 120_000,
          gmtPerUsd: '100',
          faucetMaxClaimGmt: '200',
        },
        startTimeoutMs: 120_000,
      })
      api = hostApi(network, coordinatorHost, baseUrl)
      const account = (name: string, roles: string[]) =>
        api('/v1/accounts', { method: 'POST', body: { name, roles } }).body.apiKey.key as string
      const supplierKey = account('supplier', ['supplier'])
      renterKey = account('renter', ['renter'])
      otherKey = account('other', ['renter'])
      // Clusters are paid from the wallet: the renter deposits from the development faucet the operator funds.
      const operatorKey = readFileSync(join(workDir, 'coordinator', 'operator.key'), 'utf8').trim()
      assert.equal(
        api('/v1/operator/faucet', { method: 'POST', key: operatorKey, body: { amountGmt: '1000' } }).status,
        200,
      )
      assert.equal(
        api('/v1/wallet/faucet', { method: 'POST', key: renterKey, body: { amountGmt: '200' } }).status,
        200,
      )
      for (const [index, host] of network.hosts.slice(1).entries()) {
        const token = api('/v1/enrollment-tokens', { method: 'POST', body: {}, key: supplierKey }).body.token
        const child = network.spawnIn(
          host,
          process.execPath,
          workerStartArgs({
            cli,
            coordinatorUrl: baseUrl,
            stateDir: join(workDir, `worker-${index}`),
            region: 'e2e',
            country: 'DE',
            pricePerGpuHour: '0.36',
            token,
            extraArgs: [
              '--speedtest-interval-ms',
              '0',
              '--cluster-node-cpus',
              '2',
              '--ray-object-store-memory-bytes',
              String(100 * 1024 * 1024),
              '--netns-mount-namespace',
              `/proc/${process.pid}/ns/mnt`,
            ],
          }),
          // The supplier's package index: the machine's local one (the cluster's namespace has no other).
          {
            env: { ...process.env, GPUMESH_PIP_INDEX_URL: 'file:///opt/pypi/simple' },
            logPrefix: `worker-${index}`,
          },
        )
        workers.push(child)
      }
      await eventually(
        () => api('/v1/offers?region=e2e&limit=10').body.total === 2,
        'two machines on offer',
        60_000,
      )
      for (let index = 0; index < 2; index += 1)
        deviceIds.push(
          JSON.parse(readFileSync(join(workDir, `worker-${index}`, 'enrollment.json'), 'utf8')).deviceId,
        )
      const created = api('/v1/clusters', {
        method: 'POST',
        key: renterKey,
        body: { name: 'rayjobs', nodes: 2, gpuModel: 'cpu', verifiedOnly: false, durationHours: 1 },
      })
      assert.equal(created.status, 201, JSON.stringify(created.body))
      clusterId = created.body.id
      address = `${baseUrl}/v1/clusters/${clusterId}/ray`
      const startedAt = Date.now()
      await eventually(
        () => {
          const view = api(`/v1/clusters/${clusterId}`, { key: renterKey }).body
          assert.notEqual(view.state, 'failed', view.stateReason)
          return view.state === 'ready'
        },
        'the cluster to be ready',
        120_000,
      )
      process.stdout.write(`# cluster ready after ${Date.now() - startedAt} ms\n`)
    })

    after(async () => {
      for (const child of workers) child.kill('SIGKILL')
      for (const deviceId of deviceIds) await removeClusterNodesOf(deviceId, clusterId ? [clusterId] : [])
      await network?.destroy()
      rmSync(workDir, { recursive: true, force: true })
    })

    it('submits with `ray job submit`, follows the output, and reads status, logs and the list', () => {
      const jobDir = join(workDir, 'job')
      mkdirSync(jobDir)
      writeFileSync(join(jobDir, 'main.py'), mainScript)
      writeFileSync(join(jobDir, 'helper.py'), 'def tag(address):\n    return "node-" + address\n')
      chmodSync(workDir, 0o755)
      const startedAt = Date.now()
      const submitted = ray([
        'submit',
        '--address',
        address,
        '--working-dir',
        jobDir,
        '--runtime-env-json',
        JSON.stringify({ env_vars: { SEED: '7' } }),
        '--',
        'python',
        'main.py',
      ])
      process.stdout.write(`# ray job submit → exit after ${Date.now() - startedAt} ms\n`)
      assert.equal(submitted.code, 0, submitted.output)
      const jobId = /Job '(job_[A-Za-z0-9_-]+)' submitted successfully/.exec(submitted.output)?.[1]
      assert.ok(jobId, submitted.output)
      assert.match(submitted.output, /SEED 7/)
      const view = api(`/v1/clusters/${clusterId}`, { key: renterKey }).body
      const nodes = view.nodes.map((node: any) => `'node-${node.overlayAddress}'`).sort()
      assert.match(submitted.output, new RegExp(`NODES \\[${nodes.join(', ')}\\]`), 'tasks ran on both nodes')
      assert.match(submitted.output, new RegExp(`Job '${jobId}' succeeded`))

      const status = ray(['status', '--address', address, jobId!])
      assert.equal(status.code, 0, status.output)
      assert.match(status.output, new RegExp(`Job '${jobId}' succeeded`))
      const logs = ray(['logs', '--address', address, jobId!])
      assert.equal(logs.code, 0, logs.output)
      assert.match(logs.output, /SEED 7/)
      const listed = ray(['list', '--address', address])
      assert.equal(listed.code, 0, listed.output)
      assert.match(listed.output, new RegExp(jobId!))

      // The same job is gpumesh's own.
      const ls = network.execIn(coordinatorHost, 'env', [
        `GPUMESH_COORDINATOR=${baseUrl}`,
        `GPUMESH_API_KEY=${renterKey}`,
        process.execPath,
        cli,
        'job',
        'ls',
        '--cluster',
        clusterId,
        '--json',
      ])
      const own = JSON.parse(ls) as { id: string; status: string }[]
      assert.deepEqual(
        own.filter((job) => job.id === jobId).map((job) => job.status),
        ['succeeded'],
      )

      // Another account's key: the cluster does not exist for it.
      const foreign = ray(['status', '--address', address, jobId!], otherKey)
      assert.notEqual(foreign.code, 0)
      assert.match(foreign.output, /404/)
    })

    it('stops a running job with `ray job stop`', () => {
      const submitted = ray(['submit', '--address', address, '--no-wait', '--', 'sleep', '600'])
      assert.equal(submitted.code, 0, submitted.output)
      const jobId = /Job '(job_[A-Za-z0-9_-]+)' submitted successfully/.exec(submitted.output)?.[1]
      assert.ok(jobId, submitted.output)
      const stopped = ray(['stop', '--address', address, jobId!])
      assert.equal(stopped.code, 0, stopped.output)
      assert.match(stopped.output, /stopped/i)
      const status = ray(['status', '--address', address, jobId!])
      assert.match(status.output, /was stopped|STOPPED/, status.output)
    })
  },
)
