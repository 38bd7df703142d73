import Type, { type Static } from 'typebox'

// What a worker's machine can do, as its own self-test found it: each check it ran (a command, a namespace,
// the managed Python runtime as the sandbox user), and the capabilities that follow from them. The
// coordinator places cluster nodes and model replicas only where the capability is there, and shows the
// supplier the reason and the fix for each one that is not.

export const CapabilityName = {
  clusterNodes: 'clusterNodes',
  modelReplicas: 'modelReplicas',
  gpus: 'gpus',
} as const
export type CapabilityName = (typeof CapabilityName)[keyof typeof CapabilityName]

export const maxCapabilityChecks = 32
export const maxCapabilityReasonLength = 1_024

export const CapabilityCheck = Type.Object(
  {
    /** What was checked, e.g. "wireguard-go" or "sandbox python". */
    name: Type.String({ minLength: 1, maxLength: 64 }),
    ok: Type.Boolean(),
    /** What the check saw: a version, or why it failed. */
    detail: Type.String({ maxLength: maxCapabilityReasonLength }),
  },
  { additionalProperties: false },
)
export type CapabilityCheck = Static<typeof CapabilityCheck>

export const Capability = Type.Object(
  {
    available: Type.Boolean(),
    /** Why it is not available (null when it is). */
    reason: Type.Union([Type.String({ maxLength: maxCapabilityReasonLength }), Type.Null()]),
    /** The one command or step that turns it on (null when available, or when nothing can). */
    fix: Type.Union([Type.String({ maxLength: 512 }), Type.Null()]),
  },
  { additionalProperties: false },
)
export type Capability = Static<typeof Capability>

export const WorkerCapabilities = Type.Object(
  {
    clusterNodes: Capability,
    modelReplicas: Capability,
    gpus: Capability,
    checks: Type.Array(CapabilityCheck, { maxItems: maxCapabilityChecks }),
    /** When the self-test ran, by the worker's clock. */
    testedAtMs: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
)
export type WorkerCapabilities = Static<typeof WorkerCapabilities>

/** Sent after a self-test whose outcome differs from the last one sent (and with the first report). */
export const CapabilitiesMessage = Type.Object(
  {
    type: Type.Literal('capabilities'),
    capabilities: WorkerCapabilities,
  },
  { additionalProperties: false },
)
export type CapabilitiesMessage = Static<typeof CapabilitiesMessage>

/** An available capability. */
export function capable(): Capability {
  return { available: true, reason: null, fix: null }
}

/** An unavailable capability, with its reason and fix. */
export function incapable(reason: string, fix: string | null = null): Capability {
  return { available: false, reason: reason.slice(0, maxCapabilityReasonLength), fix }
}

/** Equal outcomes (the time of the test aside): nothing new to tell the coordinator. */
export function sameCapabilities(a: WorkerCapabilities | undefined, b: WorkerCapabilities): boolean {
  if (!a) return false
  const { testedAtMs: _a, ...restA } = a
  const { testedAtMs: _b, ...restB } = b
  return JSON.stringify(restA) === JSON.stringify(restB)
}
