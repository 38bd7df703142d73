import Type, { type Static } from 'typebox'
import { UsdAmount } from './common.ts'
import { countryPattern, regionPattern } from './hardware.ts'

// Settings for the two daemons. A config file (JSON) and CLI flags are merged, flags winning, and the
// result passes this schema before anything starts, so a typo names its field instead of being ignored.

/** A GMT amount in settings: at most 6 decimals and 10^12 GMT. */
const gmtPattern = '^(0|[1-9][0-9]{0,11})(\\.[0-9]{1,6})?$'

export const CoordinatorSettings = Type.Object(
  {
    host: Type.String({ minLength: 1, maxLength: 255, default: '127.0.0.1' }),
    port: Type.Integer({ minimum: 0, maximum: 65535, default: 8080 }),
    /** Embedded PGlite lives here when no databaseUrl is given. */
    dataDir: Type.String({ minLength: 1, maxLength: 4096, default: '.gpumesh/coordinator' }),
    databaseUrl: Type.Optional(Type.String({ pattern: '^postgres(ql)?://', maxLength: 4096 })),
    /** The address workers and users reach this coordinator at, used in printed commands. */
    publicUrl: Type.Optional(Type.String({ pattern: '^https?://', maxLength: 2048 })),
    heartbeatIntervalMs: Type.Integer({ minimum: 100, maximum: 600_000, default: 10_000 }),
    missedHeartbeatsBeforeOffline: Type.Integer({ minimum: 1, maximum: 100, default: 3 }),
    /** A device back within this long of its last heartbeat is credited the gap: a restart is not downtime. */
    restartGraceMs: Type.Integer({ minimum: 0, maximum: 3_600_000, default: 120_000 }),
    heartbeatFlushIntervalMs: Type.Integer({ minimum: 50, maximum: 600_000, default: 5_000 }),
    /**
     * Worker connections this process accepts; past it a worker is answered 503 and retries elsewhere or
     * later. Absent: the open-files limit less a reserve, so the API and the database never run out of
     * descriptors.
     */
    maxWorkerConnections: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000_000 })),
    /** Proof-of-compute: challenge devices at enrollment and again at random times. */
    verificationEnabled: Type.Boolean({ default: true }),
    /** Mean time between re-verifications of a verified device. */
    reverifyIntervalMs: Type.Integer({ minimum: 1_000, maximum: 30 * 86_400_000, default: 6 * 3_600_000 }),
    /** Challenge matrix size for nodes without GPUs (the CPU path). */
    challengeCpuMatrixSize: Type.Integer({ minimum: 16, maximum: 8_192, default: 1_024 }),
    /** Added to every commitment deadline: process start, generation, network. */
    challengeFixedOverheadMs: Type.Integer({ minimum: 0, maximum: 600_000, default: 10_000 }),
    /** How often each worker is asked to measure round trips to a few peers; 0 turns it off. */
    rttProbeIntervalMs: Type.Integer({ minimum: 0, maximum: 86_400_000, default: 600_000 }),
    /**
     * The development faucet: at most this many GMT per claim from the operator-funded faucet account
     * ("0" turns it off, as on a production network).
     */
    faucetMaxClaimGmt: Type.String({ pattern: '^(0|[1-9][0-9]{0,11})(\\.[0-9]{1,6})?$', default: '0' }),
    /** One faucet claim per account per period of this length (a UTC day by default). */
    faucetClaimPeriodMs: Type.Integer({ minimum: 1_000, maximum: 30 * 86_400_000, default: 86_400_000 }),
    /**
     * Faucet claims per source address per period, over all its accounts (several people may share an
     * address); 0: not limited by source. Counted per coordinator process.
     */
    faucetClaimsPerSourcePerPeriod: Type.Integer({ minimum: 0, maximum: 1_000_000, default: 3 }),
    /**
     * Whether GMT from the faucet may be withdrawn. Off: an account withdraws only what it holds beyond all
     * the faucet GMT it has received (faucet GMT counts as spent last), so test money stays on the network.
     */
    faucetFundsWithdrawable: Type.Boolean({ default: false }),
    /** Charge clusters from renters' wallets: a hold at deploy, then every billing interval while ready. */
    clusterBillingEnabled: Type.Boolean({ default: true }),
    /** GMT per USD, the rate quotes in USD settle at. */
    gmtPerUsd: Type.String({ pattern: '^(0|[1-9][0-9]{0,5})(\\.[0-9]{1,6})?$', default: '1' }),
    /** The platform's share of every charge, in basis points (1000 = 10%). */
    platformFeeBasisPoints: Type.Integer({ minimum: 0, maximum: 5_000, default: 1_000 }),
    /** How often a running cluster is charged (a minute; shorter in tests). */
    billingIntervalMs: Type.Integer({ minimum: 100, maximum: 3_600_000, default: 60_000 }),
    /**
     * A cluster not ready this long after it was created fails with the reason: every machine is released and
     * its whole hold with them, nothing charged. Ray itself starts in seconds; replacing a node that failed
     * takes one more start.
     */
    clusterProvisionTimeoutMs: Type.Integer({ minimum: 1_000, maximum: 86_400_000, default: 300_000 }),
    /** A replacement node not in Ray this long after it was reserved is given up and replaced again. */
    clusterNodeJoinTimeoutMs: Type.Integer({ minimum: 1_000, maximum: 3_600_000, default: 180_000 }),
    /** Pay epoch rewards from the reward pool to verified, online devices. */
    rewardsEnabled: Type.Boolean({ default: true }),
    /** Length of a reward epoch (an hour; shorter on a test network). */
    rewardEpochMs: Type.Integer({ minimum: 10_000, maximum: 7 * 86_400_000, default: 3_600_000 }),
    /** The emission schedule: never more than this in total, in GMT. */
    rewardEmissionCapGmt: Type.String({ pattern: gmtPattern, default: '300000000' }),
    /** What the first month after genesis emits, in GMT; each month after emits rewardMonthlyRetainBp of the one before. */
    rewardFirstMonthGmt: Type.String({ pattern: gmtPattern, default: '5000000' }),
    rewardMonthlyRetainBp: Type.Integer({ minimum: 0, maximum: 10_000, default: 9_880 }),
    /** The GPU pool's share of each epoch's emission; the CPU pool has the rest. */
    rewardGpuPoolShareBp: Type.Integer({ minimum: 0, maximum: 10_000, default: 9_000 }),
    /** An epoch is closed this long after it ends: heartbeats are flushed and spot checks have answered. */
    rewardCloseDelayMs: Type.Integer({ minimum: 0, maximum: 3_600_000, default: 60_000 }),
    /** Share of connected devices given a proof-of-compute spot check when an epoch ends. */
    rewardSpotCheckFraction: Type.Number({ minimum: 0, maximum: 1, default: 0.05 }),
    /** How long an explorer reply is reused before it is computed again. */
    explorerCacheMs: Type.Integer({ minimum: 0, maximum: 600_000, default: 5_000 }),
    /** How often the explorer's price index samples each model's median price. */
    priceIndexSampleMs: Type.Integer({ minimum: 1_000, maximum: 86_400_000, default: 900_000 }),
    /**
     * Keep model artifacts in an S3-compatible bucket instead of `<dataDir>/artifacts`. Credentials come from
     * the usual AWS environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, or an instance role).
     */
    artifactBucket: Type.Optional(
      Type.Object(
        {
          bucket: Type.String({ minLength: 3, maxLength: 63 }),
          region: Type.String({ minLength: 1, maxLength: 64, default: 'us-east-1' }),
          /** For S3-compatible stores (MinIO, R2, Ceph): their URL. Absent: AWS S3. */
          endpoint: Type.Optional(Type.String({ pattern: '^https?://', maxLength: 2048 })),
          /** Keys start with this, e.g. "gpumesh/". */
          prefix: Type.Optional(Type.String({ maxLength: 256 })),
          /** Path-style URLs (most S3-compatible stores need them). */
          forcePathStyle: Type.Optional(Type.Boolean()),
        },
        { additionalProperties: false },
      ),
    ),
    /** The inference gateway: OpenAI-compatible endpoints served by replicas on idle devices. */
    inferenceEnabled: Type.Boolean({ default: true }),
    /** How often finished requests are charged, in one ledger batch per caller. */
    inferenceSettleMs: Type.Integer({ minimum: 10, maximum: 60_000, default: 500 }),
    /** Requests per minute one API key may make to the gateway. */
    inferenceRequestsPerMinute: Type.Integer({ minimum: 1, maximum: 1_000_000, default: 600 }),
    /** What the gateway holds from a caller's wallet at a time (topped up as it is used), in GMT. */
    inferenceHoldGmt: Type.String({ pattern: gmtPattern, default: '5' }),
    /** How often replicas are placed on idle devices and stopped where they are no longer wanted. */
    modelServingPlanMs: Type.Integer({ minimum: 50, maximum: 600_000, default: 2_000 }),
    /** A replica being stopped (its device hired, its model less wanted) gets this long to finish its requests. */
    replicaDrainMs: Type.Integer({ minimum: 0, maximum: 600_000, default: 10_000 }),
    /** GMT as an SPL token on Solana (docs/chain.md); absent: GMT lives in the ledger only (local settlement). */
    chain: Type.Optional(
      Type.Object(
        {
          rpcUrl: Type.String({ pattern: '^https?://', maxLength: 2048 }),
          /** The GMT mint (base58). */
          mint: Type.String({ pattern: '^[1-9A-HJ-NP-Za-km-z]{32,44}$' }),
          /** The vault's signing key (solana-keygen JSON), mode 0600; never stored in the database. */
          vaultKeyFile: Type.String({ minLength: 1, maxLength: 4096 }),
          /** When a deposit or withdrawal counts. */
          commitment: Type.Union(
            [Type.Literal('processed'), Type.Literal('confirmed'), Type.Literal('finalized')],
            { default: 'finalized' },
          ),
          /** How often unsettled chain transactions are looked up again (after a crash, an RPC outage). */
          resumeIntervalMs: Type.Integer({ minimum: 100, maximum: 600_000, default: 5_000 }),
        },
        { additionalProperties: false },
      ),
    ),
    logLevel: Type.Union(
      [
        Type.Literal('fatal'),
        Type.Literal('error'),
        Type.Literal('warn'),
        Type.Literal('info'),
        Type.Literal('debug'),
        Type.Literal('trace'),
        Type.Literal('silent'),
      ],
      { default: 'info' },
    ),
  },
  { additionalProperties: false },
)
export type CoordinatorSettings = Static<typeof CoordinatorSettings>

