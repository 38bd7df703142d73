import { ClusterStateError, ValidationError, type Clock, type FieldIssue } from '@gpumesh/core'
import {
  ErrorReply,
  maxRayJobPackagesBytes,
  maxRayPackageBytes,
  RayJobDeleteResponse,
  RayJobDetails,
  RayJobLogsResponse,
  rayJobApiRayVersion,
  rayJobApiVersion,
  RayJobStopResponse,
  RayJobSubmitRequest,
  RayJobSubmitResponse,
  RayPackageName,
  RayVersionResponse,
  type RayEntrypointResources,
} from '@gpumesh/protocol'
import type { ClusterJobRecord, Store } from '@gpumesh/store'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import Type from 'typebox'
import { authenticate, requireRole } from '../principal.ts'
import type { App } from '../routes.ts'
import { isTerminalJob, type ClusterController } from './controller.ts'
import type { RayPackageCache } from './ray-packages.ts'

// Ray's job submission API for one cluster, at /v1/clusters/:clusterId/ray: the paths and JSON of Ray 2.58's
// dashboard job module, so `ray job submit --address <coordinator>/v1/clusters/ID/ray` and
// JobSubmissionClient work unchanged. There is no Ray dashboard on the head (its dependencies are not in the
// offline index); every call maps onto gpumesh's own cluster jobs, the same ones `gpumesh job ls` lists.
// The renter's API key comes in a header (RAY_JOB_HEADERS / --headers); another account's cluster is 404.

export type RayJobApiComponents = {
  readonly store: Store
  readonly clock: Clock
  readonly clusters: ClusterController
  readonly packages: RayPackageCache
}

export const rayJobApiPrefix = '/v1/clusters/:clusterId/ray'
/** Ray's GET /api/jobs/{id}/logs returns the whole log; past this much the rest is left out, and said so. */
export const maxRayLogsResponseChars = 16 * 1024 * 1024
/** How long one long poll of the log tail waits for new output before looking again. */
const tailPollMs = 10_000
const logPage = 1000

const errors = { 400: ErrorReply, 401: ErrorReply, 403: ErrorReply, 404: ErrorReply, 409: ErrorReply }
const secured = [{ apiKey: [] }]
const ClusterParams = Type.Object({ clusterId: Type.String({ maxLength: 64 }) })
const JobParams = Type.Object({
  clusterId: Type.String({ maxLength: 64 }),
  jobId: Type.String({ maxLength: 64 }),
})
const PackageParams = Type.Object({
  clusterId: Type.String({ maxLength: 64 }),
  protocol: Type.Literal('gcs'),
  packageName: RayPackageName,
})

const rayStatus = {
  pending: 'PENDING',
  running: 'RUNNING',
  succeeded: 'SUCCEEDED',
  failed: 'FAILED',
  stopped: 'STOPPED',
} as const

export function rayJobDetails(job: ClusterJobRecord): RayJobDetails {
  return {
    type: 'SUBMISSION',
    job_id: null,
    submission_id: job.id,
    driver_info: null,
    status: rayStatus[job.status],
    entrypoint: job.entrypoint,
    message: job.message,
    error_type: null,
    start_time: job.createdAtMs,
    end_time: job.finishedAtMs,
    metadata: JSON.parse(job.metadataJson) as Record<string, string>,
    runtime_env: JSON.parse(job.runtimeEnvJson) as Record<string, unknown>,
    driver_exit_code: job.exitCode,
  }
}

/** `gcs://_ray_pkg_<hash>.zip` -> `_ray_pkg_<hash>.zip` (the schema admits only that form). */
const packageNameOf = (uri: string) => uri.slice('gcs://'.length)

