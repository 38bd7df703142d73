import { formatId, type IdPrefix } from '@gpumesh/core'
import { isTerminalCluster } from '@gpumesh/clusters'
import { ledgerAccounts } from '@gpumesh/ledger'
import {
  cpuInventory,
  enrollTestDevice,
  ManualClock,
  simulatedCapabilities,
  storeBackends,
} from '@gpumesh/testing'
import type { ClusterReportMessage, CoordinatorMessage } from '@gpumesh/protocol'
import type { Store } from '@gpumesh/store'
import { defaultSimSettings, isRefusal, SimCoordinator, type SimSettings } from './coordinator.ts'
import { InvariantChecker, watchWrites, type StepWrites } from './invariants.ts'
import { SimRandom } from './random.ts'
import { RayTable, SimWorker } from './worker.ts'

// The seeded simulation: a coordinator (SimCoordinator) and N simulated workers on a manual clock, over the
// in-memory link, on a real store (PGlite in memory). Each step is one seeded random action: a renter
// creates, extends or terminates a cluster or runs a job; a worker joins, disconnects, reconnects or dies;
// the clock advances (frames arrive, the controller ticks, billing runs); now and then the coordinator
// restarts over the same store. After every step the invariants are checked, and a failure names the seed
// and step that replay it. Faults for testing the checkers are switched on here, never in production code.

export type SimFault = 'double-charge'

export type SimInit = {
  readonly seed: number
  readonly steps: number
  /** Machines in the pool; about half are enrolled at the start, the rest join as the run goes on. */
  readonly workers: number
  readonly renters?: number
  readonly faults?: readonly SimFault[]
  /** The store the coordinators share: the embedded PGlite (the default) or a fresh PostgreSQL database. */
  readonly store?: 'pglite' | 'postgres'
  readonly settings?: Partial<SimSettings>
}

export type SimFailure = { readonly step: number; readonly message: string; readonly replay: string }

export type SimOutcome = {
  readonly seed: number
  readonly stepsRun: number
  readonly failure: SimFailure | undefined
  readonly elapsedMs: number
  /** CPU time this process spent (user + system): steadier than wall time on a shared machine. */
  readonly cpuMs: number
  readonly simulatedMs: number
  /** How many times each action ran. */
  readonly actions: Readonly<Record<string, number>>
  readonly clustersCreated: number
  readonly intervalsBilled: number
}

const actionWeights = {
  advance: 36,
  create: 9,
  extend: 3,
  terminate: 4,
  job: 4,
  join: 3,
  disconnect: 4,
  reconnect: 9,
  die: 3,
  deposit: 2,
  restart: 0.4,
} as const
type Action = keyof typeof actionWeights

/** Ledger verify reads every transfer: it runs every this many steps and at the last one. */
export const verifyEverySteps = 250

/** One frame's trip over the link: at least this, at most `maxLinkDelayMs`. */
const minLinkDelayMs = 1
const maxLinkDelayMs = 400

export function replayCommand(init: SimInit, steps: number): string {
  const faults = (init.faults ?? []).map((fault) => ` --fault ${fault}`).join('')
  const store = init.store === 'postgres' ? ' --store postgres' : ''
  return `node sim/run.ts --seed ${init.seed} --steps ${steps} --workers ${init.workers}${faults}${store}`
}

export async function runSimulation(init: SimInit): Promise<SimOutcome> {
  const world = await SimWorld.open(init)
  try {
    return await world.run()
  } finally {
    await world.close()
  }
}

