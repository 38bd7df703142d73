import Type, { type Static } from 'typebox'
import { DeviceLocation, HardwareInventory } from './hardware.ts'
import { CapabilitiesMessage, WorkerCapabilities } from './capabilities.ts'
import { UsdAmount } from './common.ts'
import { createTaggedValidator } from './validate.ts'
import {
  ClusterJobLogMessage,
  ClusterJobStatusMessage,
  ClusterJobStopMessage,
  ClusterJobSubmitMessage,
  ClusterMeshMessage,
  ClusterNodeKeyMessage,
  ClusterNodePrepareMessage,
  ClusterNodesHeldMessage,
  ClusterNodeStatusMessage,
  ClusterRayMessage,
  ClusterRayNodesMessage,
  ClusterReleaseMessage,
  Ipv4,
} from './cluster-messages.ts'
import {
  ModelReplicasHeldMessage,
  ModelReplicaStartMessage,
  ModelReplicaStatusMessage,
  ModelReplicaStopMessage,
  ServingPreference,
} from './inference.ts'

// The worker link: one WebSocket per worker, JSON text frames, each validated here before any code acts on it.
// Session authentication: the coordinator opens with a fresh nonce; the worker answers with a signature over
// `sessionSigningPayload(nonce, deviceId)` made with its Ed25519 key. A nonce lives for one connection only,
// so a captured signature is useless on any other connection.

export const workerProtocolVersion = 1
/**
 * Largest frame the coordinator accepts from a worker; a bigger one closes that connection (1009).
 * Sized for the largest hardware report the schema allows (64 GPUs with MIG instances and warnings).
 */
export const maxWorkerFrameBytes = 1024 * 1024
/** Largest frame a worker accepts from the coordinator: a job's working directory travels in one. */
export const maxCoordinatorFrameBytes = 12 * 1024 * 1024

export function sessionSigningPayload(nonce: string, deviceId: string): string {
  return `gpumesh-worker-session-v${workerProtocolVersion}\n${nonce}\n${deviceId}`
}

export function enrollmentSigningPayload(token: string): string {
  return `gpumesh-worker-enroll-v${workerProtocolVersion}\n${token}`
}

const Base64Url = (maxLength: number) => Type.String({ pattern: '^[A-Za-z0-9_-]+$', maxLength, minLength: 1 })
export const Ed25519PublicKey = Type.String({
  pattern: '^[A-Za-z0-9_-]{43}$',
  description: 'raw key, base64url',
})
export const Ed25519Signature = Type.String({ pattern: '^[A-Za-z0-9_-]{86}$', description: 'base64url' })

// coordinator -> worker

export const AuthChallengeMessage = Type.Object(
  {
    type: Type.Literal('auth_challenge'),
    nonce: Base64Url(128),
    protocolVersion: Type.Integer(),
  },
  { additionalProperties: false },
)

export const WelcomeMessage = Type.Object(
  {
    type: Type.Literal('welcome'),
    deviceId: Type.String(),
    sessionId: Type.String(),
    heartbeatIntervalMs: Type.Integer({ minimum: 100 }),
  },
  { additionalProperties: false },
)

export const ErrorMessage = Type.Object(
  {
    type: Type.Literal('error'),
    code: Type.String(),
    message: Type.String(),
  },
  { additionalProperties: false },
)

// Proof-of-compute (see packages/verification): commit to C = A·B, then open the rows asked for.

const Hex32 = Type.String({ pattern: '^[0-9a-f]{64}$', description: '32 bytes, lower-case hex' })
export const maxChallengeMatrixSize = 65_536
export const maxOpenedRows = 64
export const maxMerkleProofLength = 32

export const ChallengeMessage = Type.Object(
  {
    type: Type.Literal('challenge'),
    challengeId: Type.String({ minLength: 1, maxLength: 64 }),
    seed: Hex32,
    matrixSize: Type.Integer({ minimum: 1, maximum: maxChallengeMatrixSize }),
    /** The commitment must reach the coordinator within this long of the challenge being sent. */
    commitWithinMs: Type.Integer({ minimum: 1 }),
  },
  { additionalProperties: false },
)
export type ChallengeMessage = Static<typeof ChallengeMessage>

export const ChallengeOpenMessage = Type.Object(
  {
    type: Type.Literal('challenge_open'),
    challengeId: Type.String({ minLength: 1, maxLength: 64 }),
    rows: Type.Array(Type.Integer({ minimum: 0 }), { minItems: 1, maxItems: maxOpenedRows }),
  },
  { additionalProperties: false },
)
export type ChallengeOpenMessage = Static<typeof ChallengeOpenMessage>

