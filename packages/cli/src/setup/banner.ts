import type { Capability, DeviceView } from '@gpumesh/protocol'
import type { SetupStep } from './machine.ts'

// What `gpumesh up` prints once the network is up: which features work and, for each that does not, why
// and the one command that turns it on; what each phase took; and what to try next.

export type Feature = {
  readonly name: string
  readonly on: boolean
  readonly detail: string
  readonly fix?: string
}

/** Clusters and inference, as the workers' own self-tests found them (a feature is on when any worker has it). */
export function featuresOf(devices: readonly DeviceView[], servesModels: boolean): Feature[] {
  const feature = (name: string, pick: (device: DeviceView) => Capability | undefined): Feature => {
    const capabilities = devices.map((device) => pick(device))
    const able = capabilities.filter((capability) => capability?.available).length
    if (able > 0) return { name, on: true, detail: `${able} of ${devices.length} workers` }
    const first = capabilities.find((capability) => capability && !capability.available)
    // `up` starts the workers itself: the fix for a missing root or package is to run it again as root.
    const fix = /^(root|wireguard-go|wg \(wireguard-tools\)|ip \(iproute2\)):/.test(first?.reason ?? '')
      ? 'sudo ./gpumesh up'
      : first?.fix
    return {
      name,
      on: false,
      detail: first?.reason ?? 'no worker has reported what it can do yet',
      ...(fix ? { fix } : {}),
    }
  }
  const clusters = feature('clusters', (device) => device.capabilities?.clusterNodes)
  const inference = servesModels
    ? feature('inference', (device) => device.capabilities?.modelReplicas)
    : {
        name: 'inference',
        on: false,
        detail: 'the model store has no model to serve',
        fix: 'gpumesh model push python/models/tiny-chat',
      }
  return [clusters, inference]
}

export function formatFeatures(features: readonly Feature[]): string {
  return features
    .map((feature) =>
      feature.on
        ? `  ${feature.name.padEnd(12)}  on (${feature.detail})\n`
        : `  ${feature.name.padEnd(12)}  OFF: ${feature.detail}\n${feature.fix ? `  ${''.padEnd(12)}  turn it on: ${feature.fix}\n` : ''}`,
    )
    .join('')
}

export type PhaseTiming = { readonly phase: string; readonly durationMs: number; readonly note?: string }

/** Node, npm and the console build, as scripts/env.sh measured them (GPUMESH_BOOTSTRAP_TIMINGS). */
export function bootstrapTimings(text: string | undefined): PhaseTiming[] {
  if (!text) return []
  const names: Record<string, string> = { node: 'Node.js 24', npm: 'npm ci', console: 'web console build' }
  return text
    .split(',')
    .map((pair) => pair.split('='))
    .filter(([key, value]) => key !== undefined && names[key] !== undefined && /^\d+$/.test(value ?? ''))
    .map(([key, value]) => ({ phase: names[key!]!, durationMs: Number(value) }))
}

export function stepTimings(steps: readonly SetupStep[]): PhaseTiming[] {
  return steps.map((step) => ({ phase: step.name, durationMs: step.durationMs, note: step.outcome }))
}

export function formatTimings(timings: readonly PhaseTiming[]): string {
  const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`
  const total = timings.reduce((sum, timing) => sum + timing.durationMs, 0)
  return (
    `  ready in ${seconds(total)}: ` +
    timings
      .map(
        (timing) => `${timing.phase} ${seconds(timing.durationMs)}${timing.note ? ` (${timing.note})` : ''}`,
      )
      .join(', ') +
    '\n'
  )
}

export function nextCommands(
  coordinatorUrl: string,
  features: readonly Feature[],
  renterKey: string,
): string {
  const on = (name: string) => features.some((feature) => feature.name === name && feature.on)
  const inferenceOn = on('inference')
  return (
    `Try next (logged in as the local renter; ./gpumesh login --coordinator ${coordinatorUrl} --api-key <supplier key> switches):\n` +
    '  1. ./gpumesh offers search\n' +
    (on('clusters')
      ? '  2. ./gpumesh cluster create --nodes 2        # then: ./gpumesh job submit --cluster <id> -- python -c "import ray; ray.init(); print(ray.cluster_resources())"\n'
      : '  2. ./gpumesh quote --nodes 2                 # clusters are off here; see Features above\n') +
    (inferenceOn
      ? `  3. curl ${coordinatorUrl}/v1/chat/completions -H "authorization: Bearer ${renterKey}" -H 'content-type: application/json' \\\n` +
        `       -d '{"model": "tiny-chat", "messages": [{"role": "user", "content": "Tell me a fable."}]}'\n`
      : '  3. ./gpumesh wallet balance\n')
  )
}
