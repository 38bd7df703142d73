import { setTimeout as sleep } from 'node:timers/promises'
import { randomBytes } from 'node:crypto'
import {
  ClusterId,
  ClusterPlan,
  ClusterRequestBody,
  createValidator,
  maxClusterDurationHours,
  type ClusterClientConfig,
  type ClusterEventView,
  type ClusterView,
} from '@gpumesh/protocol'
import { wireguardKeyPairFromSecret, wireguardSecretBytes } from '@gpumesh/mesh'
import { readFileSync, writeFileSync } from 'node:fs'
import { GpumeshApiError, type GpumeshClient } from '@gpumesh/sdk'
import type { Command } from 'commander'
import Type from 'typebox'
import { clientFrom, UsageError, type ConnectionFlags } from '../credentials.ts'
import { gib, reliabilityText, printJson, printTable } from '../output.ts'
import { connectionOptions } from './account.ts'

const clusterRequestValidator = createValidator(ClusterRequestBody, 'cluster flags')
const clusterIdValidator = createValidator(ClusterId, 'cluster id')
/** What a 409 GPUMESH_ERR_UNPLACEABLE carries in its details: the dry run's answer, less the request. */
const unplaceableValidator = createValidator(
  Type.Object({
    blockingConstraint: ClusterPlan.properties.blockingConstraint,
    withoutBlockingConstraint: ClusterPlan.properties.withoutBlockingConstraint,
    market: ClusterPlan.properties.market,
  }),
  'unplaceable details',
)
const numeric = (value: string | undefined) =>
  value === undefined ? undefined : Number.isNaN(Number(value)) ? value : Number(value)

/** One long poll asks the coordinator to hold at most this long (it allows 30 s). */
export const pollWaitMs = 25_000
/** Events per request; the coordinator's maximum. */
const eventPageLimit = 1000
export const defaultWaitTimeoutSeconds = 600
/** Following goes on this long past the provisioning deadline, to print the coordinator's verdict. */
const followPastDeadlineMs = 15_000
const clock = (ms: number) => new Date(ms).toISOString().slice(11, 19) + ' UTC'
/** Consecutive failed polls (coordinator unreachable or restarting) before following gives up. */
const maxPollAttempts = 5
const pollRetryBaseMs = 1000
const maxClusterListLimit = 500

type Flags = ConnectionFlags & Record<string, string | boolean | undefined>
type Unplaceable = Pick<ClusterPlan, 'blockingConstraint' | 'withoutBlockingConstraint' | 'market'>

/** The flags that describe a cluster: `cluster create` and `quote` take the same ones. */
export function clusterRequestOptions(command: Command): Command {
  return command
    .option('--gpus <spec>', 'model and total GPUs, e.g. A100:8, or a number of GPUs')
    .option('--nodes <n>', 'number of nodes')
    .option('--gpus-per-node <n>', 'GPUs on each node')
    .option('--gpu <model>', 'GPU model, e.g. h100, a100, "RTX 4090"')
    .option('--min-vram-gb <gb>', 'VRAM per GPU, at least')
    .option('--region <region>', 'region label')
    .option('--country <code>', 'ISO country code')
    .option('--min-bandwidth <tier>', 'low | medium | high')
    .option('--max-price <usd>', 'USD per GPU-hour, at most')
    .option('--allow-unverified', 'also place on devices that have not passed proof-of-compute')
    .option('--hours <hours>', 'duration (default 1); longer rentals earn a commitment discount')
}

/** The request those flags describe, not yet validated (the caller's schema names any bad field). */
export function clusterRequestFrom(
  flags: Flags,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  const text = (name: string) => flags[name] as string | undefined
  const gpus = text('gpus')
  return Object.fromEntries(
    Object.entries({
      ...extra,
      gpus: gpus !== undefined && /^\d+$/.test(gpus) ? Number(gpus) : gpus,
      nodes: numeric(text('nodes')),
      gpusPerNode: numeric(text('gpusPerNode')),
      gpuModel: text('gpu'),
      minVramGb: numeric(text('minVramGb')),
      region: text('region'),
      country: text('country'),
      minBandwidthTier: text('minBandwidth'),
      maxPricePerGpuHourUsd: text('maxPrice'),
      verifiedOnly: flags['allowUnverified'] ? false : undefined,
      durationHours: numeric(text('hours')),
    }).filter(([, value]) => value !== undefined),
  )
}

