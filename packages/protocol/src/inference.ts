import Type, { type Static } from 'typebox'
import { UsdAmount } from './common.ts'
import { ModelArtifactSpec, ModelName, ModelVersion, Sha256Hex } from './models.ts'

// Inference: the worker messages that start and stop model replicas on idle devices, the OpenAI-compatible
// request bodies the gateway takes, and the receipts it keeps. Request bodies follow OpenAI's API: the fields
// the gateway acts on are checked here, and only those travel on to a replica.

const ReplicaId = Type.String({ pattern: '^mr_[a-z0-9]{1,40}$' })
/** The relay's bearer token: the coordinator's proof that a request came through the gateway. */
const AccessToken = Type.String({ pattern: '^[A-Za-z0-9_-]{43}$' })

/** A rented machine's replicas get this long to finish their requests: rentals win, within seconds. */
export const rentalDrainMs = 5_000

/** What a supplier chose for a device: serve models while idle, never below this price per GPU-hour. */
export const ServingPreference = Type.Object(
  {
    enabled: Type.Boolean(),
    /** Absent: the device's own rental price (its asking price or automatic minimum) is the floor. */
    minPricePerGpuHourUsd: Type.Optional(UsdAmount),
  },
  { additionalProperties: false },
)
export type ServingPreference = Static<typeof ServingPreference>

// coordinator -> worker

export const ModelReplicaStartMessage = Type.Object(
  {
    type: Type.Literal('model_replica_start'),
    replicaId: ReplicaId,
    model: Type.Object(
      {
        name: ModelName,
        version: ModelVersion,
        artifacts: Type.Array(ModelArtifactSpec, { minItems: 1, maxItems: 64 }),
      },
      { additionalProperties: false },
    ),
    accessToken: AccessToken,
    /** Ray Serve replicas on this machine scale between these with load. */
    minReplicas: Type.Integer({ minimum: 1, maximum: 64 }),
    maxReplicas: Type.Integer({ minimum: 1, maximum: 64 }),
  },
  { additionalProperties: false },
)
export type ModelReplicaStartMessage = Static<typeof ModelReplicaStartMessage>

export const ModelReplicaStopMessage = Type.Object(
  {
    type: Type.Literal('model_replica_stop'),
    replicaId: ReplicaId,
    reason: Type.String({ maxLength: 256 }),
    /** Requests in flight get this long to finish. */
    drainMs: Type.Integer({ minimum: 0, maximum: 600_000 }),
  },
  { additionalProperties: false },
)
export type ModelReplicaStopMessage = Static<typeof ModelReplicaStopMessage>

// worker -> coordinator

export const ModelReplicaPhase = Type.Union([
  Type.Literal('downloading'),
  Type.Literal('starting'),
  Type.Literal('ready'),
  Type.Literal('draining'),
  Type.Literal('stopped'),
  Type.Literal('failed'),
])
export type ModelReplicaPhase = Static<typeof ModelReplicaPhase>

