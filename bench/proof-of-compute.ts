// Proof-of-compute: what checking a challenge costs the coordinator against what proving it costs the worker.
//
// For each matrix size n: the real Python prover (numpy on this machine's CPU) computes C = A·B and its
// Merkle tree; the coordinator's own code (checkRowOpening) then checks the default number of opened rows,
// each with its Merkle proof and a sample of recomputed entries. CPU time is measured on both sides
// (Python's process_time for the prover, process.cpuUsage for the checker), repeated and the median taken.
// Checking is O(rows · samples · n) and proving O(n³), so the ratio falls with n; the production size is
// extrapolated from the measured coefficients and labelled as such.
//
// Run: node bench/proof-of-compute.ts [--sizes 256,512,1024,2048,4096] [--repeats 3]
import { randomBytes } from 'node:crypto'
import { parseArgs } from 'node:util'
import { seededRandom, gpuModelById } from '@gpumesh/core'
import {
  challengeSize,
  checkRowOpening,
  defaultChallengePolicy,
  fromHex,
  pickRows,
  matrixFlops,
  sampleColumns,
} from '@gpumesh/verification'
import { createPythonProver, resolvePythonPath } from '@gpumesh/worker'

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '256,512,1024,2048,4096' },
    repeats: { type: 'string', default: '3' },
  },
})
const sizes = values.sizes.split(',').map(Number)
const repeats = Number(values.repeats)
const policy = defaultChallengePolicy
const prover = createPythonProver(resolvePythonPath(process.env), 'cpu')
const median = (list: number[]) => [...list].sort((a, b) => a - b)[Math.floor(list.length / 2)]!

type Row = {
  n: number
  proverCpuMs: number
  proverWallMs: number
  checkCpuMs: number
  ratio: number
  gflops: number
}
const rows: Row[] = []
for (const n of sizes) {
  const proverCpu: number[] = []
  const proverWall: number[] = []
  const checkCpu: number[] = []
  for (let repeat = 0; repeat < repeats; repeat += 1) {
    const seed = randomBytes(32)
    const session = await prover.prove(seed.toString('hex'), n)
    const committed = session
    const requestedRows = pickRows(n, policy.rowsToOpen, seededRandom(repeat))
    const openings = await session.open(requestedRows)
    // the prover reports its own CPU time in the commitment reply
    const reply = session.cpuMs
    const started = process.cpuUsage()
    const sampled = sampleColumns(seed, n, policy, seededRandom(repeat + 1))
    for (const opening of openings) {
      const bytes = Buffer.from(opening.values, 'base64')
      const rowValues = new Int32Array(bytes.length / 4)
      for (let i = 0; i < rowValues.length; i += 1) rowValues[i] = bytes.readInt32LE(i * 4)
      const check = checkRowOpening(
        { row: opening.row, values: rowValues, proof: opening.proof.map((hex) => fromHex(hex)!) },
        { n, seed, root: fromHex(committed.merkleRoot)!, requestedRows, sampled },
      )
      if (!check.ok) throw new Error(`honest proof failed: ${check.detail}`)
    }
    const used = process.cpuUsage(started)
    checkCpu.push((used.user + used.system) / 1000)
    proverCpu.push(reply ?? Number.NaN)
    proverWall.push(session.totalMs ?? Number.NaN)
    session.close()
  }
  const proverCpuMs = median(proverCpu)
  const checkCpuMs = median(checkCpu)
  rows.push({
    n,
    proverCpuMs,
    proverWallMs: median(proverWall),
    checkCpuMs,
    ratio: checkCpuMs / proverCpuMs,
    gflops: matrixFlops(n) / (median(proverWall) / 1000) / 1e9,
  })
}

console.log(
  `proof-of-compute cost, ${repeats} runs per size (median), prover: numpy on this CPU, checker: ${policy.rowsToOpen} rows × ${policy.entriesCheckedPerRow} sampled columns`,
)
console.log('     n   prover CPU ms   prover wall ms   prover GFLOP/s   check CPU ms   check / prove')
for (const row of rows) {
  console.log(
    `${String(row.n).padStart(6)} ${row.proverCpuMs.toFixed(1).padStart(15)} ${row.proverWallMs.toFixed(1).padStart(16)} ${row.gflops.toFixed(1).padStart(16)} ${row.checkCpuMs.toFixed(2).padStart(14)} ${(row.ratio * 100).toFixed(3).padStart(14)}%`,
  )
}

// Extrapolation to the production size of an H100 claim: checking grows with n, proving with n³.
const largest = rows[rows.length - 1]!
const production = challengeSize({ gpuModel: gpuModelById('h100'), vramMib: 81_559 }, policy)
const checkAtProduction = largest.checkCpuMs * (production / largest.n)
const proveCpuAtProduction = largest.proverCpuMs * (production / largest.n) ** 3
const h100ProveMs = (matrixFlops(production) / (gpuModelById('h100')!.fp32Tflops * 1e12)) * 1000
console.log(
  `\nextrapolated to the H100 production size n=${production}: check ≈ ${checkAtProduction.toFixed(1)} ms CPU; ` +
    `proving on this CPU ≈ ${(proveCpuAtProduction / 1000).toFixed(0)} s CPU (ratio ${((checkAtProduction / proveCpuAtProduction) * 100).toFixed(4)}%); ` +
    `on an H100 at its data-sheet FP32 rate the multiply alone is ≈ ${h100ProveMs.toFixed(0)} ms ` +
    `(ratio to GPU time ${((checkAtProduction / h100ProveMs) * 100).toFixed(2)}%, not measured: no GPU here)`,
)