export function registerClusterCommands(program: Command): void {
  const cluster = program.command('cluster').description("GPU clusters on several suppliers' machines")
  connectionOptions(
    clusterRequestOptions(
      cluster
        .command('create')
        .description(
          'create a cluster and follow it until Ray is up; --dry-run shows where it would go and what it costs',
        ),
    ),
  )
    .option('--dry-run', 'only answer whether it can be placed, where, and at what price')
    .option('--name <name>', 'cluster name')
    .option('--no-wait', 'print the cluster id and return; do not follow provisioning')
    .option(
      '--wait-timeout <seconds>',
      "give up following after this long (the cluster carries on); default: until the cluster's provisioning deadline",
    )
    .option('--json', 'machine-readable output (does not follow provisioning)')
    .action(async (flags: Flags) => {
      const text = (name: string) => flags[name] as string | undefined
      const waitTimeoutText = text('waitTimeout')
      const givenWaitMs =
        waitTimeoutText === undefined
          ? undefined
          : parsePositiveNumber('--wait-timeout', waitTimeoutText) * 1000
      const body = clusterRequestValidator.parse(clusterRequestFrom(flags, { name: text('name') }))
      const client = clientFrom(flags, true)
      if (flags['dryRun']) return printPlan(await client.planCluster(body), flags['json'] === true)

      let created: ClusterView
      try {
        created = await client.createCluster(body)
      } catch (error) {
        if (
          flags['json'] ||
          !(error instanceof GpumeshApiError) ||
          error.code !== 'GPUMESH_ERR_UNPLACEABLE' ||
          !unplaceableValidator.check(error.details)
        )
          throw error
        process.exitCode = 1
        printUnplaceable(
          `cannot be placed — blocked by ${error.details.blockingConstraint}`,
          error.message,
          error.details,
        )
        return
      }
      if (flags['json']) return printJson(created)
      process.stdout.write(
        `cluster ${created.id} (${created.name}): ${plural(created.nodeCount, 'node')} reserved at $${created.pricePerHourUsd}/h for ${created.durationHours} h\n`,
      )
      if (created.provisionDeadlineAtMs !== null)
        process.stdout.write(
          `it is ready by ${clock(created.provisionDeadlineAtMs)} or it fails, releasing everything; nothing is charged before it is ready\n`,
        )
      if (flags['wait'] === false) {
        process.stdout.write(`follow it with: gpumesh cluster events ${created.id} --follow\n`)
        return
      }
      // By default the CLI follows as long as the coordinator gives the cluster (a little past it, to hear the
      // outcome), never forever; measured on the coordinator's clock, so a skewed local clock cannot cut it short.
      const waitTimeoutMs =
        givenWaitMs ??
        (created.provisionDeadlineAtMs === null
          ? defaultWaitTimeoutSeconds * 1000
          : created.provisionDeadlineAtMs - created.createdAtMs + followPastDeadlineMs)
      const stopHint = onInterrupt(
        `stopped following; cluster ${created.id} keeps running (and costing) until it expires.\n` +
          `  follow again:  gpumesh cluster events ${created.id} --follow\n` +
          `  tear it down:  gpumesh cluster terminate ${created.id}\n`,
      )
      const outcome = await followCluster(client, created, {
        afterSeq: '0',
        done: (view) => view.state !== 'pending' && view.state !== 'provisioning',
        deadlineMs: Date.now() + waitTimeoutMs,
        onEvent: printEventLine,
      })
      stopHint()
      const final = outcome.cluster
      if (outcome.timedOut) {
        process.exitCode = 1
        process.stderr.write(
          `cluster ${final.id} is still ${final.state} after ${Math.round(waitTimeoutMs / 1000)} s of following: ${final.stateReason}\n` +
            `it carries on; follow it with: gpumesh cluster events ${final.id} --follow\n`,
        )
        return
      }
      if (final.state !== 'ready') {
        process.exitCode = 1
        process.stderr.write(`cluster ${final.id} ${final.state}: ${final.stateReason}\n`)
        return
      }
      const tookS =
        final.readyAtMs === null ? undefined : Math.round((final.readyAtMs - final.createdAtMs) / 1000)
      process.stdout.write(
        `\ncluster ${final.id} ready${tookS === undefined ? '' : ` in ${tookS} s`}: ${readyNodes(final)}/${final.nodeCount} nodes in Ray, Ray address ${final.rayAddress ?? 'unknown'}\n` +
          `  run a job:     gpumesh job submit --cluster ${final.id} --working-dir . -- python train.py\n` +
          `  tear it down:  gpumesh cluster terminate ${final.id}\n`,
      )
    })

  connectionOptions(cluster.command('ls').description('your clusters, newest first'))
    .option('--limit <n>', `how many (at most ${maxClusterListLimit}; default 100)`)
    .option('--json', 'machine-readable output')
    .action(async (flags: Flags) => {
      const limitText = flags['limit'] as string | undefined
      const limit =
        limitText === undefined ? undefined : parseLimit('--limit', limitText, maxClusterListLimit)
      const { clusters } = await clientFrom(flags, true).listClusters(limit === undefined ? {} : { limit })
      if (flags['json']) return printJson(clusters)
      if (clusters.length === 0) {
        process.stdout.write('no clusters yet; create one with: gpumesh cluster create --gpus A100:8\n')
        return
      }
      printTable(
        ['id', 'name', 'state', 'nodes ready/total', 'price/h', 'expires'],
        clusters.map((view) => [
          view.id,
          view.name,
          view.state,
          `${readyNodes(view)}/${view.nodeCount}`,
          `$${view.pricePerHourUsd}`,
          time(view.expiresAtMs),
        ]),
      )
    })

  connectionOptions(
    cluster
      .command('show')
      .description('one cluster and each of its nodes')
      .argument('<id>', 'cluster id (cls_...) or name'),
  )
    .option('--json', 'machine-readable output')
    .action(async (id: string, flags: Flags) => {
      const clusterId = await clusterRef(flags, '<id>', id)
      const view = await clientFrom(flags, true).getCluster(clusterId)
      if (flags['json']) return printJson(view)
      printClusterView(view)
    })

  connectionOptions(
    cluster
      .command('extend')
      .description("add hours to a cluster's duration")
      .argument('<id>', 'cluster id (cls_...) or name'),
  )
    .requiredOption('--hours <hours>', 'hours to add')
    .option('--json', 'machine-readable output')
    .action(async (id: string, flags: Flags) => {
      const clusterId = await clusterRef(flags, '<id>', id)
      const hours = parsePositiveNumber('--hours', flags['hours'] as string, maxClusterDurationHours)
      const view = await clientFrom(flags, true).extendCluster(clusterId, hours)
      if (flags['json']) return printJson(view)
      process.stdout.write(
        `cluster ${view.id} extended by ${hours} h (${view.durationHours} h in all); expires ${time(view.expiresAtMs)}\n`,
      )
    })

  connectionOptions(
    cluster
      .command('terminate')
      .description('tear a cluster down and release its machines; waits until they are released')
      .argument('<id>', 'cluster id (cls_...) or name'),
  )
    .option('--no-wait', 'return once the teardown has started')
    .option(
      '--wait-timeout <seconds>',
      'give up waiting after this long (the teardown carries on)',
      String(defaultWaitTimeoutSeconds),
    )
    .option('--json', 'machine-readable output (does not wait)')
    .action(async (id: string, flags: Flags) => {
      const clusterId = await clusterRef(flags, '<id>', id)
      const waitTimeoutMs = parsePositiveNumber('--wait-timeout', flags['waitTimeout'] as string) * 1000
      const client = clientFrom(flags, true)
      const wait = flags['wait'] !== false && !flags['json']
      // Terminating appends events at once; start reading after the ones already there.
      const afterSeq = wait ? await lastEventSeq(client, clusterId) : '0'
      const view = await client.terminateCluster(clusterId)
      if (flags['json']) return printJson(view)
      if (view.state === 'terminated' || view.state === 'failed') {
        process.stdout.write(`cluster ${view.id} is already ${view.state}\n`)
        return
      }
      process.stdout.write(`terminating cluster ${view.id} (${view.name})\n`)
      if (!wait) return
      const outcome = await followCluster(client, view, {
        afterSeq,
        done: (current) => current.state === 'terminated' || current.state === 'failed',
        deadlineMs: Date.now() + waitTimeoutMs,
        onEvent: printEventLine,
      })
      if (outcome.timedOut) {
        process.exitCode = 1
        process.stderr.write(
          `cluster ${view.id} is still ${outcome.cluster.state} after ${waitTimeoutMs / 1000} s (--wait-timeout): ${outcome.cluster.stateReason}\n`,
        )
        return
      }
      process.stdout.write(`cluster ${view.id} ${outcome.cluster.state}\n`)
    })

  connectionOptions(
    cluster
      .command('events')
      .description("a cluster's events: nodes joining, leaving and being replaced, state changes")
      .argument('<id>', 'cluster id (cls_...) or name'),
  )
    .option('--follow', 'keep printing new events until the cluster is terminated or failed (or Ctrl-C)')
    .option('--json', 'one JSON object per event and line')
    .action(async (id: string, flags: Flags) => {
      const clusterId = await clusterRef(flags, '<id>', id)
      const client = clientFrom(flags, true)
      const onEvent = flags['json']
        ? (event: ClusterEventView) => process.stdout.write(`${JSON.stringify(event)}\n`)
        : printEventLine
      if (flags['follow']) {
        await followCluster(client, await client.getCluster(clusterId), {
          afterSeq: '0',
          done: (view) => view.state === 'terminated' || view.state === 'failed',
          onEvent,
        })
        return
      }
      const addressOf = addressLookup(await client.getCluster(clusterId))
      let after = '0'
      for (;;) {
        const { events } = await client.clusterEvents(clusterId, { after, limit: eventPageLimit })
        for (const event of events) onEvent(event, addressOf)
        if (events.length < eventPageLimit) return
        after = events.at(-1)!.seq
      }
    })

  connectionOptions(
    cluster
      .command('connect')
      .description("join this machine to a cluster's private mesh (writes a WireGuard config for wg-quick)")
      .argument('<id>', 'cluster id (cls_...) or name'),
  )
    .option('--name <name>', 'how this machine is listed among the clients', 'client')
    .option('--out <file>', 'where to write the WireGuard config (default gm-<cluster>.conf, mode 0600)')
    .option('--json', 'machine-readable output (the config is still written)')
    .action(async (id: string, flags: Flags) => {
      const clusterId = await clusterRef(flags, '<id>', id)
      // Made here: only the public key goes to the coordinator.
      const keyPair = wireguardKeyPairFromSecret(randomBytes(wireguardSecretBytes))
      const config = await clientFrom(flags, true).connectClient(clusterId, {
        publicKey: keyPair.publicKey,
        name: flags['name'] as string,
      })
      const out = (flags['out'] as string | undefined) ?? `gm-${clusterId.slice(4, 12)}.conf`
      writeFileSync(out, wireguardClientConfig(config, keyPair.privateKey), { mode: 0o600 })
      if (flags['json']) return printJson({ ...config, configFile: out })
      process.stdout.write(
        [
          `this machine is ${config.address} on cluster ${clusterId}'s mesh (${config.peers.length} nodes)`,
          `WireGuard config written to ${out} (mode 0600; it holds this machine's private key)`,
          `  bring it up:  sudo wg-quick up ./${out}`,
          ...(config.rayClientAddress
            ? [`  then Ray:     ray.init("${config.rayClientAddress}")   (Ray 2.58 on this machine)`]
            : []),
          `  leave:        sudo wg-quick down ./${out} && gpumesh cluster disconnect ${clusterId} --config ${out}`,
          'after a node is replaced, run connect again for the new peer list',
          '',
        ].join('\n'),
      )
    })

  connectionOptions(
    cluster
      .command('disconnect')
      .description("remove a machine from a cluster's mesh")
      .argument('<id>', 'cluster id (cls_...) or name'),
  )
    .requiredOption('--config <file>', 'the WireGuard config `cluster connect` wrote')
    .action(async (id: string, flags: Flags) => {
      const clusterId = await clusterRef(flags, '<id>', id)
      const publicKey = /^# public-key: (\S+)$/m.exec(readFileSync(flags['config'] as string, 'utf8'))?.[1]
      if (!publicKey)
        throw new UsageError(
          `--config ${flags['config']}: no "# public-key:" line; was it written by cluster connect?`,
        )
      await clientFrom(flags, true).removeClient(clusterId, publicKey)
      process.stdout.write(`removed from cluster ${clusterId}'s mesh\n`)
    })
}