export const ChallengeResultMessage = Type.Object(
  {
    type: Type.Literal('challenge_result'),
    challengeId: Type.String(),
    passed: Type.Boolean(),
    reasonCode: Type.Union([Type.String(), Type.Null()]),
    reason: Type.String(),
  },
  { additionalProperties: false },
)
export type ChallengeResultMessage = Static<typeof ChallengeResultMessage>

// Round-trip times between workers: the coordinator names peers, the worker pings their UDP echo
// responders and reports the median. Placement prefers gangs whose slowest pair is fastest.

export const maxRttTargets = 32
const RttProbeId = Type.String({ minLength: 1, maxLength: 64 })

export const RttProbeMessage = Type.Object(
  {
    type: Type.Literal('rtt_probe'),
    probeId: RttProbeId,
    targets: Type.Array(
      Type.Object(
        {
          deviceId: Type.String({ minLength: 1, maxLength: 64 }),
          host: Ipv4,
          port: Type.Integer({ minimum: 1, maximum: 65535 }),
        },
        { additionalProperties: false },
      ),
      { maxItems: maxRttTargets },
    ),
  },
  { additionalProperties: false },
)
export type RttProbeMessage = Static<typeof RttProbeMessage>

export const RttReportMessage = Type.Object(
  {
    type: Type.Literal('rtt_report'),
    probeId: RttProbeId,
    results: Type.Array(
      Type.Object(
        {
          deviceId: Type.String({ minLength: 1, maxLength: 64 }),
          /** Median of the echoes that came back; null when none did. */
          rttMs: Type.Union([Type.Number({ minimum: 0, maximum: 60_000 }), Type.Null()]),
        },
        { additionalProperties: false },
      ),
      { maxItems: maxRttTargets },
    ),
  },
  { additionalProperties: false },
)
export type RttReportMessage = Static<typeof RttReportMessage>

export const CoordinatorMessage = Type.Union([
  AuthChallengeMessage,
  WelcomeMessage,
  ErrorMessage,
  ChallengeMessage,
  ChallengeOpenMessage,
  ChallengeResultMessage,
  ClusterNodePrepareMessage,
  ClusterMeshMessage,
  ClusterRayMessage,
  ClusterReleaseMessage,
  ClusterJobSubmitMessage,
  ClusterJobStopMessage,
  RttProbeMessage,
  ModelReplicaStartMessage,
  ModelReplicaStopMessage,
])
export type CoordinatorMessage = Static<typeof CoordinatorMessage>

// worker -> coordinator

export const AuthMessage = Type.Object(
  {
    type: Type.Literal('auth'),
    deviceId: Type.String({ minLength: 1, maxLength: 64 }),
    signature: Ed25519Signature,
    agentVersion: Type.String({ minLength: 1, maxLength: 64 }),
  },
  { additionalProperties: false },
)
export type AuthMessage = Static<typeof AuthMessage>

export const HeartbeatMessage = Type.Object(
  {
    type: Type.Literal('heartbeat'),
    seq: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
)
export type HeartbeatMessage = Static<typeof HeartbeatMessage>

export const ReportMessage = Type.Object(
  {
    type: Type.Literal('report'),
    inventory: HardwareInventory,
    location: DeviceLocation,
    /**
     * How the supplier prices this machine. 'fixed' (the default when only a price is given): that price;
     * 'auto': the pricing engine's, never below the price given here, if any. Neither: the machine keeps the
     * pricing it has (set through the API or by an earlier start; a new machine has none and is not listed).
     */
    pricingMode: Type.Optional(Type.Union([Type.Literal('fixed'), Type.Literal('auto')])),
    askingPricePerGpuHourUsd: Type.Optional(UsdAmount),
    /** The UDP port of this machine's round-trip echo responder, when it runs one. */
    rttProbePort: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535 })),
    /** Serve models while idle (absent: keep what was chosen before, through the API or an earlier start). */
    serving: Type.Optional(ServingPreference),
    /** What the machine's self-test found it can do; later changes come as `capabilities` messages. */
    capabilities: Type.Optional(WorkerCapabilities),
  },
  { additionalProperties: false },
)
export type ReportMessage = Static<typeof ReportMessage>

