import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { GpumeshApiError, GpumeshClient } from '@gpumesh/sdk'

// The cluster and job methods: the requests they make, and long polls that outlive the usual timeout.

type Seen = { method: string; url: string; body: string }
const seen: Seen[] = []
/** The server holds requests about cls_slow this long before answering. */
const answerDelayMs = 300
const server = createServer((request, response) => {
  let body = ''
  request.on('data', (chunk: Buffer) => (body += chunk.toString()))
  request.on('end', () => {
    seen.push({ method: request.method ?? '', url: request.url ?? '', body })
    const delayMs = request.url?.includes('cls_slow') ? answerDelayMs : 0
    setTimeout(() => {
      const status = request.url?.includes('missing') ? 404 : 200
      response.writeHead(status, { 'content-type': 'application/json' })
      response.end(
        JSON.stringify(status === 404 ? { code: 'GPUMESH_ERR_NOT_FOUND', message: 'no such cluster' } : {}),
      )
    }, delayMs)
  })
})
let baseUrl: string

before(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})
after(() => server.close())

describe('GpumeshClient clusters and jobs', () => {
  it('calls each route', async () => {
    const client = new GpumeshClient({ baseUrl, apiKey: 'gpm_x' })
    seen.length = 0
    await client.createCluster({ gpus: 'A100:8', durationHours: 2 })
    await client.listClusters({ limit: 5 })
    await client.getCluster('cls_a')
    await client.terminateCluster('cls_a')
    await client.extendCluster('cls_a', 1.5)
    await client.clusterEvents('cls_a', { after: '17', limit: 10, waitMs: 0 })
    await client.submitJob('cls_a', { entrypoint: 'python train.py', workingDirTarGz: 'AAAA' })
    await client.listJobs('cls_a')
    await client.getJob('cls_a', 'job_b')
    await client.jobLogs('cls_a', 'job_b', { after: 3 })
    await client.stopJob('cls_a', 'job_b')
    assert.deepEqual(
      seen.map(({ method, url }) => `${method} ${url}`),
      [
        'POST /v1/clusters',
        'GET /v1/clusters?limit=5',
        'GET /v1/clusters/cls_a',
        'POST /v1/clusters/cls_a/terminate',
        'POST /v1/clusters/cls_a/extend',
        'GET /v1/clusters/cls_a/events?after=17&limit=10&waitMs=0',
        'POST /v1/clusters/cls_a/jobs',
        'GET /v1/clusters/cls_a/jobs',
        'GET /v1/clusters/cls_a/jobs/job_b',
        'GET /v1/clusters/cls_a/jobs/job_b/logs?after=3',
        'POST /v1/clusters/cls_a/jobs/job_b/stop',
      ],
    )
    assert.deepEqual(JSON.parse(seen[0]!.body), { gpus: 'A100:8', durationHours: 2 })
    assert.deepEqual(JSON.parse(seen[4]!.body), { hours: 1.5 })
    assert.deepEqual(JSON.parse(seen[6]!.body), { entrypoint: 'python train.py', workingDirTarGz: 'AAAA' })
  })

  it('escapes ids in paths', async () => {
    seen.length = 0
    await new GpumeshClient({ baseUrl }).getJob('cls_a/../x', 'job b')
    assert.equal(seen[0]!.url, '/v1/clusters/cls_a%2F..%2Fx/jobs/job%20b')
  })

  it('gives a long poll its wait on top of the usual timeout', async () => {
    const client = new GpumeshClient({ baseUrl, timeoutMs: answerDelayMs / 3 })
    await assert.rejects(client.getCluster('cls_slow'), { name: 'TimeoutError' })
    await assert.rejects(client.clusterEvents('cls_slow', { waitMs: 0 }), { name: 'TimeoutError' })
    // The server answers no later than it would have to for a wait this long.
    const waitMs = 10 * answerDelayMs
    assert.deepEqual(await client.clusterEvents('cls_slow', { waitMs }), {})
    assert.deepEqual(await client.jobLogs('cls_slow', 'job_b', { waitMs }), {})
  })

  it('throws the error code', async () => {
    await assert.rejects(new GpumeshClient({ baseUrl }).getCluster('missing'), (error: unknown) => {
      assert.ok(error instanceof GpumeshApiError)
      assert.equal(error.code, 'GPUMESH_ERR_NOT_FOUND')
      assert.equal(error.status, 404)
      return true
    })
  })
})