/** A wg-quick configuration: this machine's address and key, and every node as a peer. */
export function wireguardClientConfig(config: ClusterClientConfig, privateKey: string): string {
  const lines = [
    `# gpumesh cluster ${config.clusterId} (${config.name}); fetch again after a node is replaced`,
    `# public-key: ${config.publicKey}`,
    '[Interface]',
    `PrivateKey = ${privateKey}`,
    `Address = ${config.address}`,
  ]
  for (const peer of config.peers) {
    lines.push(
      '',
      '[Peer]',
      `PublicKey = ${peer.publicKey}`,
      `Endpoint = ${peer.endpoint}`,
      `AllowedIPs = ${peer.overlayAddress}/32`,
      'PersistentKeepalive = 25',
    )
  }
  return `${lines.join('\n')}\n`
}

// --- following --------------------------------------------------------------------------------------

export type FollowClusterInit = {
  /** Print events after this one. */
  readonly afterSeq: string
  /** Following ends, once the events so far are printed, when this holds. */
  readonly done: (cluster: ClusterView) => boolean
  /** Epoch ms; none follows until `done`. */
  readonly deadlineMs?: number
  readonly onEvent: (event: ClusterEventView, addressOf: AddressOf) => void
}

/** A node's overlay address, where known. */
export type AddressOf = (deviceId: string) => string | null

