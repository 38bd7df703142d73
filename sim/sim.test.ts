import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { runSimulation, type SimInit, type SimOutcome } from './simulation.ts'

// The seeded simulation in CI: a long seeded run over the real controller, billing and ledger finds no
// broken invariant; a deliberately broken one (an interval charged twice) is found, and its printed seed
// and step replay it to the same failure; one seed gives one history on either store.

/** Steps of the CI run (the issue asks 10,000 in under two minutes; see docs/architecture.md, sim/). */
const ciSteps = Number(process.env.GPUMESH_SIM_STEPS ?? 10_000)

function describeRun(outcome: SimOutcome, store: string): string {
  const rate = outcome.stepsRun / (outcome.elapsedMs / 1000)
  return `sim (${store}): seed ${outcome.seed}, ${outcome.stepsRun} steps in ${(outcome.elapsedMs / 1000).toFixed(1)} s (${rate.toFixed(0)} steps/s, ${(outcome.cpuMs / 1000).toFixed(1)} s CPU here), ${outcome.clustersCreated} clusters, ${outcome.intervalsBilled} intervals billed`
}

/** What a run did, without its timings: the same seed must give the same of each. */
function history(outcome: SimOutcome) {
  const { stepsRun, failure, simulatedMs, actions, clustersCreated, intervalsBilled } = outcome
  return { stepsRun, failure, simulatedMs, actions, clustersCreated, intervalsBilled }
}

describe('seeded simulation', () => {
  // On PostgreSQL: the store's queries run in the database's own process, beside the simulation's, which
  // on PGlite (WebAssembly in this process) take about three quarters of the run's time.
  it(`runs ${ciSteps} seeded steps on PostgreSQL with every invariant holding`, async () => {
    const outcome = await runSimulation({ seed: 14, steps: ciSteps, workers: 12, store: 'postgres' })
    console.log(describeRun(outcome, 'postgres'))
    assert.equal(
      outcome.failure,
      undefined,
      outcome.failure && `${outcome.failure.message}\n${outcome.failure.replay}`,
    )
    assert.equal(outcome.stepsRun, ciSteps)
    // The run did what it is for: clusters were made and billed, machines died and the coordinator restarted.
    assert.ok(outcome.clustersCreated >= ciSteps / 200, `${outcome.clustersCreated} clusters created`)
    assert.ok(outcome.intervalsBilled >= ciSteps / 50, `${outcome.intervalsBilled} intervals billed`)
    for (const action of ['die', 'restart', 'reconnect', 'terminate', 'extend'])
      assert.ok((outcome.actions[action] ?? 0) > 0, `no ${action} in the run`)
  })

  it('gives one seed the same history on PGlite as on PostgreSQL', async () => {
    const init: SimInit = { seed: 3, steps: 800, workers: 8 }
    const embedded = await runSimulation({ ...init, store: 'pglite' })
    const server = await runSimulation({ ...init, store: 'postgres' })
    console.log(describeRun(embedded, 'pglite'))
    console.log(describeRun(server, 'postgres'))
    assert.equal(embedded.failure, undefined, embedded.failure?.message)
    assert.ok(
      embedded.clustersCreated > 0 && embedded.intervalsBilled > 0,
      'the run made and billed clusters',
    )
    assert.deepEqual(history(embedded), history(server))
  })

  it('finds an interval charged twice and replays it from the printed seed and step', async () => {
    const init: SimInit = { seed: 7, steps: 3_000, workers: 8, faults: ['double-charge'] }
    const found = await runSimulation(init)
    assert.ok(found.failure, 'the double charge went unnoticed')
    // The checker names the extra charge (the fault's transfer id ends in ':again').
    assert.match(
      found.failure.message,
      /charge bill:cls_\w+:\d+:again is not one of its \d+ billed intervals/,
    )
    assert.equal(
      found.failure.replay,
      `node sim/run.ts --seed 7 --steps ${found.failure.step} --workers 8 --fault double-charge`,
    )
    console.log(`sim: the double charge was found at step ${found.failure.step}: ${found.failure.message}`)
    const replayed = await runSimulation({ ...init, steps: found.failure.step })
    assert.deepEqual(replayed.failure, found.failure)
  })
})