export const WorkerSettings = Type.Object(
  {
    coordinatorUrl: Type.String({ pattern: '^https?://', maxLength: 2048 }),
    /** One-time enrollment token; needed only until this machine has enrolled. */
    token: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
    stateDir: Type.String({ minLength: 1, maxLength: 4096, default: '.gpumesh/worker' }),
    region: Type.String({ pattern: regionPattern, default: 'local' }),
    country: Type.String({ pattern: countryPattern, default: 'ZZ' }),
    /** With pricingMode 'auto', the minimum; otherwise the fixed price. */
    askingPricePerGpuHourUsd: Type.Optional(UsdAmount),
    /** 'auto': let the pricing engine set the price (see docs/pricing.md); absent: fixed when a price is given. */
    pricingMode: Type.Optional(Type.Union([Type.Literal('fixed'), Type.Literal('auto')])),
    /** Parse this saved `nvidia-smi -q -x` output instead of running the tool. */
    nvidiaSmiXmlPath: Type.Optional(Type.String({ minLength: 1, maxLength: 4096 })),
    /** Speedtest (network tier, compute) soon after start, then this often; 0 turns it off. */
    speedtestIntervalMs: Type.Integer({ minimum: 0, maximum: 30 * 86_400_000, default: 86_400_000 }),
    /** Accept cluster nodes: WireGuard mesh and Ray in a network namespace per cluster (needs root). */
    clustersEnabled: Type.Boolean({ default: true }),
    /**
     * The address other nodes reach this machine's WireGuard at. Absent: the address the coordinator sees the
     * worker connect from (right unless the machine is behind NAT without a forwarded UDP range).
     */
    meshEndpointHost: Type.Optional(
      Type.String({ pattern: '^[0-9]{1,3}(\\.[0-9]{1,3}){3}$', description: 'IPv4 address' }),
    ),
    /** Unprivileged user (uid:gid) that cluster processes run as; renter code never runs as root. */
    clusterUser: Type.String({ pattern: '^[0-9]{1,10}:[0-9]{1,10}$', default: '65534:65534' }),
    /** CPUs each cluster node advertises to Ray; absent: this machine's CPU count. */
    clusterNodeCpus: Type.Optional(Type.Integer({ minimum: 1, maximum: 4096 })),
    /** Ray's object store per cluster node; absent: Ray's own default (30% of memory). */
    rayObjectStoreMemoryBytes: Type.Optional(Type.Integer({ minimum: 78_643_200 })),
    /**
     * Only for a worker that itself runs under `ip netns exec` (test hosts): a mount namespace, such as
     * /proc/<pid>/ns/mnt of a process outside, in which cluster namespaces are named so the whole machine sees them.
     */
    netnsMountNamespace: Type.Optional(Type.String({ pattern: '^/proc/[0-9]+/ns/mnt$' })),
    /** UDP port of the round-trip echo responder other workers measure this machine with; 0 = any free port. */
    rttProbePort: Type.Integer({ minimum: 0, maximum: 65535, default: 0 }),
    /** Serve models while idle: the coordinator places replicas on this machine when nobody rents it. */
    serveModels: Type.Optional(Type.Boolean()),
    /** The lowest price per GPU-hour this machine serves models for; absent: its rental price. */
    serveMinPricePerGpuHourUsd: Type.Optional(UsdAmount),
    /** Address and port of the relay the gateway reaches replicas through; absent: meshEndpointHost, any port. */
    serveHost: Type.Optional(
      Type.String({ pattern: '^[0-9]{1,3}(\\.[0-9]{1,3}){3}$', description: 'IPv4 address' }),
    ),
    servePort: Type.Integer({ minimum: 0, maximum: 65535, default: 0 }),
    /** The worker's wireguard-go (a name on PATH or a path). */
    wireguardGoCommand: Type.String({ minLength: 1, maxLength: 4096, default: 'wireguard-go' }),
    /** How often the worker tests what it can do again (0: only at start and after a failure). */
    selfTestIntervalMs: Type.Integer({ minimum: 0, maximum: 86_400_000, default: 300_000 }),
    /** Prometheus metrics of this worker on 127.0.0.1 at this port (0: any free port; absent: none). */
    metricsPort: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535 })),
    reconnectInitialDelayMs: Type.Integer({ minimum: 10, maximum: 60_000, default: 500 }),
    reconnectMaxDelayMs: Type.Integer({ minimum: 100, maximum: 3_600_000, default: 30_000 }),
    logLevel: Type.Union(
      [
        Type.Literal('error'),
        Type.Literal('warn'),
        Type.Literal('info'),
        Type.Literal('debug'),
        Type.Literal('silent'),
      ],
      { default: 'info' },
    ),
  },
  { additionalProperties: false },
)
export type WorkerSettings = Static<typeof WorkerSettings>