export type FollowClusterOutcome = { readonly cluster: ClusterView; readonly timedOut: boolean }

/** Long-polls the cluster's events, handing each on, until `done(cluster)` or the deadline. */
export async function followCluster(
  client: GpumeshClient,
  start: ClusterView,
  init: FollowClusterInit,
): Promise<FollowClusterOutcome> {
  let cluster = start
  let after = init.afterSeq
  // Addresses seen while following: a node that has left, or a cluster torn down, no longer shows one.
  const addresses = new Map<string, string>()
  const learn = (view: ClusterView) => {
    for (const node of view.nodes)
      if (node.overlayAddress !== null) addresses.set(node.deviceId, node.overlayAddress)
  }
  const addressOf: AddressOf = (deviceId) => addresses.get(deviceId) ?? null
  learn(cluster)
  for (;;) {
    const finished = init.done(cluster)
    const remainingMs = init.deadlineMs === undefined ? pollWaitMs : init.deadlineMs - Date.now()
    if (!finished && remainingMs <= 0) return { cluster, timedOut: true }
    // Once done, drain what is left without waiting.
    const waitMs = finished ? 0 : Math.min(pollWaitMs, Math.ceil(remainingMs))
    const { events } = await retrying(() =>
      client.clusterEvents(cluster.id, { after, limit: eventPageLimit, waitMs }),
    )
    // Read the cluster after its events: every node they name is in it, and a state it reports was
    // reached with its events already written, so the next round, which drains without waiting, prints
    // them.
    if (!finished) {
      cluster = await retrying(() => client.getCluster(cluster.id))
      learn(cluster)
    }
    for (const event of events) {
      init.onEvent(event, addressOf)
      after = event.seq
    }
    if (finished && events.length < eventPageLimit) return { cluster, timedOut: false }
  }
}