export const GoodbyeMessage = Type.Object(
  {
    type: Type.Literal('goodbye'),
    reason: Type.String({ maxLength: 256 }),
  },
  { additionalProperties: false },
)
export type GoodbyeMessage = Static<typeof GoodbyeMessage>

export const ChallengeCommitmentMessage = Type.Object(
  {
    type: Type.Literal('challenge_commitment'),
    challengeId: Type.String({ minLength: 1, maxLength: 64 }),
    merkleRoot: Hex32,
    /** What computed it, e.g. numpy-cpu or torch-cuda:0; informational. */
    backend: Type.String({ maxLength: 64 }),
    /** The prover's own timing of the multiplication; informational, the coordinator times the round trip. */
    computeMs: Type.Number({ minimum: 0 }),
  },
  { additionalProperties: false },
)
export type ChallengeCommitmentMessage = Static<typeof ChallengeCommitmentMessage>

export const ChallengeOpeningMessage = Type.Object(
  {
    type: Type.Literal('challenge_opening'),
    challengeId: Type.String({ minLength: 1, maxLength: 64 }),
    row: Type.Integer({ minimum: 0 }),
    /** The row as int32 little-endian, base64. */
    values: Type.String({
      maxLength: Math.ceil((maxChallengeMatrixSize * 4) / 3) * 4 + 4,
      pattern: '^[A-Za-z0-9+/]*={0,2}$',
    }),
    proof: Type.Array(Hex32, { maxItems: maxMerkleProofLength }),
  },
  { additionalProperties: false },
)
export type ChallengeOpeningMessage = Static<typeof ChallengeOpeningMessage>

export const WorkerMessage = Type.Union([
  AuthMessage,
  HeartbeatMessage,
  ReportMessage,
  CapabilitiesMessage,
  GoodbyeMessage,
  ChallengeCommitmentMessage,
  ChallengeOpeningMessage,
  ClusterNodeKeyMessage,
  ClusterNodeStatusMessage,
  ClusterRayNodesMessage,
  ClusterJobLogMessage,
  ClusterJobStatusMessage,
  ClusterNodesHeldMessage,
  RttReportMessage,
  ModelReplicaStatusMessage,
  ModelReplicasHeldMessage,
])
export type WorkerMessage = Static<typeof WorkerMessage>

export const workerMessageValidator = createTaggedValidator(
  WorkerMessage,
  {
    auth: AuthMessage,
    heartbeat: HeartbeatMessage,
    report: ReportMessage,
    capabilities: CapabilitiesMessage,
    goodbye: GoodbyeMessage,
    challenge_commitment: ChallengeCommitmentMessage,
    challenge_opening: ChallengeOpeningMessage,
    cluster_node_key: ClusterNodeKeyMessage,
    cluster_node_status: ClusterNodeStatusMessage,
    cluster_ray_nodes: ClusterRayNodesMessage,
    cluster_job_log: ClusterJobLogMessage,
    cluster_job_status: ClusterJobStatusMessage,
    cluster_nodes_held: ClusterNodesHeldMessage,
    rtt_report: RttReportMessage,
    model_replica_status: ModelReplicaStatusMessage,
    model_replicas_held: ModelReplicasHeldMessage,
  },
  'worker message',
)
export const coordinatorMessageValidator = createTaggedValidator(
  CoordinatorMessage,
  {
    auth_challenge: AuthChallengeMessage,
    welcome: WelcomeMessage,
    error: ErrorMessage,
    challenge: ChallengeMessage,
    challenge_open: ChallengeOpenMessage,
    challenge_result: ChallengeResultMessage,
    cluster_node_prepare: ClusterNodePrepareMessage,
    cluster_mesh: ClusterMeshMessage,
    cluster_ray: ClusterRayMessage,
    cluster_release: ClusterReleaseMessage,
    cluster_job_submit: ClusterJobSubmitMessage,
    cluster_job_stop: ClusterJobStopMessage,
    rtt_probe: RttProbeMessage,
    model_replica_start: ModelReplicaStartMessage,
    model_replica_stop: ModelReplicaStopMessage,
  },
  'coordinator message',
)

/** WebSocket close codes the coordinator uses, so a worker can tell "retry" from "give up". */
export const WorkerCloseCode = {
  normal: 1000,
  goingAway: 1001,
  protocolError: 1002,
  policyViolation: 1008,
  frameTooLarge: 1009,
  authFailed: 4001,
  replaced: 4002,
  blocked: 4003,
} as const
