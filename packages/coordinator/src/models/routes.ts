import { ConflictError, IdPrefix, NotFoundError, ValidationError, type Clock } from '@gpumesh/core'
import {
  ArtifactParams,
  ArtifactStored,
  CreateModelBody,
  ErrorReply,
  maxArtifactBytes,
  ModelList,
  ModelVersionParams,
  ModelView,
} from '@gpumesh/protocol'
import type { ModelRecord, Store } from '@gpumesh/store'
import type { Readable } from 'node:stream'
import { mintId } from '../credentials.ts'
import { authenticate, requireRole } from '../principal.ts'
import type { App } from '../routes.ts'
import type { ArtifactStore } from './artifact-store.ts'

// The model store over HTTP. Operators push a model version in two steps: its description with every
// artifact's hash and size, then the bytes of each artifact not stored yet (PUT by hash; bytes that do not
// hash to it are refused and nothing is kept). The catalog and the artifacts are public, as on a model hub:
// workers fetch artifacts by hash and check them again before use.

export type ModelRouteComponents = {
  readonly store: Store
  readonly clock: Clock
  readonly artifacts: ArtifactStore
}

const errors = { 400: ErrorReply, 401: ErrorReply, 403: ErrorReply, 404: ErrorReply, 409: ErrorReply }
const secured = [{ apiKey: [] }]

async function modelView(store: Store, model: ModelRecord): Promise<ModelView> {
  const stored = await store.models.storedBlobs(model.artifacts.map((artifact) => artifact.sha256))
  return {
    id: model.id,
    name: model.name,
    version: model.version,
    tasks: [...model.tasks],
    format: model.format,
    runtime: model.runtime,
    license: model.license,
    requiredVramMib: model.requiredVramMib,
    contextTokens: model.contextTokens,
    maxOutputTokens: model.maxOutputTokens,
    state: model.state,
    sizeBytes: model.artifacts.reduce((sum, artifact) => sum + artifact.sizeBytes, 0),
    serving: { minReplicas: model.minReplicas, maxReplicas: model.maxReplicas },
    createdAtMs: model.createdAtMs,
    artifacts: model.artifacts.map((artifact) => ({ ...artifact, stored: stored.has(artifact.sha256) })),
  }
}