/** The seq of the cluster's newest event, '0' when it has none. */
async function lastEventSeq(client: GpumeshClient, clusterId: string): Promise<string> {
  let after = '0'
  for (;;) {
    const { events } = await client.clusterEvents(clusterId, { after, limit: eventPageLimit })
    if (events.length > 0) after = events.at(-1)!.seq
    if (events.length < eventPageLimit) return after
  }
}

/** Retries a poll while the coordinator is unreachable or restarting; other errors pass through. */
export async function retrying<T>(poll: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await poll()
    } catch (error) {
      if (attempt >= maxPollAttempts || !isTransient(error)) throw error
      const delayMs = pollRetryBaseMs * 2 ** (attempt - 1)
      process.stderr.write(`(coordinator not answering; trying again in ${delayMs / 1000} s)\n`)
      await sleep(delayMs)
    }
  }
}

function isTransient(error: unknown): boolean {
  if (error instanceof GpumeshApiError)
    return error.status === 502 || error.status === 503 || error.status === 504
  if (error instanceof TypeError && error.message === 'fetch failed') return true
  return error instanceof Error && error.name === 'TimeoutError'
}

/** Prints `hint` and exits 130 on Ctrl-C; returns what removes the handler. */
export function onInterrupt(hint: string): () => void {
  const handler = () => {
    process.stderr.write(`\n${hint}`)
    process.exit(130)
  }
  process.once('SIGINT', handler)
  return () => process.off('SIGINT', handler)
}

// --- formatting ---------------------------------------------------------------------------------------

