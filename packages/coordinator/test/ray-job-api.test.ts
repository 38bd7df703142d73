import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Coordinator } from '@gpumesh/coordinator'
import type { Store } from '@gpumesh/store'
import {
  apiCaller,
  eventually,
  simulatedWorker,
  startTestCoordinator,
  storeBackends,
  type SimulatedWorker,
} from '@gpumesh/testing'
import WebSocket from 'ws'

// Ray's job submission API served by the coordinator (/v1/clusters/:id/ray/api/...), over real HTTP and a
// real WebSocket, against a cluster of simulated workers (test/e2e/ray-job-api.test.ts drives it with Ray's
// own CLI on real Ray). Requests here are shaped as Ray 2.58's JobSubmissionClient sends them.

/** An empty zip archive (end-of-central-directory record only): what the package routes accept as a zip. */
const emptyZip = Buffer.from('504b0506' + '00'.repeat(18), 'hex')
const packageName = '_ray_pkg_0123456789abcdef.zip'

for (const backend of storeBackends) {
  describe(`Ray's job API through the coordinator on ${backend.name}`, () => {
    let store: Store
    let cleanup: () => Promise<void>
    let coordinator: Coordinator
    let baseUrl: string
    let renterKey: string
    let otherRenterKey: string
    let clusterId: string
    let ray: string
    const workers: SimulatedWorker[] = []
    const call = apiCaller(() => baseUrl)
    const account = async (name: string, roles: string[]) =>
      (await call('POST', '/v1/accounts', undefined, { name, roles })).body.apiKey.key as string
    const putPackage = (key: string, body: Buffer, name = packageName) =>
      fetch(`${baseUrl}${ray}/api/packages/gcs/${name}`, {
        method: 'PUT',
        // Ray's client (requests with data=bytes) sends no content type at all.
        headers: { authorization: `Bearer ${key}` },
        body,
      })
    const finished = (jobId: string) =>
      eventually(async () => {
        const details = (await call('GET', `${ray}/api/jobs/${jobId}`, renterKey)).body
        return ['SUCCEEDED', 'FAILED', 'STOPPED'].includes(details.status) && details
      }, `job ${jobId} to end`)

    before(async () => {
      ;({ store, cleanup } = await backend.open())
      coordinator = await startTestCoordinator(store)
      baseUrl = await coordinator.listen()
      const supplierKey = await account('supplier', ['supplier'])
      renterKey = await account('renter', ['renter'])
      otherRenterKey = await account('other', ['renter'])
      for (let index = 0; index < 2; index += 1) workers.push(await simulatedWorker(baseUrl, supplierKey))
      await eventually(
        async () => (await call('GET', '/v1/offers?region=sim&limit=50')).body.total === 2,
        'two machines on offer',
      )
      const created = await call('POST', '/v1/clusters', renterKey, {
        nodes: 2,
        gpuModel: 'cpu',
        verifiedOnly: false,
      })
      assert.equal(created.status, 201, JSON.stringify(created.body))
      clusterId = created.body.id
      ray = `/v1/clusters/${clusterId}/ray`
      await eventually(
        async () => (await call('GET', `/v1/clusters/${clusterId}`, renterKey)).body.state === 'ready',
        'cluster ready',
      )
    })

    after(async () => {
      for (const worker of workers) worker.close()
      await coordinator?.stop()
      await cleanup?.()
    })

    it("answers Ray's version check only for the cluster's own account", async () => {
      const version = await call('GET', `${ray}/api/version`, renterKey)
      assert.equal(version.status, 200)
      assert.equal(version.body.version, '2')
      assert.equal(version.body.ray_version, '2.58.0')
      assert.equal((await call('GET', `${ray}/api/version`)).status, 401)
      assert.equal((await call('GET', `${ray}/api/version`, otherRenterKey)).status, 404)
      assert.equal((await call('GET', `/v1/clusters/cls_missing/ray/api/version`, renterKey)).status, 404)
    })

    it('submits a job with env_vars and an uploaded working_dir; gpumesh lists it as its own', async () => {
      assert.equal((await call('GET', `${ray}/api/packages/gcs/${packageName}`, renterKey)).status, 404)
      assert.equal((await putPackage(otherRenterKey, emptyZip)).status, 404, "another account's key")
      const notZip = await putPackage(renterKey, Buffer.from('not a zip'))
      assert.equal(notZip.status, 400)
      assert.match(((await notZip.json()) as { message: string }).message, /zip/)
      assert.equal((await putPackage(renterKey, emptyZip)).status, 200)
      assert.equal((await call('GET', `${ray}/api/packages/gcs/${packageName}`, renterKey)).status, 200)
      assert.equal((await call('GET', `${ray}/api/packages/gcs/${packageName}`, otherRenterKey)).status, 404)

      const runtimeEnv = {
        working_dir: `gcs://${packageName}`,
        env_vars: { SEED: '7', MODE: 'fast' },
        _ray_commit: 'cec0a091b12675bbf101cf8a350c8706107baee1',
      }
      const submitted = await call('POST', `${ray}/api/jobs/`, renterKey, {
        entrypoint: 'python train.py',
        runtime_env: runtimeEnv,
        metadata: { team: 'vision' },
      })
      assert.equal(submitted.status, 200, JSON.stringify(submitted.body))
      const jobId = submitted.body.submission_id as string
      assert.equal(submitted.body.job_id, jobId)
      assert.match(jobId, /^job_/)

      const details = await finished(jobId)
      assert.equal(details.status, 'SUCCEEDED')
      assert.equal(details.type, 'SUBMISSION')
      assert.equal(details.entrypoint, 'python train.py')
      assert.equal(details.driver_exit_code, 0)
      assert.deepEqual(details.runtime_env, runtimeEnv)
      assert.deepEqual(details.metadata, { team: 'vision' })
      assert.ok(details.end_time >= details.start_time)

      const logs = await call('GET', `${ray}/api/jobs/${jobId}/logs`, renterKey)
      assert.equal(logs.status, 200)
      assert.equal(logs.body.logs, `ran python train.py\nenv MODE,SEED packages gcs://${packageName}\n`)

      const listed = (await call('GET', `${ray}/api/jobs/`, renterKey)).body as any[]
      assert.ok(listed.some((job) => job.submission_id === jobId && job.status === 'SUCCEEDED'))
      const own = (await call('GET', `/v1/clusters/${clusterId}/jobs`, renterKey)).body.jobs as any[]
      assert.ok(
        own.some((job) => job.id === jobId && job.status === 'succeeded'),
        'the same job in gpumesh',
      )

      for (const path of [`/api/jobs/${jobId}`, `/api/jobs/${jobId}/logs`, '/api/jobs/'])
        assert.equal((await call('GET', `${ray}${path}`, otherRenterKey)).status, 404, path)
      assert.equal((await call('POST', `${ray}/api/jobs/${jobId}/stop`, otherRenterKey)).status, 404)
      assert.equal((await call('DELETE', `${ray}/api/jobs/${jobId}`, otherRenterKey)).status, 404)
    })

    it('refuses bad submissions naming the field, and records nothing', async () => {
      const before = (await call('GET', `${ray}/api/jobs/`, renterKey)).body.length
      const cases: [unknown, RegExp][] = [
        [{ entrypoint: 'python x.py', runtime_env: { conda: 'env' } }, /runtime_env\.conda/],
        [{ entrypoint: 'python x.py', runtime_env: { container: {} } }, /runtime_env\.container/],
        [{ entrypoint: 'python x.py', runtime_env: { working_dir: 's3://bucket/x.zip' } }, /working_dir/],
        [
          { entrypoint: 'python x.py', runtime_env: { working_dir: 'gcs://_ray_pkg_ffffffffffffffff.zip' } },
          /runtime_env\.working_dir: package gcs:\/\/_ray_pkg_ffffffffffffffff\.zip was not uploaded/,
        ],
        [{ entrypoint: 'python x.py', runtime_env: { env_vars: { 'BAD-NAME': '1' } } }, /env_vars/],
        [{ entrypoint: 'python x.py', submission_id: 'mine' }, /submission_id/],
        [{ entrypoint: 'python x.py', entrypoint_label_selector: { a: 'b' } }, /entrypoint_label_selector/],
        [{ entrypoint: '' }, /entrypoint/],
      ]
      for (const [body, message] of cases) {
        const reply = await call('POST', `${ray}/api/jobs/`, renterKey, body)
        assert.equal(reply.status, 400, JSON.stringify(body))
        assert.equal(reply.body.code, 'GPUMESH_ERR_VALIDATION')
        assert.match(reply.body.message, message, JSON.stringify(reply.body))
      }
      assert.equal((await call('GET', `${ray}/api/jobs/`, renterKey)).body.length, before)
    })

    it('follows output over the WebSocket, stops a running job, then deletes it', async () => {
      const submitted = await call('POST', `${ray}/api/jobs/`, renterKey, {
        entrypoint: 'sleep 600',
        runtime_env: { pip: { packages: ['six'], pip_check: false } },
      })
      assert.equal(submitted.status, 200, JSON.stringify(submitted.body))
      const jobId = submitted.body.submission_id as string
      await eventually(
        async () => (await call('GET', `${ray}/api/jobs/${jobId}`, renterKey)).body.status === 'RUNNING',
        'running',
      )
      const refused = await new Promise<number>((resolve) => {
        const socket = new WebSocket(`${baseUrl.replace('http', 'ws')}${ray}/api/jobs/${jobId}/logs/tail`, {
          headers: { authorization: `Bearer ${otherRenterKey}` },
        })
        socket.on('unexpected-response', (_request, response) => resolve(response.statusCode ?? 0))
        socket.on('open', () => resolve(101))
      })
      assert.equal(refused, 404, "another account's key is refused before the upgrade")

      const frames: string[] = []
      const socket = new WebSocket(`${baseUrl.replace('http', 'ws')}${ray}/api/jobs/${jobId}/logs/tail`, {
        headers: { authorization: `Bearer ${renterKey}` },
      })
      const closed = new Promise<number>((resolve) => socket.on('close', (code) => resolve(code)))
      socket.on('message', (data) => frames.push(String(data)))
      await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject))
      await eventually(() => frames.length >= 2, 'the running job output')
      assert.equal(
        (await call('DELETE', `${ray}/api/jobs/${jobId}`, renterKey)).status,
        409,
        'a running job is not deleted',
      )

      const stopped = await call('POST', `${ray}/api/jobs/${jobId}/stop`, renterKey)
      assert.deepEqual(stopped.body, { stopped: true })
      assert.equal(await closed, 1000, 'a normal close once the job ended')
      assert.deepEqual(frames, ['ran sleep 600\n', 'env  packages \n'])
      assert.equal((await finished(jobId)).status, 'STOPPED')
      assert.deepEqual((await call('POST', `${ray}/api/jobs/${jobId}/stop`, renterKey)).body, {
        stopped: false,
      })

      assert.deepEqual((await call('DELETE', `${ray}/api/jobs/${jobId}`, renterKey)).body, { deleted: true })
      assert.equal((await call('GET', `${ray}/api/jobs/${jobId}`, renterKey)).status, 404)
      assert.equal((await call('GET', `/v1/clusters/${clusterId}/jobs/${jobId}`, renterKey)).status, 404)
    })

    it('finds a job by its id alone, for its own account only (issue 25 item 5: job logs without --cluster)', async () => {
      const [job] = (await call('GET', `/v1/clusters/${clusterId}/jobs`, renterKey)).body.jobs
      const found = await call('GET', `/v1/jobs/${job.id}`, renterKey)
      assert.equal(found.status, 200)
      assert.deepEqual(found.body, job)
      const stranger = await call('GET', `/v1/jobs/${job.id}`, otherRenterKey)
      assert.equal(stranger.status, 404)
      assert.equal(stranger.body.message, `no job ${job.id}`, 'without naming its cluster')
      assert.equal((await call('GET', '/v1/jobs/job_missing', renterKey)).status, 404)
    })
  })
}