export const ModelReplicaStatusMessage = Type.Object(
  {
    type: Type.Literal('model_replica_status'),
    replicaId: ReplicaId,
    phase: ModelReplicaPhase,
    detail: Type.String({ maxLength: 2048 }),
    /**
     * The worker's authenticated relay, which the gateway sends this replica's requests to, once ready. Without
     * a host, the address the coordinator sees the worker connect from.
     */
    relayHost: Type.Optional(
      Type.String({ pattern: '^[0-9]{1,3}(\\.[0-9]{1,3}){3}$', description: 'IPv4 address' }),
    ),
    relayPort: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535 })),
    /** Output tokens per second the replica measured when it came up. */
    outputTokensPerSecond: Type.Optional(Type.Number({ minimum: 0, maximum: 10_000_000 })),
    /** An artifact whose bytes did not match its published hash: refused, never served. */
    refusedArtifact: Type.Optional(
      Type.Object(
        {
          path: Type.String({ maxLength: 128 }),
          expectedSha256: Sha256Hex,
          /** Null when the download was cut off for being longer than published, before it could be hashed. */
          receivedSha256: Type.Union([Sha256Hex, Type.Null()]),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
)
export type ModelReplicaStatusMessage = Static<typeof ModelReplicaStatusMessage>

/** Sent on each (re)connect: the replicas this machine runs now, so a restarted coordinator can adopt them. */
export const ModelReplicasHeldMessage = Type.Object(
  {
    type: Type.Literal('model_replicas_held'),
    replicaIds: Type.Array(ReplicaId, { maxItems: 64 }),
  },
  { additionalProperties: false },
)
export type ModelReplicasHeldMessage = Static<typeof ModelReplicasHeldMessage>

export type ModelReplicaReportMessage = ModelReplicaStatusMessage | ModelReplicasHeldMessage
export type ModelReplicaCommandMessage = ModelReplicaStartMessage | ModelReplicaStopMessage

// The OpenAI-compatible API

const maxPromptCharacters = 1_000_000
const TextContent = Type.Union([
  Type.String({ maxLength: maxPromptCharacters }),
  Type.Array(
    Type.Object({
      type: Type.Literal('text'),
      text: Type.String({ maxLength: maxPromptCharacters }),
    }),
    { maxItems: 256 },
  ),
])

const SamplingFields = {
  /** Both spellings: newer clients send max_completion_tokens. */
  max_tokens: Type.Optional(Type.Union([Type.Integer({ minimum: 1 }), Type.Null()])),
  max_completion_tokens: Type.Optional(Type.Union([Type.Integer({ minimum: 1 }), Type.Null()])),
  temperature: Type.Optional(Type.Union([Type.Number({ minimum: 0, maximum: 2 }), Type.Null()])),
  top_p: Type.Optional(Type.Union([Type.Number({ exclusiveMinimum: 0, maximum: 1 }), Type.Null()])),
  seed: Type.Optional(Type.Union([Type.Integer(), Type.Null()])),
  stop: Type.Optional(
    Type.Union([
      Type.String({ maxLength: 256 }),
      Type.Array(Type.String({ maxLength: 256 }), { maxItems: 4 }),
      Type.Null(),
    ]),
  ),
  /** Any count passes the schema; the gateway refuses all but 1 in OpenAI's shape (docs/inference.md). */
  n: Type.Optional(Type.Union([Type.Integer({ minimum: 1, maximum: 128 }), Type.Null()])),
  stream: Type.Optional(Type.Union([Type.Boolean(), Type.Null()])),
  stream_options: Type.Optional(
    Type.Union([
      Type.Object({ include_usage: Type.Optional(Type.Union([Type.Boolean(), Type.Null()])) }),
      Type.Null(),
    ]),
  ),
  user: Type.Optional(Type.String({ maxLength: 256 })),
}

export const ChatCompletionBody = Type.Object({
  model: Type.String({ minLength: 1, maxLength: 160 }),
  messages: Type.Array(
    Type.Object({
      role: Type.Union([
        Type.Literal('system'),
        Type.Literal('developer'),
        Type.Literal('user'),
        Type.Literal('assistant'),
      ]),
      content: TextContent,
      name: Type.Optional(Type.String({ maxLength: 64 })),
    }),
    { minItems: 1, maxItems: 1_024 },
  ),
  ...SamplingFields,
})
export type ChatCompletionBody = Static<typeof ChatCompletionBody>

export const CompletionBody = Type.Object({
  model: Type.String({ minLength: 1, maxLength: 160 }),
  prompt: Type.Union([
    Type.String({ maxLength: maxPromptCharacters }),
    Type.Array(Type.String({ maxLength: maxPromptCharacters }), { minItems: 1, maxItems: 1 }),
  ]),
  ...SamplingFields,
})
export type CompletionBody = Static<typeof CompletionBody>

export const EmbeddingsBody = Type.Object({
  model: Type.String({ minLength: 1, maxLength: 160 }),
  input: Type.Union([
    Type.String({ minLength: 1, maxLength: maxPromptCharacters }),
    Type.Array(Type.String({ minLength: 1, maxLength: maxPromptCharacters }), { minItems: 1, maxItems: 256 }),
  ]),
  encoding_format: Type.Optional(Type.Union([Type.Literal('float'), Type.Literal('base64')])),
  user: Type.Optional(Type.String({ maxLength: 256 })),
})
export type EmbeddingsBody = Static<typeof EmbeddingsBody>

/** OpenAI's error shape: what every gateway error answers, so OpenAI clients raise their usual errors. */
export const OpenAiErrorReply = Type.Object({
  error: Type.Object({
    message: Type.String(),
    type: Type.String(),
    param: Type.Union([Type.String(), Type.Null()]),
    code: Type.Union([Type.String(), Type.Null()]),
  }),
})
export type OpenAiErrorReply = Static<typeof OpenAiErrorReply>

export const ServedModel = Type.Object({
  id: Type.String({ description: 'what to pass as `model`: name, or name:version' }),
  object: Type.Literal('model'),
  created: Type.Integer({ description: 'seconds since the epoch' }),
  owned_by: Type.String(),
  tasks: Type.Array(Type.String()),
  context_tokens: Type.Integer(),
  max_output_tokens: Type.Integer(),
  replicas: Type.Integer({ description: 'replicas ready now' }),
  pricing: Type.Object({
    input_per_million_gmt: Type.String(),
    output_per_million_gmt: Type.String(),
    policy: Type.String(),
  }),
})
export type ServedModel = Static<typeof ServedModel>

/** The model as the OpenAI API names it: name, or name:version. */
export const ModelParams = Type.Object({ model: Type.String({ minLength: 1, maxLength: 160 }) })
export type ModelParams = Static<typeof ModelParams>

export const ServedModelList = Type.Object({ object: Type.Literal('list'), data: Type.Array(ServedModel) })
export type ServedModelList = Static<typeof ServedModelList>

export const InferenceReceipt = Type.Object({
  id: Type.String(),
  model: Type.String({ description: 'name:version' }),
  endpoint: Type.String(),
  deviceId: Type.String({ description: 'the device whose replica served the request' }),
  promptTokens: Type.Integer(),
  completionTokens: Type.Integer(),
  inputPerMillionGmt: Type.String(),
  outputPerMillionGmt: Type.String(),
  amountGmt: Type.String(),
  feeGmt: Type.String(),
  /** The id the gateway answered the request with (its x-request-id header); null on older receipts. */
  requestId: Type.Union([Type.String(), Type.Null()]),
  createdAtMs: Type.Integer(),
  /**
   * The ledger transfers that moved this request's money (shared with the other requests of its batch);
   * null until the request is charged, within the gateway's settle interval.
   */
  settlement: Type.Union([
    Type.Object({
      batchId: Type.String(),
      /** Each null where no transfer moved money for this request (it cost nothing). */
      supplierTransferId: Type.Union([Type.String(), Type.Null()]),
      feeTransferId: Type.Union([Type.String(), Type.Null()]),
      holdPostTransferId: Type.Union([Type.String(), Type.Null()]),
    }),
    Type.Null(),
  ]),
})
export type InferenceReceipt = Static<typeof InferenceReceipt>

export const InferenceReceiptList = Type.Object({
  receipts: Type.Array(InferenceReceipt),
  nextCursor: Type.Union([Type.String(), Type.Null()]),
})
export type InferenceReceiptList = Static<typeof InferenceReceiptList>

export const InferenceReceiptsQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500 })),
    /** The createdAtMs:id of the last receipt of the previous page. */
    cursor: Type.Optional(Type.String({ pattern: '^[0-9]{1,16}:[A-Za-z0-9_-]{1,64}$' })),
  },
  { additionalProperties: false },
)
export type InferenceReceiptsQuery = Static<typeof InferenceReceiptsQuery>

