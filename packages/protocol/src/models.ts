import Type, { type Static } from 'typebox'

// The model store's API: model versions and their content-addressed artifacts.

const TimestampMs = Type.Integer({ minimum: 0 })
/** A SHA-256 as lowercase hex: how artifacts are named everywhere they are stored or fetched. */
export const sha256HexPattern = '^[0-9a-f]{64}$'
/** An artifact's file name in a model directory; no folders, so it can never point outside one. */
export const artifactPathPattern = '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'
export const Sha256Hex = Type.String({ pattern: sha256HexPattern, description: 'SHA-256, lowercase hex' })
export const ModelName = Type.String({ pattern: '^[a-z0-9][a-z0-9._-]{0,63}$' })
export const ModelVersion = Type.String({ pattern: '^[0-9A-Za-z][0-9A-Za-z.+-]{0,63}$' })
export const ModelTask = Type.Union([
  Type.Literal('chat'),
  Type.Literal('completion'),
  Type.Literal('embeddings'),
])
/** Largest artifact the store takes. */
export const maxArtifactBytes = 2 * 1024 * 1024 * 1024

export const ModelArtifactSpec = Type.Object(
  {
    /** A file name in the model directory ("model.safetensors"); no folders. */
    path: Type.String({ pattern: artifactPathPattern }),
    sha256: Sha256Hex,
    sizeBytes: Type.Integer({ minimum: 0, maximum: maxArtifactBytes }),
  },
  { additionalProperties: false },
)

/** How many devices serve a model: the gateway's demand moves it between the two. */
export const ModelServingBody = Type.Object(
  {
    /** Devices serving the model at all times while enough idle ones exist. */
    minReplicas: Type.Integer({ minimum: 0, maximum: 1_000 }),
    maxReplicas: Type.Integer({ minimum: 0, maximum: 1_000 }),
  },
  { additionalProperties: false },
)
export type ModelServingBody = Static<typeof ModelServingBody>

export const CreateModelBody = Type.Object(
  {
    name: ModelName,
    version: ModelVersion,
    tasks: Type.Array(ModelTask, { minItems: 1, maxItems: 3, uniqueItems: true }),
    /** The directory format, e.g. "gpumesh-model/1" (config.json + model.safetensors). */
    format: Type.String({ minLength: 1, maxLength: 64 }),
    /** What runs it, e.g. "char-transformer". */
    runtime: Type.String({ minLength: 1, maxLength: 64 }),
    license: Type.String({ minLength: 1, maxLength: 200 }),
    requiredVramMib: Type.Integer({ minimum: 0, maximum: 16 * 1024 * 1024 }),
    contextTokens: Type.Integer({ minimum: 1, maximum: 10_000_000 }),
    maxOutputTokens: Type.Integer({ minimum: 1, maximum: 10_000_000 }),
    artifacts: Type.Array(ModelArtifactSpec, { minItems: 1, maxItems: 64 }),
    /** Absent: one replica at least, four at most. */
    serving: Type.Optional(ModelServingBody),
  },
  { additionalProperties: false },
)
export type CreateModelBody = Static<typeof CreateModelBody>

export const ModelView = Type.Object({
  id: Type.String(),
  name: Type.String(),
  version: Type.String(),
  tasks: Type.Array(Type.String()),
  format: Type.String(),
  runtime: Type.String(),
  license: Type.String(),
  requiredVramMib: Type.Integer(),
  contextTokens: Type.Integer(),
  maxOutputTokens: Type.Integer(),
  /** uploading until every artifact is stored, then ready. */
  state: Type.Union([Type.Literal('uploading'), Type.Literal('ready'), Type.Literal('removed')]),
  sizeBytes: Type.Integer(),
  serving: ModelServingBody,
  createdAtMs: TimestampMs,
  artifacts: Type.Array(
    Type.Object({
      path: Type.String(),
      sha256: Type.String(),
      sizeBytes: Type.Integer(),
      stored: Type.Boolean(),
    }),
  ),
})
export type ModelView = Static<typeof ModelView>

export const ModelList = Type.Object({ models: Type.Array(ModelView) })
export type ModelList = Static<typeof ModelList>

export const ModelVersionParams = Type.Object(
  { name: ModelName, version: ModelVersion },
  { additionalProperties: false },
)
export type ModelVersionParams = Static<typeof ModelVersionParams>

export const ArtifactParams = Type.Object({ sha256: Sha256Hex }, { additionalProperties: false })
export type ArtifactParams = Static<typeof ArtifactParams>

export const ArtifactStored = Type.Object({
  sha256: Type.String(),
  sizeBytes: Type.Integer(),
  modelsReady: Type.Array(Type.String()),
})
export type ArtifactStored = Static<typeof ArtifactStored>