export const time = (ms: number | null) =>
  ms === null ? '-' : new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z')

/** HH:MM:SS in the local time zone. */
export function clockTime(ms: number): string {
  const at = new Date(ms)
  return [at.getHours(), at.getMinutes(), at.getSeconds()]
    .map((part) => String(part).padStart(2, '0'))
    .join(':')
}

/** `dev_abcdef…`: enough to tell a cluster's devices apart; `cluster show` has the whole id. */
export function shortDeviceId(deviceId: string): string {
  return deviceId.length > 12 ? `${deviceId.slice(0, 10)}…` : deviceId
}

/** What each node event says, shorter than its message where the subject already tells the rest. */
const nodeEventText: Record<string, string> = {
  node_mesh_up: 'mesh up',
  node_ray_joined: 'joined Ray',
}

/**
 * One line per event: `12:00:01  node 100.64.3.2 (dev_abcdef…)  mesh up`, or `12:00:05  cluster  ready: …`
 * for events about the whole cluster.
 */
export function formatClusterEvent(
  event: ClusterEventView,
  addressOf: AddressOf,
  formatTime: (ms: number) => string = clockTime,
): string {
  if (event.deviceId === null) return `${formatTime(event.atMs)}  cluster  ${firstLine(event.message)}`
  const address = addressOf(event.deviceId)
  const subject =
    address === null
      ? `node ${shortDeviceId(event.deviceId)}`
      : `node ${address} (${shortDeviceId(event.deviceId)})`
  // Some messages name the node again ("node 100.64.3.2 lost: …"); the subject already does.
  const message = firstLine(
    address !== null && event.message.startsWith(`node ${address} `)
      ? event.message.slice(`node ${address} `.length)
      : event.message,
  )
  return `${formatTime(event.atMs)}  ${subject}  ${nodeEventText[event.kind] ?? message}`
}

/**
 * A message's first line. A finished job's event carries the tail of its output after it, which
 * `gpumesh job logs` shows in full.
 */
export function firstLine(message: string): string {
  const newline = message.indexOf('\n')
  return newline < 0 ? message : message.slice(0, newline).replace(/:$/, '')
}

function printEventLine(event: ClusterEventView, addressOf: AddressOf): void {
  process.stdout.write(`${formatClusterEvent(event, addressOf)}\n`)
}

function addressLookup(cluster: ClusterView): AddressOf {
  const addresses = new Map(cluster.nodes.map((node) => [node.deviceId, node.overlayAddress]))
  return (deviceId) => addresses.get(deviceId) ?? null
}

/** Nodes still in the cluster that have joined Ray. */
export function readyNodes(cluster: ClusterView): number {
  return cluster.nodes.filter((node) => node.leftAtMs === null && node.phase === 'ray_joined').length
}

function printClusterView(view: ClusterView): void {
  const gpus = view.gpusPerNode === 0 ? 'CPU only' : `${plural(view.gpusPerNode, 'GPU')} each`
  const rows: [string, string][] = [
    ['state', `${view.state}: ${view.stateReason}`],
    ['nodes', `${readyNodes(view)}/${view.nodeCount} in Ray, ${gpus}`],
    ['Ray address', view.rayAddress ?? '-'],
    ['subnet', view.subnet ?? '-'],
    ['price', `$${view.pricePerHourUsd}/h`],
    ...(view.billing
      ? ([
          [
            'cost so far',
            `${view.billing.chargedGmt} GMT (${view.billing.intervalsCharged} intervals, to ${time(view.billing.billedUntilMs)})`,
          ],
          ['held', `${view.billing.heldGmt} GMT for the rest of the rental`],
        ] as [string, string][])
      : []),
    ['duration', `${view.durationHours} h`],
    ['created', time(view.createdAtMs)],
    ['ready', time(view.readyAtMs)],
    ['expires', time(view.expiresAtMs)],
    ['ended', time(view.endedAtMs)],
  ]
  process.stdout.write(`cluster ${view.id} (${view.name})\n`)
  for (const [label, value] of rows) process.stdout.write(`  ${label.padEnd(12)}${value}\n`)
  if (view.nodes.length === 0) return
  printTable(
    ['role', 'overlay address', 'phase', 'device', '$/h', 'reason'],
    view.nodes.map((node) => [
      node.role,
      node.overlayAddress ?? '-',
      node.phase,
      node.deviceId,
      node.pricePerHourUsd,
      node.phaseReason,
    ]),
  )
}

