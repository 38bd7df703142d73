import { NotFoundError, type Clock } from '@gpumesh/core'
import {
  ClusterClientConfig,
  ClusterClientList,
  ClusterEventList,
  ConnectClientBody,
  RemoveClientBody,
  ClusterEventsQuery,
  ClusterList,
  ClusterRequestBody,
  ClusterView,
  ErrorReply,
  ExtendClusterBody,
  JobList,
  JobLogQuery,
  JobLogReply,
  JobView,
  maxWorkingDirBytes,
  SubmitJobBody,
} from '@gpumesh/protocol'
import type { Store } from '@gpumesh/store'
import type { FastifyRequest } from 'fastify'
import Type from 'typebox'
import { authenticate, requireRole, type Principal } from '../principal.ts'
import type { App } from '../routes.ts'
import { jobView, type ClusterController } from './controller.ts'

// Clusters and their jobs, for renters. Every route is scoped to the caller's account: another account's
// cluster or job answers 404, exactly like one that does not exist.

export type ClusterRouteComponents = {
  readonly store: Store
  readonly clock: Clock
  readonly clusters: ClusterController
}

const errors = { 400: ErrorReply, 401: ErrorReply, 403: ErrorReply, 404: ErrorReply, 409: ErrorReply }
const secured = [{ apiKey: [] }]
const ClusterParams = Type.Object({ clusterId: Type.String({ maxLength: 64 }) })
const JobParams = Type.Object({
  clusterId: Type.String({ maxLength: 64 }),
  jobId: Type.String({ maxLength: 64 }),
})
const ListQuery = Type.Object(
  { limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 100 })) },
  { additionalProperties: false },
)
/** A job's working directory travels base64 in the JSON body. */
const jobBodyLimit = Math.ceil(maxWorkingDirBytes / 3) * 4 + 64 * 1024