export const DeviceServingBody = ServingPreference
export type DeviceServingBody = Static<typeof DeviceServingBody>

export const DeviceServingView = Type.Object({
  deviceId: Type.String(),
  enabled: Type.Boolean(),
  minPricePerGpuHourUsd: Type.Union([Type.String(), Type.Null()]),
  /** The replica running on the device now, if any. */
  replica: Type.Union([
    Type.Object({ replicaId: Type.String(), model: Type.String(), phase: Type.String() }),
    Type.Null(),
  ]),
})
export type DeviceServingView = Static<typeof DeviceServingView>

/** The explorer's inference figures per model. */
export const ExplorerInference = Type.Object({
  models: Type.Array(
    Type.Object({
      model: Type.String(),
      requests: Type.Integer(),
      promptTokens: Type.Integer(),
      completionTokens: Type.Integer(),
      spentGmt: Type.String(),
      supplierEarningsGmt: Type.String(),
      replicasReady: Type.Integer(),
    }),
  ),
  generatedAtMs: Type.Integer(),
})
export type ExplorerInference = Static<typeof ExplorerInference>

export const ArtifactRefusalList = Type.Object({
  refusals: Type.Array(
    Type.Object({
      deviceId: Type.String(),
      model: Type.String(),
      path: Type.String(),
      expectedSha256: Type.String(),
      receivedSha256: Type.Union([Type.String(), Type.Null()]),
      atMs: Type.Integer(),
    }),
  ),
})
export type ArtifactRefusalList = Static<typeof ArtifactRefusalList>