export function printPlan(plan: ClusterPlan, json: boolean): void {
  if (json) return printJson(plan)
  const nodesText = plural(plan.request.nodes, 'node')
  const shape =
    plan.request.gpusPerNode === 0
      ? `${nodesText} (CPU)`
      : `${nodesText} × ${plan.request.gpusPerNode} ${plan.request.gpuModel ?? 'any'} GPU${plan.request.gpusPerNode === 1 ? '' : 's'}`
  if (plan.placeable) {
    process.stdout.write(
      `${shape}: placeable, $${plan.pricePerHourUsd}/h, $${plan.totalUsd} for ${plan.request.durationHours} h\n`,
    )
    printTable(
      ['device', 'hardware', 'VRAM/GPU', 'where', '$/GPU-h', 'reliability'],
      plan.nodes.map((node) => [
        node.deviceId,
        node.gpuCount === 0 ? node.gpuModelName : `${node.gpuCount}× ${node.gpuModelName}`,
        node.gpuCount === 0 ? '-' : gib(node.vramMibPerGpu),
        `${node.region} ${node.country}`,
        node.pricePerGpuHourUsd,
        reliabilityText(node.reliability),
      ]),
    )
    return
  }
  process.exitCode = 1
  printUnplaceable(`${shape}: cannot be placed — blocked by ${plan.blockingConstraint}`, plan.detail, plan)
}

/** Why a cluster cannot be placed, and what the market offers instead; for dry runs and refused creates. */
function printUnplaceable(headline: string, detail: string, plan: Unplaceable): void {
  process.stdout.write(`${headline}\n  ${detail}\n`)
  if (plan.withoutBlockingConstraint) {
    process.stdout.write(
      `  without the ${plan.blockingConstraint} constraint it would cost $${plan.withoutBlockingConstraint.pricePerHourUsd}/h\n`,
    )
  }
  if (plan.market.length > 0) {
    process.stdout.write('  on offer now:\n')
    printTable(
      ['GPU model', 'nodes', 'GPUs', 'from $/GPU-h'],
      plan.market.map((entry) => [entry.gpuModel, entry.nodes, entry.gpus, entry.minPricePerGpuHourUsd]),
    )
  }
}

const plural = (count: number, noun: string) => `${count} ${noun}${count === 1 ? '' : 's'}`

// --- flags ----------------------------------------------------------------------------------------------

/** A positive, finite number from a flag, at most `max`; a UsageError naming the flag otherwise. */
export function parsePositiveNumber(flag: string, text: string, max = Number.MAX_SAFE_INTEGER): number {
  const value = text.trim() === '' ? Number.NaN : Number(text)
  if (!Number.isFinite(value) || value <= 0)
    throw new UsageError(`${flag} must be a positive number, not "${text}"`)
  if (value > max) throw new UsageError(`${flag} must be at most ${max}, not ${text}`)
  return value
}

function parseLimit(flag: string, text: string, max: number): number {
  const value = parsePositiveNumber(flag, text, max)
  if (!Number.isInteger(value)) throw new UsageError(`${flag} must be a whole number, not ${text}`)
  return value
}

/** A cluster id from an argument or flag, checked before it goes into a URL. */
export function clusterIdArgument(name: string, value: string): string {
  if (!clusterIdValidator.check(value))
    throw new UsageError(`${name}: "${value}" is not a cluster id (cls_..., see gpumesh cluster ls)`)
  return value
}

/**
 * A cluster named by its id (cls_...) or by its name: the newest of the caller's clusters with that name
 * that has not ended (else the newest that has). Names are what people type; ids are what scripts keep.
 */
export async function clusterRef(flags: ConnectionFlags, name: string, value: string): Promise<string> {
  if (clusterIdValidator.check(value)) return value
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(value))
    throw new UsageError(`${name}: "${value}" is neither a cluster id (cls_...) nor a cluster name`)
  const { clusters } = await clientFrom(flags, true).listClusters({ limit: maxClusterListLimit })
  const named = clusters.filter((view) => view.name === value)
  const live = named.filter((view) => view.state !== 'terminated' && view.state !== 'failed')
  const chosen = live[0] ?? named[0]
  if (!chosen) throw new UsageError(`${name}: you have no cluster named "${value}" (gpumesh cluster ls)`)
  return chosen.id
}