export function registerRayJobApi(app: App, components: RayJobApiComponents): void {
  const { store, clock, clusters, packages } = components
  const renter = async (request: FastifyRequest): Promise<string> => {
    const principal = await authenticate(request, store, clock)
    requireRole(principal, 'renter')
    return principal.accountId
  }
  /** The caller's account, once it is known to own the cluster (404 for anyone else's). */
  const owner = async (request: FastifyRequest, clusterId: string): Promise<string> => {
    const accountId = await renter(request)
    await clusters.get(accountId, clusterId)
    return accountId
  }

  app.get(
    `${rayJobApiPrefix}/api/version`,
    {
      schema: {
        tags: ['ray'],
        summary: "Ray's job API version (what Ray's job client checks first)",
        security: secured,
        params: ClusterParams,
        response: { 200: RayVersionResponse, ...errors },
      },
    },
    async (request) => {
      await owner(request, request.params.clusterId)
      return { version: rayJobApiVersion, ray_version: rayJobApiRayVersion, ray_commit: '' }
    },
  )

  app.register(async (plain) => {
    const scope = plain.withTypeProvider<TypeBoxTypeProvider>()
    // Ray's client PUTs the raw zip with no content type at all: take any body as bytes, in this scope only.
    scope.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: maxRayPackageBytes }, (_r, body, done) =>
      done(null, body),
    )
    scope.get(
      `${rayJobApiPrefix}/api/packages/:protocol/:packageName`,
      {
        schema: {
          tags: ['ray'],
          summary: 'Whether a working_dir or py_modules package was uploaded (200) or not (404)',
          security: secured,
          params: PackageParams,
          response: { 200: Type.Object({}), ...errors },
        },
      },
      async (request, reply) => {
        const { clusterId, packageName } = request.params
        await owner(request, clusterId)
        if (!packages.has(clusterId, packageName))
          return reply
            .status(404)
            .send({ code: 'GPUMESH_ERR_NOT_FOUND', message: `no package ${packageName} on ${clusterId}` })
        return {}
      },
    )
    scope.put(
      `${rayJobApiPrefix}/api/packages/:protocol/:packageName`,
      {
        bodyLimit: maxRayPackageBytes,
        schema: {
          tags: ['ray'],
          summary: "Upload a job's working_dir or py_modules package (the zip Ray's client makes)",
          security: secured,
          params: PackageParams,
          response: { 200: Type.Object({}), ...errors },
        },
      },
      async (request) => {
        const { clusterId, packageName } = request.params
        await owner(request, clusterId)
        const body = request.body
        if (!Buffer.isBuffer(body) || body.length === 0)
          throw new ValidationError([{ field: '(body)', message: 'must be the package zip' }], 'package')
        // A zip starts with a local file header (PK\3\4), or is the empty archive (PK\5\6).
        if (body[0] !== 0x50 || body[1] !== 0x4b)
          throw new ValidationError([{ field: '(body)', message: 'is not a zip archive' }], 'package')
        packages.put(clusterId, packageName, body)
        return {}
      },
    )
  })

  const submit = async (
    request: FastifyRequest<{ Params: { clusterId: string }; Body: RayJobSubmitRequest }>,
  ) => {
    const { clusterId } = request.params
    const accountId = await owner(request, clusterId)
    const body = request.body
    for (const field of ['submission_id', 'job_id'] as const) {
      if (body[field] !== undefined)
        throw new ValidationError(
          [{ field, message: 'gpumesh names every job itself; leave it out and use the id returned' }],
          'body',
        )
    }
    const runtimeEnv = body.runtime_env ?? {}
    const named = [
      ...(runtimeEnv.working_dir ? [{ field: 'runtime_env.working_dir', uri: runtimeEnv.working_dir }] : []),
      ...(runtimeEnv.py_modules ?? []).map((uri, index) => ({
        field: `runtime_env.py_modules[${index}]`,
        uri,
      })),
    ]
    const issues: FieldIssue[] = []
    const jobPackages: { uri: string; zipBase64: string }[] = []
    let total = 0
    for (const { field, uri } of named) {
      const bytes = packages.get(clusterId, packageNameOf(uri))
      if (!bytes) {
        issues.push({
          field,
          message: `package ${uri} was not uploaded to this cluster (PUT /api/packages first)`,
        })
        continue
      }
      if (jobPackages.some((known) => known.uri === uri)) continue
      total += bytes.length
      jobPackages.push({ uri, zipBase64: bytes.toString('base64') })
    }
    if (total > maxRayJobPackagesBytes)
      issues.push({
        field: 'runtime_env',
        message: `packages total more than ${maxRayJobPackagesBytes} bytes`,
      })
    if (issues.length > 0) throw new ValidationError(issues, 'body')
    const resources: RayEntrypointResources = {
      ...(body.entrypoint_num_cpus !== undefined ? { numCpus: body.entrypoint_num_cpus } : {}),
      ...(body.entrypoint_num_gpus !== undefined ? { numGpus: body.entrypoint_num_gpus } : {}),
      ...(body.entrypoint_memory !== undefined ? { memory: body.entrypoint_memory } : {}),
      ...(body.entrypoint_resources !== undefined ? { resources: body.entrypoint_resources } : {}),
    }
    const job = await clusters.submitJob(accountId, clusterId, {
      entrypoint: body.entrypoint,
      runtimeEnv,
      packages: jobPackages,
      metadata: body.metadata ?? {},
      ...(Object.keys(resources).length > 0 ? { entrypointResources: resources } : {}),
    })
    return { job_id: job.id, submission_id: job.id }
  }
  const submitSchema = {
    tags: ['ray'],
    summary: "Submit a job (Ray's JobSubmitRequest); it becomes one of the cluster's gpumesh jobs",
    security: secured,
    params: ClusterParams,
    body: RayJobSubmitRequest,
    response: { 200: RayJobSubmitResponse, ...errors },
  }
  const listSchema = {
    tags: ['ray'],
    summary: "The cluster's jobs as Ray's JobDetails, newest first",
    security: secured,
    params: ClusterParams,
    response: { 200: Type.Array(RayJobDetails), ...errors },
  }
  const list = async (request: FastifyRequest<{ Params: { clusterId: string } }>) => {
    const { clusterId } = request.params
    await owner(request, clusterId)
    return (await store.listJobs(clusterId, 100)).map(rayJobDetails)
  }
  // Ray's client uses the trailing slash; both spellings answer.
  for (const path of [`${rayJobApiPrefix}/api/jobs/`, `${rayJobApiPrefix}/api/jobs`]) {
    app.post(path, { schema: submitSchema }, submit)
    app.get(path, { schema: listSchema }, list)
  }

  const ownJob = async (request: FastifyRequest, clusterId: string, jobId: string) => {
    const accountId = await renter(request)
    return { accountId, job: await clusters.getJob(accountId, clusterId, jobId) }
  }

  app.get(
    `${rayJobApiPrefix}/api/jobs/:jobId`,
    {
      schema: {
        tags: ['ray'],
        summary: "One job as Ray's JobDetails",
        security: secured,
        params: JobParams,
        response: { 200: RayJobDetails, ...errors },
      },
    },
    async (request) =>
      rayJobDetails((await ownJob(request, request.params.clusterId, request.params.jobId)).job),
  )

  app.get(
    `${rayJobApiPrefix}/api/jobs/:jobId/logs`,
    {
      schema: {
        tags: ['ray'],
        summary: "The job's whole output so far",
        security: secured,
        params: JobParams,
        response: { 200: RayJobLogsResponse, ...errors },
      },
    },
    async (request) => {
      const { clusterId, jobId } = request.params
      await ownJob(request, clusterId, jobId)
      let logs = ''
      for (let after = 0; ;) {
        const chunks = await store.readJobLog(jobId, after, logPage)
        for (const chunk of chunks) logs += chunk.text
        if (logs.length > maxRayLogsResponseChars)
          return {
            logs: `${logs.slice(0, maxRayLogsResponseChars)}\n[gpumesh: output past ${maxRayLogsResponseChars} characters left out; gpumesh job logs shows all of it]\n`,
          }
        if (chunks.length < logPage) return { logs }
        after = chunks.at(-1)!.seq
      }
    },
  )

  // Ray's client follows a job's output over this WebSocket: one text frame per chunk, then a normal close
  // once the job has ended and all of its output was sent. The key is checked before the upgrade.
  const tailOwners = new WeakMap<FastifyRequest, string>()
  app.get(
    `${rayJobApiPrefix}/api/jobs/:jobId/logs/tail`,
    {
      websocket: true,
      schema: {
        tags: ['ray'],
        summary: "Follow the job's output (WebSocket)",
        params: JobParams,
        hide: true,
      },
      preValidation: async (request) => {
        const { clusterId, jobId } = request.params as { clusterId: string; jobId: string }
        tailOwners.set(request, (await ownJob(request, clusterId, jobId)).accountId)
      },
    },
    (socket, request) => {
      const { clusterId, jobId } = request.params
      const accountId = tailOwners.get(request)!
      let open = true
      socket.on('close', () => (open = false))
      socket.on('error', () => (open = false))
      void (async () => {
        let after = 0
        try {
          while (open) {
            const reply = await clusters.jobLogs(accountId, clusterId, jobId, after, 500, tailPollMs)
            for (const chunk of reply.chunks) {
              if (!open) return
              socket.send(chunk.text)
              after = chunk.seq
            }
            if (reply.complete) {
              socket.close(1000, 'job finished')
              return
            }
          }
        } catch (error) {
          request.log.warn({ err: error, jobId }, 'ray log tail ended')
          if (open) socket.close(1011, 'log tail failed')
        }
      })()
    },
  )

  app.post(
    `${rayJobApiPrefix}/api/jobs/:jobId/stop`,
    {
      schema: {
        tags: ['ray'],
        summary: 'Ask Ray to stop the job; stopped is false when it had already ended',
        security: secured,
        params: JobParams,
        response: { 200: RayJobStopResponse, ...errors },
      },
    },
    async (request) => {
      const { clusterId, jobId } = request.params
      const { accountId, job } = await ownJob(request, clusterId, jobId)
      if (isTerminalJob(job.status)) return { stopped: false }
      await clusters.stopJob(accountId, clusterId, jobId)
      return { stopped: true }
    },
  )

  app.delete(
    `${rayJobApiPrefix}/api/jobs/:jobId`,
    {
      schema: {
        tags: ['ray'],
        summary: 'Delete a finished job and its output',
        security: secured,
        params: JobParams,
        response: { 200: RayJobDeleteResponse, ...errors },
      },
    },
    async (request) => {
      const { clusterId, jobId } = request.params
      const { accountId } = await ownJob(request, clusterId, jobId)
      if (!(await clusters.deleteJob(accountId, clusterId, jobId)))
        throw new ClusterStateError(`job ${jobId} has not finished; stop it before deleting it`)
      return { deleted: true }
    },
  )
}
