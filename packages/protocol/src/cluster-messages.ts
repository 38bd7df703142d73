import Type, { type Static } from 'typebox'

// Coordinator <-> worker messages that build and run a cluster node. The coordinator decides; the worker
// acts on its own machine and reports. Every command is idempotent on the worker (a coordinator that
// restarted sends it again), and every report names its cluster, so the coordinator can refuse a report
// about a cluster the device was never placed in.

export const ClusterId = Type.String({ pattern: '^cls_[A-Za-z0-9_-]{1,60}$' })
export const JobId = Type.String({ pattern: '^job_[A-Za-z0-9_-]{1,60}$' })
/** A Curve25519 public key in WireGuard's base64 form. */
export const WireguardPublicKey = Type.String({ pattern: '^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$' })
const octet = '(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])'
export const Ipv4 = Type.String({ pattern: `^${octet}(\\.${octet}){3}$`, description: 'IPv4 address' })
const Endpoint = Type.String({ pattern: '^[0-9.]{7,15}:[0-9]{1,5}$', description: 'IPv4 host:port' })
const LinuxName = Type.String({ pattern: '^[a-z0-9-]{1,15}$' })
/** Job output travels in chunks no larger than this. */
export const maxJobLogChunkBytes = 32 * 1024
import { maxJobEntrypointLength, maxWorkingDirBytes } from './job-limits.ts'
import { RayEntrypointResources, RayPackageUri, RayRuntimeEnv } from './ray-jobs.ts'
export { maxJobEntrypointLength, maxWorkingDirBytes }

// coordinator -> worker

/** Make a WireGuard key pair and open the node's interface; answer with the public key. */
export const ClusterNodePrepareMessage = Type.Object(
  {
    type: Type.Literal('cluster_node_prepare'),
    clusterId: ClusterId,
    interfaceName: LinuxName,
    namespace: LinuxName,
  },
  { additionalProperties: false },
)
export type ClusterNodePrepareMessage = Static<typeof ClusterNodePrepareMessage>

export const MeshPeerSpec = Type.Object(
  {
    publicKey: WireguardPublicKey,
    /** Absent for a renter's client peer: it connects to the nodes, not they to it. */
    endpoint: Type.Optional(Endpoint),
    overlayAddress: Ipv4,
  },
  { additionalProperties: false },
)

/** The node's overlay address and the full peer set; sent again whenever membership changes. */
export const ClusterMeshMessage = Type.Object(
  {
    type: Type.Literal('cluster_mesh'),
    clusterId: ClusterId,
    overlayAddress: Ipv4,
    prefixLength: Type.Integer({ minimum: 8, maximum: 30 }),
    peers: Type.Array(MeshPeerSpec, { maxItems: 300 }),
    /** Names this peer set; the worker echoes it when the set is applied. */
    revision: Type.String({ minLength: 1, maxLength: 64 }),
  },
  { additionalProperties: false },
)
export type ClusterMeshMessage = Static<typeof ClusterMeshMessage>

/** Run this node's Ray: the head, or a worker joining the head. A different head restarts Ray. */
export const ClusterRayMessage = Type.Object(
  {
    type: Type.Literal('cluster_ray'),
    clusterId: ClusterId,
    role: Type.Union([Type.Literal('head'), Type.Literal('worker')]),
    headAddress: Ipv4,
    gcsPort: Type.Integer({ minimum: 1024, maximum: 65535 }),
    numGpus: Type.Integer({ minimum: 0, maximum: 64 }),
  },
  { additionalProperties: false },
)
export type ClusterRayMessage = Static<typeof ClusterRayMessage>

export const ClusterReleaseMessage = Type.Object(
  { type: Type.Literal('cluster_release'), clusterId: ClusterId, reason: Type.String({ maxLength: 256 }) },
  { additionalProperties: false },
)
export type ClusterReleaseMessage = Static<typeof ClusterReleaseMessage>

export const ClusterJobSubmitMessage = Type.Object(
  {
    type: Type.Literal('cluster_job_submit'),
    clusterId: ClusterId,
    jobId: JobId,
    entrypoint: Type.String({ minLength: 1, maxLength: maxJobEntrypointLength }),
    /** The working directory as a gzipped tar, base64. */
    workingDirTarGz: Type.Union([
      Type.String({ maxLength: Math.ceil(maxWorkingDirBytes / 3) * 4, pattern: '^[A-Za-z0-9+/]*={0,2}$' }),
      Type.Null(),
    ]),
    /** Ray's runtime_env, checked at the coordinator's edge; absent for gpumesh's own submissions. */
    runtimeEnv: Type.Optional(RayRuntimeEnv),
    /** The zips runtimeEnv names (working_dir, py_modules), for the head to put into Ray's GCS. */
    packages: Type.Optional(
      Type.Array(
        Type.Object(
          {
            uri: RayPackageUri,
            zipBase64: Type.String({
              maxLength: Math.ceil(maxWorkingDirBytes / 3) * 4,
              pattern: '^[A-Za-z0-9+/]*={0,2}$',
            }),
          },
          { additionalProperties: false },
        ),
        { maxItems: 17 },
      ),
    ),
    entrypointResources: Type.Optional(RayEntrypointResources),
  },
  { additionalProperties: false },
)
export type ClusterJobSubmitMessage = Static<typeof ClusterJobSubmitMessage>