export function registerClusterRoutes(app: App, components: ClusterRouteComponents): void {
  const { store, clock, clusters } = components
  const renter = async (request: FastifyRequest): Promise<Principal> => {
    const principal = await authenticate(request, store, clock)
    requireRole(principal, 'renter')
    return principal
  }

  app.post(
    '/v1/clusters',
    {
      schema: {
        tags: ['clusters'],
        summary: 'Create a cluster: reserve every node at once, then bring up the mesh and Ray',
        security: secured,
        body: ClusterRequestBody,
        response: { 201: ClusterView, ...errors },
      },
    },
    async (request, reply) => {
      const principal = await renter(request)
      return reply.status(201).send(await clusters.create(principal.accountId, request.body))
    },
  )

  app.get(
    '/v1/clusters',
    {
      schema: {
        tags: ['clusters'],
        summary: "The caller's clusters, newest first",
        security: secured,
        querystring: ListQuery,
        response: { 200: ClusterList, ...errors },
      },
    },
    async (request) => {
      const principal = await renter(request)
      return { clusters: await clusters.list(principal.accountId, request.query.limit ?? 100) }
    },
  )

  app.get(
    '/v1/clusters/:clusterId',
    {
      schema: {
        tags: ['clusters'],
        summary: 'A cluster with each node and its progress',
        security: secured,
        params: ClusterParams,
        response: { 200: ClusterView, ...errors },
      },
    },
    async (request) => clusters.get((await renter(request)).accountId, request.params.clusterId),
  )

  app.post(
    '/v1/clusters/:clusterId/terminate',
    {
      schema: {
        tags: ['clusters'],
        summary: 'Tear the cluster down and release its machines',
        security: secured,
        params: ClusterParams,
        response: { 200: ClusterView, ...errors },
      },
    },
    async (request) => clusters.terminate((await renter(request)).accountId, request.params.clusterId),
  )

  app.post(
    '/v1/clusters/:clusterId/extend',
    {
      schema: {
        tags: ['clusters'],
        summary: "Add hours to the cluster's duration",
        security: secured,
        params: ClusterParams,
        body: ExtendClusterBody,
        response: { 200: ClusterView, ...errors },
      },
    },
    async (request) =>
      clusters.extend((await renter(request)).accountId, request.params.clusterId, request.body.hours),
  )

  app.get(
    '/v1/clusters/:clusterId/events',
    {
      schema: {
        tags: ['clusters'],
        summary: "The cluster's events (per-node progress, losses, replacements); long-polls with waitMs",
        security: secured,
        params: ClusterParams,
        querystring: ClusterEventsQuery,
        response: { 200: ClusterEventList, ...errors },
      },
    },
    async (request) => {
      const principal = await renter(request)
      const { after, limit, waitMs } = request.query
      const events = await clusters.events(
        principal.accountId,
        request.params.clusterId,
        BigInt(after ?? '0'),
        limit ?? 200,
        waitMs ?? 0,
      )
      return { events: events.map((event) => ({ ...event, seq: event.seq.toString() })) }
    },
  )

  app.post(
    '/v1/clusters/:clusterId/clients',
    {
      schema: {
        tags: ['clusters'],
        summary:
          "Join a machine of yours to the cluster's mesh as a WireGuard peer (send only its public key)",
        security: secured,
        params: ClusterParams,
        body: ConnectClientBody,
        response: { 201: ClusterClientConfig, ...errors },
      },
    },
    async (request, reply) => {
      const principal = await renter(request)
      const { publicKey, name } = request.body
      return reply
        .status(201)
        .send(
          await clusters.connectClient(
            principal.accountId,
            request.params.clusterId,
            publicKey,
            name ?? 'client',
          ),
        )
    },
  )

  app.get(
    '/v1/clusters/:clusterId/clients',
    {
      schema: {
        tags: ['clusters'],
        summary: "Machines joined to the cluster's mesh, each with its current peer list",
        security: secured,
        params: ClusterParams,
        response: { 200: ClusterClientList, ...errors },
      },
    },
    async (request) => ({
      clients: await clusters.listClients((await renter(request)).accountId, request.params.clusterId),
    }),
  )

  app.post(
    '/v1/clusters/:clusterId/clients/remove',
    {
      schema: {
        tags: ['clusters'],
        summary: "Remove a machine from the cluster's mesh",
        security: secured,
        params: ClusterParams,
        body: RemoveClientBody,
        response: { 204: Type.Null(), ...errors },
      },
    },
    async (request, reply) => {
      await clusters.removeClient(
        (await renter(request)).accountId,
        request.params.clusterId,
        request.body.publicKey,
      )
      return reply.status(204).send(null)
    },
  )

  app.post(
    '/v1/clusters/:clusterId/jobs',
    {
      bodyLimit: jobBodyLimit,
      schema: {
        tags: ['jobs'],
        summary: 'Run a driver through Ray job submission on the head node, with an uploaded working dir',
        security: secured,
        params: ClusterParams,
        body: SubmitJobBody,
        response: { 201: JobView, ...errors },
      },
    },
    async (request, reply) => {
      const principal = await renter(request)
      return reply
        .status(201)
        .send(await clusters.submitJob(principal.accountId, request.params.clusterId, request.body))
    },
  )

  app.get(
    '/v1/clusters/:clusterId/jobs',
    {
      schema: {
        tags: ['jobs'],
        summary: "The cluster's jobs, newest first",
        security: secured,
        params: ClusterParams,
        response: { 200: JobList, ...errors },
      },
    },
    async (request) => ({
      jobs: await clusters.listJobs((await renter(request)).accountId, request.params.clusterId),
    }),
  )

  app.get(
    '/v1/clusters/:clusterId/jobs/:jobId',
    {
      schema: {
        tags: ['jobs'],
        summary: 'One job and its status',
        security: secured,
        params: JobParams,
        response: { 200: JobView, ...errors },
      },
    },
    async (request) =>
      jobView(
        await clusters.getJob(
          (await renter(request)).accountId,
          request.params.clusterId,
          request.params.jobId,
        ),
      ),
  )

  app.get(
    '/v1/jobs/:jobId',
    {
      schema: {
        tags: ['jobs'],
        summary: 'One of my jobs by its id alone: its cluster is in the answer',
        security: secured,
        params: Type.Object({ jobId: Type.String({ maxLength: 64 }) }),
        response: { 200: JobView, ...errors },
      },
    },
    async (request) => {
      const { accountId } = await renter(request)
      const { jobId } = request.params
      const job = await store.getJob(jobId)
      // Another account's job answers as a missing one, without naming its cluster.
      const owned =
        job &&
        (await clusters.getJob(accountId, job.clusterId, jobId).catch((error: unknown) => {
          if (error instanceof NotFoundError) return undefined
          throw error
        }))
      if (!owned) throw new NotFoundError(`no job ${jobId}`)
      return jobView(owned)
    },
  )

  app.get(
    '/v1/clusters/:clusterId/jobs/:jobId/logs',
    {
      schema: {
        tags: ['jobs'],
        summary: "The job's output after chunk `after`; long-polls with waitMs while it runs",
        security: secured,
        params: JobParams,
        querystring: JobLogQuery,
        response: { 200: JobLogReply, ...errors },
      },
    },
    async (request) => {
      const principal = await renter(request)
      const { after, limit, waitMs } = request.query
      return clusters.jobLogs(
        principal.accountId,
        request.params.clusterId,
        request.params.jobId,
        after ?? 0,
        limit ?? 500,
        waitMs ?? 0,
      )
    },
  )

  app.post(
    '/v1/clusters/:clusterId/jobs/:jobId/stop',
    {
      schema: {
        tags: ['jobs'],
        summary: 'Ask Ray to stop the job',
        security: secured,
        params: JobParams,
        response: { 200: JobView, ...errors },
      },
    },
    async (request) =>
      clusters.stopJob((await renter(request)).accountId, request.params.clusterId, request.params.jobId),
  )
}
