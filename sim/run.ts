import { parseArgs } from 'node:util'
import { runSimulation, type SimFault } from './simulation.ts'

// node sim/run.ts --seed S --steps N [--workers W] [--fault double-charge] [--store pglite|postgres]
// Runs the seeded simulation; on a broken invariant prints the step and the command that replays it, and
// exits 1. Without --seed, a seed is drawn and printed, so any run can be replayed.

const { values } = parseArgs({
  options: {
    seed: { type: 'string' },
    steps: { type: 'string', default: '10000' },
    workers: { type: 'string', default: '12' },
    fault: { type: 'string', multiple: true, default: [] },
    quiet: { type: 'boolean', default: false },
    store: { type: 'string', default: 'pglite' },
  },
})

const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed)
const steps = Number(values.steps)
const workers = Number(values.workers)
const faults = values.fault as SimFault[]
for (const [name, value] of Object.entries({ seed, steps, workers }))
  if (!Number.isSafeInteger(value) || value < 0) throw new Error(`--${name} must be a whole number`)
for (const fault of faults)
  if (fault !== 'double-charge') throw new Error(`unknown --fault ${fault} (known: double-charge)`)

const store = values.store
if (store !== 'pglite' && store !== 'postgres')
  throw new Error(`--store must be pglite or postgres, not ${store}`)

const outcome = await runSimulation({ seed, steps, workers, faults, store })
const perSecond = outcome.stepsRun / (outcome.elapsedMs / 1000)
console.log(
  `sim: seed ${seed}, ${outcome.stepsRun} steps in ${(outcome.elapsedMs / 1000).toFixed(1)} s (${perSecond.toFixed(0)} steps/s; ${(outcome.cpuMs / 1000).toFixed(1)} s CPU), ` +
    `${(outcome.simulatedMs / 3_600_000).toFixed(2)} h simulated, ${outcome.clustersCreated} clusters, ${outcome.intervalsBilled} intervals billed`,
)
if (!values.quiet) console.log(`sim: actions ${JSON.stringify(outcome.actions)}`)
if (outcome.failure) {
  console.error(
    `sim: invariant broken at step ${outcome.failure.step} (seed ${seed}): ${outcome.failure.message}`,
  )
  console.error(`sim: replay with: ${outcome.failure.replay}`)
  process.exitCode = 1
}