class SimWorld {
  readonly #init: SimInit
  readonly #settings: SimSettings
  readonly #store: Store
  readonly #takeWritten: () => StepWrites
  readonly #clock = new ManualClock()
  readonly #random: SimRandom
  readonly #ray = new RayTable()
  readonly #checker: InvariantChecker
  readonly #errors: string[] = []
  readonly #workers: SimWorker[] = []
  readonly #renterIds: string[] = []
  readonly #supplierIds: string[] = []
  readonly #clusters: { readonly id: string; readonly accountId: string }[] = []
  readonly #actions: Record<string, number> = {}
  #coordinator!: SimCoordinator
  /** Coordinator generations: frames of an earlier one are lost with it. */
  #generation = 0
  #deposited = 0n
  #nextTickAtMs = 0
  #ticks = 0
  #doubleCharged = false
  /** Per device, when its last frame in each direction arrives: frames keep their order. */
  readonly #lastArrival = new Map<string, number>()
  readonly #events: { atMs: number; order: number; run: () => Promise<void> }[] = []
  #order = 0
  readonly #cleanup: () => Promise<void>

  private constructor(init: SimInit, opened: Store, cleanup: () => Promise<void>) {
    this.#init = init
    this.#cleanup = cleanup
    this.#settings = { ...defaultSimSettings, ...init.settings }
    const { store, takeWritten } = watchWrites(opened)
    this.#store = store
    this.#takeWritten = takeWritten
    this.#random = new SimRandom(init.seed)
    this.#checker = new InvariantChecker(store)
  }

  static async open(init: SimInit): Promise<SimWorld> {
    const backend = storeBackends.find((candidate) => candidate.name === (init.store ?? 'pglite'))!
    const { store, cleanup } = await backend.open()
    const world = new SimWorld(init, store, cleanup)
    await world.#setUp()
    return world
  }

  async close(): Promise<void> {
    await this.#cleanup()
  }

