import {
  capable,
  incapable,
  type Capability,
  type CapabilityCheck,
  type WorkerCapabilities,
} from '@gpumesh/protocol'

// From the checks a self-test ran to what the machine can do. Pure: the self-test (self-test.ts) runs the
// commands; this decides, so every combination is a unit test and `worker doctor` prints the same verdict
// the coordinator is told.

/** Names of the checks, as the self-test reports them and suppliers read them. */
export const CheckName = {
  root: 'root',
  ip: 'ip (iproute2)',
  namespaces: 'network namespaces',
  wireguardGo: 'wireguard-go',
  wg: 'wg (wireguard-tools)',
  sandboxPython: 'sandbox python',
  modelRuntime: 'model runtime',
  gpus: 'gpus',
} as const
export type CheckName = (typeof CheckName)[keyof typeof CheckName]

/** The one step that makes a failed check pass. */
export const checkFixes: Readonly<Record<CheckName, string>> = {
  [CheckName.root]: 'run the worker as root (sudo): network namespaces and the sandbox user need it',
  [CheckName.ip]: 'apt-get install --no-install-recommends iproute2',
  [CheckName.namespaces]: 'run as root on a Linux kernel with network namespaces (ip netns)',
  [CheckName.wireguardGo]:
    'apt-get install --no-install-recommends wireguard-go wireguard-tools (or sudo ./gpumesh up, which installs them)',
  [CheckName.wg]: 'apt-get install --no-install-recommends wireguard-tools',
  [CheckName.sandboxPython]:
    'bash scripts/setup-python.sh (makes the managed Python runtime every user can run)',
  [CheckName.modelRuntime]: 'bash scripts/setup-python.sh (installs torch, safetensors and Ray Serve)',
  [CheckName.gpus]: 'install the NVIDIA driver so that nvidia-smi lists the GPUs',
}

export type DeriveInput = {
  readonly checks: readonly CapabilityCheck[]
  /** The supplier's choices: --no-clusters, --serve-models. */
  readonly clustersEnabled: boolean
  readonly serveModels: boolean
  readonly testedAtMs: number
}

const clusterNodeNeeds: readonly CheckName[] = [
  CheckName.root,
  CheckName.ip,
  CheckName.namespaces,
  CheckName.wireguardGo,
  CheckName.wg,
  CheckName.sandboxPython,
]
const modelReplicaNeeds: readonly CheckName[] = [
  CheckName.root,
  CheckName.ip,
  CheckName.namespaces,
  CheckName.sandboxPython,
  CheckName.modelRuntime,
]

export function deriveCapabilities(input: DeriveInput): WorkerCapabilities {
  const byName = new Map(input.checks.map((check) => [check.name, check]))
  /** The first needed check that did not pass (a missing check counts as failed: it could not run). */
  const firstFailure = (needs: readonly CheckName[]): Capability => {
    for (const name of needs) {
      const check = byName.get(name)
      if (!check) return incapable(`${name}: not checked (an earlier check failed)`, checkFixes[name])
      if (!check.ok) return incapable(`${name}: ${check.detail}`, checkFixes[name])
    }
    return capable()
  }
  return {
    clusterNodes: input.clustersEnabled
      ? firstFailure(clusterNodeNeeds)
      : incapable('the worker was started with --no-clusters', 'restart the worker without --no-clusters'),
    modelReplicas: input.serveModels
      ? firstFailure(modelReplicaNeeds)
      : incapable('the worker was not started with --serve-models', 'restart the worker with --serve-models'),
    gpus: firstFailure([CheckName.gpus]),
    checks: [...input.checks],
    testedAtMs: input.testedAtMs,
  }
}

/** One line per capability, for logs and the CLI. */
export function describeCapabilities(capabilities: WorkerCapabilities): string[] {
  const line = (label: string, capability: Capability) =>
    capability.available ? `${label}: yes` : `${label}: no (${capability.reason})`
  return [
    line('cluster nodes', capabilities.clusterNodes),
    line('model replicas', capabilities.modelReplicas),
    line('GPUs', capabilities.gpus),
  ]
}