export function registerModelStoreRoutes(app: App, { store, clock, artifacts }: ModelRouteComponents): void {
  // Artifact bodies arrive as raw bytes and are streamed to the artifact store, never buffered whole.
  app.addContentTypeParser('application/octet-stream', (_request, payload, done) => done(null, payload))

  app.post(
    '/v1/store/models',
    {
      schema: {
        tags: ['models'],
        summary:
          "Describe a model version and its artifacts' hashes; the reply names the artifacts still to upload",
        security: secured,
        body: CreateModelBody,
        response: { 201: ModelView, ...errors },
      },
    },
    async (request, reply) => {
      const principal = await authenticate(request, store, clock)
      requireRole(principal, 'operator')
      const body = request.body
      const paths = new Set<string>()
      for (const [index, artifact] of body.artifacts.entries()) {
        if (paths.has(artifact.path))
          throw new ValidationError([
            { field: `artifacts/${index}/path`, message: `${artifact.path} is listed twice` },
          ])
        paths.add(artifact.path)
      }
      if (body.serving && body.serving.minReplicas > body.serving.maxReplicas)
        throw new ValidationError([
          { field: 'serving/minReplicas', message: 'must not be above serving/maxReplicas' },
        ])
      const nowMs = clock.nowMs()
      const model: ModelRecord = {
        id: mintId(IdPrefix.model),
        name: body.name,
        version: body.version,
        tasks: body.tasks,
        format: body.format,
        runtime: body.runtime,
        license: body.license,
        requiredVramMib: body.requiredVramMib,
        contextTokens: body.contextTokens,
        maxOutputTokens: body.maxOutputTokens,
        minReplicas: body.serving?.minReplicas ?? 1,
        maxReplicas: body.serving?.maxReplicas ?? 4,
        ownerAccountId: principal.accountId,
        state: 'uploading',
        createdAtMs: nowMs,
        updatedAtMs: nowMs,
        artifacts: body.artifacts,
      }
      if (!(await store.models.createModel(model)))
        throw new ConflictError(
          `${body.name} ${body.version} is already in the store; remove it first or push a new version`,
          {
            field: 'version',
          },
        )
      // Artifacts already stored (shared with another model, or pushed before) make it ready at once.
      await store.models.markCompleteModelsReady(nowMs)
      return reply.status(201).send(await modelView(store, (await store.models.getModel(model.id))!))
    },
  )

  app.put(
    '/v1/store/artifacts/:sha256',
    {
      bodyLimit: maxArtifactBytes,
      schema: {
        tags: ['models'],
        summary: 'Upload the bytes of an artifact by its SHA-256 (application/octet-stream)',
        security: secured,
        params: ArtifactParams,
        response: { 200: ArtifactStored, ...errors },
      },
    },
    async (request) => {
      const principal = await authenticate(request, store, clock)
      requireRole(principal, 'operator')
      const { sha256 } = request.params
      if (request.headers['content-type'] !== 'application/octet-stream')
        throw new ValidationError([
          { field: 'content-type', message: 'send the bytes as application/octet-stream' },
        ])
      const stored = await artifacts.put(sha256, request.body as Readable, maxArtifactBytes)
      if (!stored.ok) {
        throw new ValidationError([
          {
            field: 'body',
            message:
              stored.reason === 'hash_mismatch'
                ? `refused: ${stored.detail}, not ${sha256}; nothing was stored`
                : `refused: ${stored.detail}`,
          },
        ])
      }
      const nowMs = clock.nowMs()
      await store.models.recordBlob(sha256, stored.sizeBytes, nowMs)
      const ready = await store.models.markCompleteModelsReady(nowMs)
      return { sha256, sizeBytes: stored.sizeBytes, modelsReady: ready }
    },
  )

  app.get(
    '/v1/store/artifacts/:sha256',
    {
      schema: {
        tags: ['models'],
        summary: "An artifact's bytes by SHA-256 (public); check the hash of what you receive",
        params: ArtifactParams,
      },
    },
    async (request, reply) => {
      const blob = await artifacts.open(request.params.sha256)
      if (!blob) throw new NotFoundError(`no artifact ${request.params.sha256}`, { field: 'sha256' })
      return reply
        .type('application/octet-stream')
        .header('content-length', blob.sizeBytes)
        .header('cache-control', 'public, max-age=31536000, immutable')
        .send(blob.stream)
    },
  )

  app.get(
    '/v1/store/models',
    {
      schema: {
        tags: ['models'],
        summary: 'Every model version in the store (public)',
        response: { 200: ModelList },
      },
    },
    async () => ({
      models: await Promise.all((await store.models.listModels()).map((model) => modelView(store, model))),
    }),
  )

  app.get(
    '/v1/store/models/:name/:version',
    {
      schema: {
        tags: ['models'],
        summary: 'One model version with its artifacts and whether each is stored (public)',
        params: ModelVersionParams,
        response: { 200: ModelView, ...errors },
      },
    },
    async (request) => {
      const model = await store.models.findModel(request.params.name, request.params.version)
      if (!model)
        throw new NotFoundError(`no model ${request.params.name} ${request.params.version}`, {
          field: 'name',
        })
      return modelView(store, model)
    },
  )

  app.delete(
    '/v1/store/models/:name/:version',
    {
      schema: {
        tags: ['models'],
        summary: 'Remove a model version from the store (its artifacts stay while other models name them)',
        security: secured,
        params: ModelVersionParams,
        response: { 200: ModelView, ...errors },
      },
    },
    async (request) => {
      const principal = await authenticate(request, store, clock)
      requireRole(principal, 'operator')
      const model = await store.models.findModel(request.params.name, request.params.version)
      if (!model)
        throw new NotFoundError(`no model ${request.params.name} ${request.params.version}`, {
          field: 'name',
        })
      await store.models.removeModel(model.id, clock.nowMs())
      return modelView(store, (await store.models.getModel(model.id))!)
    },
  )
}