  async #setUp(): Promise<void> {
    const nowMs = this.#clock.nowMs()
    const ledger = this.#store.ledger
    await ledger.createAccounts(
      [ledgerAccounts.settlement(), ledgerAccounts.fee(), ledgerAccounts.rewards()],
      nowMs,
    )
    const supplierCount = Math.max(1, Math.ceil(this.#init.workers / 4))
    for (let index = 0; index < supplierCount; index += 1) {
      const id = `acc_supplier${index}`
      await this.#store.createAccount({ id, name: id, roles: ['supplier'], createdAtMs: nowMs })
      this.#supplierIds.push(id)
    }
    for (let index = 0; index < (this.#init.renters ?? 3); index += 1) {
      const id = `acc_renter${index}`
      await this.#store.createAccount({ id, name: id, roles: ['renter'], createdAtMs: nowMs })
      await ledger.createAccounts([ledgerAccounts.user(id)], nowMs)
      this.#renterIds.push(id)
      await this.#deposit(id)
    }
    const environment = {
      random: this.#random,
      ray: this.#ray,
      reply: (worker: SimWorker, message: ClusterReportMessage) => this.#toCoordinator(worker, message),
      rayChanged: (clusterId: string) => {
        for (const worker of this.#workers)
          if (worker.running && worker.isHeadOf(clusterId))
            this.#toCoordinator(worker, worker.rayNodes(clusterId))
      },
    }
    for (let index = 0; index < this.#init.workers; index += 1) {
      const supplierId = this.#supplierIds[index % supplierCount]!
      // Prices from 0.30 to 1.20 USD an hour: a replacement may cost more than the node it replaced.
      const price = BigInt(this.#random.int(30, 120)) * 10_000n
      this.#workers.push(new SimWorker(`dev_sim${index}`, supplierId, price, environment))
    }
    this.#coordinator = this.#newCoordinator()
    await this.#coordinator.start()
    this.#nextTickAtMs = nowMs + this.#settings.tickMs
    for (const worker of this.#workers.slice(0, Math.ceil(this.#workers.length / 2))) {
      await this.#enroll(worker)
      await this.#connect(worker)
    }
  }

  #newCoordinator(): SimCoordinator {
    this.#generation += 1
    return new SimCoordinator(
      {
        store: this.#store,
        clock: this.#clock,
        addressOf: (deviceId) => {
          const index = Number(deviceId.replace(/\D/g, ''))
          return `10.1.${index >> 8}.${(index % 250) + 1}`
        },
        mintId: (prefix) => formatId(prefix as IdPrefix, this.#random.idBody()),
        errors: this.#errors,
      },
      this.#settings,
    )
  }

  async run(): Promise<SimOutcome> {
    const started = performance.now()
    const cpuAtStart = process.cpuUsage()
    const startMs = this.#clock.nowMs()
    let failure: SimFailure | undefined
    let step = 0
    const fail = (message: string) => {
      failure = { step, message, replay: replayCommand(this.#init, step) }
    }
    for (step = 1; step <= this.#init.steps; step += 1) {
      const action = this.#random.weighted(actionWeights)
      this.#actions[action] = (this.#actions[action] ?? 0) + 1
      try {
        await this.#act(action)
      } catch (error) {
        fail(`${action} threw: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`)
        break
      }
      if (this.#errors.length > 0) {
        fail(`the controller logged an error during ${action}: ${this.#errors.join('; ')}`)
        break
      }
      const full = step % verifyEverySteps === 0 || step === this.#init.steps
      // A step that wrote nothing the checks read cannot have broken them.
      const written = this.#takeWritten()
      if (!written.placement && !written.money && !full) continue
      const broken = await this.#checker.check(
        {
          renterIds: this.#renterIds,
          supplierIds: this.#supplierIds,
          clusterIds: this.#clusters.map((cluster) => cluster.id),
          depositedUnits: this.#deposited,
        },
        { full, written },
      )
      if (broken) {
        fail(`after ${action}: ${broken}`)
        break
      }
    }
    let intervalsBilled = 0
    for (const { id } of this.#clusters)
      intervalsBilled += (await this.#store.getCluster(id))?.billedIntervals ?? 0
    return {
      seed: this.#init.seed,
      stepsRun: failure ? failure.step : this.#init.steps,
      failure,
      elapsedMs: performance.now() - started,
      cpuMs: (({ user, system }) => (user + system) / 1000)(process.cpuUsage(cpuAtStart)),
      simulatedMs: this.#clock.nowMs() - startMs,
      actions: this.#actions,
      clustersCreated: this.#clusters.length,
      intervalsBilled,
    }
  }

  async #act(action: Action): Promise<void> {
    const random = this.#random
    switch (action) {
      case 'advance': {
        const roll = random.next()
        const ms =
          roll < 0.7
            ? random.int(20, 1_500)
            : roll < 0.97
              ? random.int(1_500, 8_000)
              : random.int(8_000, 45_000)
        return this.#advance(ms)
      }
      case 'create': {
        const accountId = random.pick(this.#renterIds)!
        const cluster = await this.#renter(() =>
          this.#coordinator.controller.create(accountId, {
            nodes: random.int(1, 3),
            gpuModel: 'cpu',
            verifiedOnly: false,
            durationHours: random.pick([0.05, 0.1, 0.25, 0.5])!,
            ...(random.chance(0.2) ? { maxPricePerGpuHourUsd: '0.80' } : {}),
          }),
        )
        if (cluster) this.#clusters.push({ id: cluster.id, accountId })
        return
      }
      case 'extend': {
        const cluster = random.pick(this.#clusters)
        if (cluster)
          await this.#renter(() =>
            this.#coordinator.controller.extend(cluster.accountId, cluster.id, random.pick([0.05, 0.1])!),
          )
        return
      }
      case 'terminate': {
        const cluster = random.pick(this.#clusters.slice(-8))
        if (cluster)
          await this.#renter(() => this.#coordinator.controller.terminate(cluster.accountId, cluster.id))
        return
      }
      case 'job': {
        const cluster = random.pick(this.#clusters.slice(-8))
        if (cluster)
          await this.#renter(() =>
            this.#coordinator.controller.submitJob(cluster.accountId, cluster.id, {
              entrypoint: 'python train.py',
            }),
          )
        return
      }
      case 'join': {
        const worker = this.#workers.find((candidate) => !candidate.enrolled)
        if (!worker) return
        await this.#enroll(worker)
        return this.#connect(worker)
      }
      case 'disconnect': {
        const worker = random.pick(
          this.#workers.filter((candidate) => candidate.sessionId !== null && candidate.running),
        )
        if (!worker) return
        const sessionId = worker.sessionId!
        worker.sessionId = null
        return this.#coordinator.disconnect(worker.deviceId, sessionId, 'code 1006: the network dropped')
      }
      case 'reconnect': {
        // A machine back on the network, or a killed one started again (with no nodes).
        const worker = random.pick(
          this.#workers.filter(
            (candidate) => candidate.enrolled && (candidate.sessionId === null || !candidate.running),
          ),
        )
        if (!worker) return
        if (!worker.running && worker.sessionId !== null) {
          const stale = worker.sessionId
          worker.sessionId = null
          await this.#coordinator.disconnect(worker.deviceId, stale, 'replaced by a newer session')
        }
        worker.running = true
        return this.#connect(worker)
      }
      case 'die': {
        // SIGKILL: no close frame; the coordinator finds out when the heartbeats stop.
        const worker = random.pick(
          this.#workers.filter((candidate) => candidate.running && candidate.enrolled),
        )
        worker?.kill()
        return
      }
      case 'deposit':
        return this.#deposit(random.pick(this.#renterIds)!)
      case 'restart': {
        // The coordinator crashes and starts again over the same store; every worker connection is lost.
        this.#events.length = 0
        this.#lastArrival.clear()
        this.#coordinator = this.#newCoordinator()
        await this.#coordinator.start()
        for (const worker of this.#workers) worker.sessionId = null
        for (const worker of this.#workers)
          if (worker.enrolled && worker.running)
            this.#later(random.int(200, 5_000), () => this.#connect(worker))
        return
      }
    }
  }

  /** A renter's call: refusals (no machines, no funds, a cluster already ended) are part of the game. */
  async #renter<T>(call: () => Promise<T>): Promise<T | undefined> {
    try {
      return await call()
    } catch (error) {
      if (isRefusal(error)) return undefined
      throw error
    }
  }

  async #deposit(accountId: string): Promise<void> {
    const amount = BigInt(this.#random.int(1, 8)) * 1_000_000n
    const id = `deposit:${accountId}:${this.#deposited}:${amount}`
    const [result] = await this.#store.ledger.createTransfers(
      [
        {
          id,
          kind: 'single',
          debitAccountId: ledgerAccounts.settlement().id,
          creditAccountId: ledgerAccounts.user(accountId).id,
          amount,
          code: 'deposit',
          reference: 'sim',
        },
      ],
      this.#clock.nowMs(),
    )
    if (result !== 'ok') throw new Error(`deposit refused: ${result}`)
    this.#deposited += amount
  }

  async #enroll(worker: SimWorker): Promise<void> {
    await enrollTestDevice(this.#store, worker.deviceId, worker.supplierId, this.#clock.nowMs())
    worker.enrolled = true
  }

  async #connect(worker: SimWorker): Promise<void> {
    if (!worker.running || worker.sessionId !== null) return
    const sessionId = `ses_${this.#random.idBody()}`
    worker.sessionId = sessionId
    const generation = this.#generation
    await this.#coordinator.connect(
      worker.deviceId,
      {
        sessionId,
        deliver: (message: CoordinatorMessage) => {
          this.#inOrder(`${worker.deviceId}>`, () => {
            if (this.#generation === generation && worker.sessionId === sessionId) worker.onCommand(message)
          })
        },
      },
      {
        hostname: worker.deviceId,
        inventory: cpuInventory,
        region: 'sim',
        country: 'DE',
        pricing: { mode: 'fixed', askingPriceMicroUsd: worker.askingPriceMicroUsd },
        capabilities: simulatedCapabilities(),
      },
      worker.heldClusterIds(),
    )
  }

  #toCoordinator(worker: SimWorker, message: ClusterReportMessage): void {
    const sessionId = worker.sessionId
    if (sessionId === null) return
    const coordinator = this.#coordinator
    this.#inOrder(`${worker.deviceId}<`, () => coordinator.fromWorker(worker.deviceId, sessionId, message))
  }

  /** A frame on one direction of a device's link: after a seeded delay, never before the one sent before it. */
  #inOrder(lane: string, run: () => Promise<void> | void): void {
    const atMs = Math.max(
      this.#clock.nowMs() + this.#random.int(minLinkDelayMs, maxLinkDelayMs),
      this.#lastArrival.get(lane) ?? 0,
    )
    this.#lastArrival.set(lane, atMs)
    this.#at(atMs, run)
  }

  #later(delayMs: number, run: () => Promise<void> | void): void {
    this.#at(this.#clock.nowMs() + delayMs, run)
  }

  #at(atMs: number, run: () => Promise<void> | void): void {
    const event = { atMs, order: this.#order++, run: async () => run() }
    let low = 0
    let high = this.#events.length
    while (low < high) {
      const middle = (low + high) >> 1
      if (this.#events[middle]!.atMs <= atMs) low = middle + 1
      else high = middle
    }
    this.#events.splice(low, 0, event)
  }

  /** Time passes: frames arrive and ticks run in time order; running, connected workers keep heartbeating. */
  async #advance(durationMs: number): Promise<void> {
    const untilMs = this.#clock.nowMs() + durationMs
    for (;;) {
      const next = this.#events[0]
      const nextAtMs = Math.min(next?.atMs ?? Number.POSITIVE_INFINITY, this.#nextTickAtMs)
      if (nextAtMs > untilMs) break
      this.#moveTo(nextAtMs)
      if (next && next.atMs <= this.#nextTickAtMs) {
        this.#events.shift()
        await next.run()
      } else {
        this.#nextTickAtMs += this.#settings.tickMs
        this.#ticks += 1
        for (const worker of this.#workers)
          if (worker.running && worker.sessionId !== null)
            this.#coordinator.heartbeat(worker.deviceId, worker.sessionId)
        await this.#coordinator.tick({ flush: this.#ticks % this.#settings.flushEveryTicks === 0 })
        for (const worker of this.#workers)
          if (
            worker.sessionId !== null &&
            !this.#coordinator.links.isCurrent(worker.deviceId, worker.sessionId)
          )
            worker.sessionId = null
        if (this.#init.faults?.includes('double-charge')) await this.#chargeTwice()
      }
    }
    this.#moveTo(untilMs)
  }

  #moveTo(atMs: number): void {
    const delta = atMs - this.#clock.nowMs()
    if (delta > 0) this.#clock.advanceMs(delta)
  }

  /**
   * The fault the checkers must find: one billed interval of one cluster charged a second time (a bug in
   * billing's idempotency would look like this), by a transfer the ledger accepts.
   */
  async #chargeTwice(): Promise<void> {
    if (this.#doubleCharged || !this.#random.chance(0.3)) return
    for (const { id, accountId } of this.#clusters) {
      const cluster = await this.#store.getCluster(id)
      // Billing charges running clusters; an ended one's account is settled and never read again.
      if (!cluster || cluster.billedIntervals < 1 || isTerminalCluster(cluster)) continue
      const [charge] = await this.#store.ledger.listTransfersById([`bill:${id}:${cluster.billedIntervals}`])
      if (!charge) continue
      const [result] = await this.#store.ledger.createTransfers(
        [
          {
            id: `${charge.id}:again`,
            kind: 'single',
            debitAccountId: ledgerAccounts.user(accountId).id,
            creditAccountId: ledgerAccounts.escrow(id).id,
            amount: charge.amount,
            code: 'usage',
            reference: charge.reference ?? charge.id,
          },
        ],
        this.#clock.nowMs(),
      )
      if (result === 'ok') {
        this.#doubleCharged = true
        return
      }
    }
  }
}
