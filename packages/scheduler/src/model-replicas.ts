// Where models are served: which idle, verified, opted-in devices run a replica of which model, and which
// replicas stop. Pure: the coordinator gathers the facts and carries out the decisions. A device serves one
// model at a time (its GPUs are one unit of supply), rentals always win, and cheaper devices serve first.

export type ServedModelSpec = {
  readonly modelId: string
  readonly requiredVramMib: number
  readonly minReplicas: number
  readonly maxReplicas: number
  /** Replicas the measured load asks for; absent: the minimum. Clamped to [min, max]. */
  readonly wantedByLoad?: number
}

export type ServingDevice = {
  readonly deviceId: string
  /** Connected, listed (not rented, not reserved), opted in and verified: it may start a replica. */
  readonly eligible: boolean
  /** Why it may not, for the stop reason of a replica it runs. */
  readonly ineligibleReason?: string
  readonly gpuCount: number
  readonly vramMibPerGpu: number
  readonly memoryMib: number
  /** The supplier's floor for serving, per GPU-hour: cheaper devices are chosen first. */
  readonly floorMicroUsdPerGpuHour: bigint
}

export type ReplicaState = {
  readonly replicaId: string
  readonly deviceId: string
  readonly modelId: string
  /** Draining replicas are on their way out: they count for nothing. */
  readonly draining: boolean
  readonly inFlight: number
}

export type ReplicaDecisions = {
  readonly start: readonly { readonly deviceId: string; readonly modelId: string }[]
  readonly stop: readonly { readonly replicaId: string; readonly reason: string }[]
}

/**
 * A device fits a model when one of its GPUs holds it. A CPU-only device serves small models from memory: it
 * fits when the weights take at most a quarter of its RAM (the rest is Ray's and the system's).
 */
export function deviceFits(
  device: Pick<ServingDevice, 'gpuCount' | 'vramMibPerGpu' | 'memoryMib'>,
  requiredVramMib: number,
): boolean {
  return device.gpuCount > 0
    ? device.vramMibPerGpu >= requiredVramMib
    : requiredVramMib * 4 <= device.memoryMib
}

export function wantedReplicas(model: ServedModelSpec): number {
  const wanted = model.wantedByLoad ?? model.minReplicas
  return Math.max(model.minReplicas, Math.min(model.maxReplicas, wanted))
}

export function planModelReplicas(
  models: readonly ServedModelSpec[],
  devices: readonly ServingDevice[],
  replicas: readonly ReplicaState[],
): ReplicaDecisions {
  const deviceById = new Map(devices.map((device) => [device.deviceId, device]))
  const modelById = new Map(models.map((model) => [model.modelId, model]))
  const stop: { replicaId: string; reason: string }[] = []
  const busyDevices = new Set<string>()
  const live = new Map<string, ReplicaState[]>()

  for (const replica of replicas) {
    busyDevices.add(replica.deviceId)
    if (replica.draining) continue
    const device = deviceById.get(replica.deviceId)
    const model = modelById.get(replica.modelId)
    if (!device || !device.eligible) {
      stop.push({ replicaId: replica.replicaId, reason: device?.ineligibleReason ?? 'device gone' })
      continue
    }
    if (!model) {
      stop.push({ replicaId: replica.replicaId, reason: 'model no longer served' })
      continue
    }
    const list = live.get(model.modelId) ?? []
    list.push(replica)
    live.set(model.modelId, list)
  }

  // Fewer wanted than running: the least busy go first, then the most expensive.
  for (const model of models) {
    const running = live.get(model.modelId) ?? []
    const excess = running.length - wantedReplicas(model)
    if (excess <= 0) continue
    const order = [...running].sort(
      (a, b) =>
        a.inFlight - b.inFlight ||
        compareBigint(floorOf(deviceById, b.deviceId), floorOf(deviceById, a.deviceId)) ||
        (a.replicaId < b.replicaId ? -1 : 1),
    )
    for (const replica of order.slice(0, excess))
      stop.push({ replicaId: replica.replicaId, reason: 'fewer replicas wanted' })
    live.set(model.modelId, order.slice(excess))
  }

  const free = devices
    .filter((device) => device.eligible && !busyDevices.has(device.deviceId))
    .sort(
      (a, b) =>
        compareBigint(a.floorMicroUsdPerGpuHour, b.floorMicroUsdPerGpuHour) ||
        (a.deviceId < b.deviceId ? -1 : a.deviceId > b.deviceId ? 1 : 0),
    )
  const taken = new Set<string>()
  const start: { deviceId: string; modelId: string }[] = []
  // The model furthest below its want is served first, so one model cannot take every idle device.
  const shortfalls = models
    .map((model) => ({ model, missing: wantedReplicas(model) - (live.get(model.modelId)?.length ?? 0) }))
    .filter((entry) => entry.missing > 0)
  while (shortfalls.some((entry) => entry.missing > 0)) {
    shortfalls.sort((a, b) => b.missing - a.missing || (a.model.modelId < b.model.modelId ? -1 : 1))
    const entry = shortfalls[0]!
    const device = free.find(
      (candidate) => !taken.has(candidate.deviceId) && deviceFits(candidate, entry.model.requiredVramMib),
    )
    if (!device) {
      entry.missing = 0
      continue
    }
    taken.add(device.deviceId)
    start.push({ deviceId: device.deviceId, modelId: entry.model.modelId })
    entry.missing -= 1
  }
  return { start, stop }
}

function floorOf(devices: ReadonlyMap<string, ServingDevice>, deviceId: string): bigint {
  return devices.get(deviceId)?.floorMicroUsdPerGpuHour ?? 0n
}

function compareBigint(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0
}