export const ClusterJobStopMessage = Type.Object(
  { type: Type.Literal('cluster_job_stop'), clusterId: ClusterId, jobId: JobId },
  { additionalProperties: false },
)
export type ClusterJobStopMessage = Static<typeof ClusterJobStopMessage>

export const ClusterCommandMessages = [
  ClusterNodePrepareMessage,
  ClusterMeshMessage,
  ClusterRayMessage,
  ClusterReleaseMessage,
  ClusterJobSubmitMessage,
  ClusterJobStopMessage,
] as const
export type ClusterCommandMessage =
  | ClusterNodePrepareMessage
  | ClusterMeshMessage
  | ClusterRayMessage
  | ClusterReleaseMessage
  | ClusterJobSubmitMessage
  | ClusterJobStopMessage

// worker -> coordinator

export const ClusterNodeKeyMessage = Type.Object(
  {
    type: Type.Literal('cluster_node_key'),
    clusterId: ClusterId,
    publicKey: WireguardPublicKey,
    listenPort: Type.Integer({ minimum: 1, maximum: 65535 }),
    /** The address peers reach this machine at, when the supplier set one; else the coordinator uses the link's. */
    endpointHost: Type.Optional(Ipv4),
  },
  { additionalProperties: false },
)
export type ClusterNodeKeyMessage = Static<typeof ClusterNodeKeyMessage>

export const ClusterNodePhaseReport = Type.Union([
  Type.Literal('mesh_up'),
  Type.Literal('ray_started'),
  Type.Literal('failed'),
  Type.Literal('released'),
])
export type ClusterNodePhaseReport = Static<typeof ClusterNodePhaseReport>

export const ClusterNodeStatusMessage = Type.Object(
  {
    type: Type.Literal('cluster_node_status'),
    clusterId: ClusterId,
    phase: ClusterNodePhaseReport,
    detail: Type.String({ maxLength: 2048 }),
    /** With mesh_up: the revision of the peer set now applied. */
    meshRevision: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
  },
  { additionalProperties: false },
)
export type ClusterNodeStatusMessage = Static<typeof ClusterNodeStatusMessage>

/** From the head: the overlay addresses of the Ray nodes Ray itself reports alive. */
export const ClusterRayNodesMessage = Type.Object(
  {
    type: Type.Literal('cluster_ray_nodes'),
    clusterId: ClusterId,
    alive: Type.Array(Ipv4, { maxItems: 300 }),
  },
  { additionalProperties: false },
)
export type ClusterRayNodesMessage = Static<typeof ClusterRayNodesMessage>

export const ClusterJobLogMessage = Type.Object(
  {
    type: Type.Literal('cluster_job_log'),
    clusterId: ClusterId,
    jobId: JobId,
    text: Type.String({ maxLength: maxJobLogChunkBytes }),
  },
  { additionalProperties: false },
)
export type ClusterJobLogMessage = Static<typeof ClusterJobLogMessage>

export const JobStatusName = Type.Union([
  Type.Literal('pending'),
  Type.Literal('running'),
  Type.Literal('succeeded'),
  Type.Literal('failed'),
  Type.Literal('stopped'),
])
export type JobStatusName = Static<typeof JobStatusName>

export const ClusterJobStatusMessage = Type.Object(
  {
    type: Type.Literal('cluster_job_status'),
    clusterId: ClusterId,
    jobId: JobId,
    status: JobStatusName,
    message: Type.String({ maxLength: 4096 }),
    exitCode: Type.Union([Type.Integer(), Type.Null()]),
  },
  { additionalProperties: false },
)
export type ClusterJobStatusMessage = Static<typeof ClusterJobStatusMessage>

/** Sent after every welcome: the clusters this machine runs a node of right now (none after a restart). */
export const ClusterNodesHeldMessage = Type.Object(
  {
    type: Type.Literal('cluster_nodes_held'),
    clusterIds: Type.Array(ClusterId, { maxItems: 1024 }),
  },
  { additionalProperties: false },
)
export type ClusterNodesHeldMessage = Static<typeof ClusterNodesHeldMessage>

export type ClusterReportMessage =
  | ClusterNodeKeyMessage
  | ClusterNodeStatusMessage
  | ClusterRayNodesMessage
  | ClusterJobLogMessage
  | ClusterJobStatusMessage
  | ClusterNodesHeldMessage
