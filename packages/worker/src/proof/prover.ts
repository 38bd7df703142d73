import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { fromHex, proveReference, seedWords, toHex } from '@gpumesh/verification'

// The worker's side of proof-of-compute: compute C = A·B for a challenge, commit to its Merkle root, then
// open the rows the coordinator asks for. The Python prover (numpy, or torch on a GPU) is the real one;
// the TypeScript reference prover is the fallback where no Python environment exists.

export type RowOpeningWire = {
  readonly row: number
  readonly values: string
  readonly proof: readonly string[]
}

export type ProofSession = {
  readonly merkleRoot: string
  readonly backend: string
  readonly computeMs: number
  /** The prover's whole run (generation, multiply, hashing), wall and CPU, where it reports them. */
  readonly totalMs?: number
  readonly cpuMs?: number
  open(rows: readonly number[]): Promise<RowOpeningWire[]>
  close(): void
}

export type Prover = {
  prove(seedHex: string, matrixSize: number): Promise<ProofSession>
}

const proverScript = fileURLToPath(new URL('../../python/prover.py', import.meta.url))
/** Bound on one prover exchange beyond the coordinator's own deadline. */
const proverReplyTimeoutMs = 15 * 60_000

export function createPythonProver(pythonPath: string, device = 'auto'): Prover {
  return {
    prove(seedHex, matrixSize) {
      const seed = fromHex(seedHex)
      if (!seed) return Promise.reject(new Error('challenge seed is not hex'))
      const words = seedWords(seed)
      const child = spawn(pythonPath, [proverScript, device], { stdio: ['pipe', 'pipe', 'pipe'] })
      const lines = createInterface({ input: child.stdout })
      const replies: ((line: string) => void)[] = []
      let failure: Error | undefined
      const stderr: string[] = []
      child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk.toString()))
      lines.on('line', (line) => replies.shift()?.(line))
      const exited = new Promise<void>((resolve) => {
        child.once('error', (error) => {
          failure = error
          resolve()
        })
        child.once('exit', (code) => {
          failure ??= new Error(`prover exited with code ${code}: ${stderr.join('').slice(-500)}`)
          resolve()
        })
      })
      const ask = async (request: object): Promise<any> => {
        if (failure) throw failure
        const reply = new Promise<string>((resolve) => replies.push(resolve))
        child.stdin.write(`${JSON.stringify(request)}\n`)
        let timer: NodeJS.Timeout | undefined
        const timeout = new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error('prover did not answer in time')), proverReplyTimeoutMs)
        })
        try {
          const line = await Promise.race([reply, exited.then(() => Promise.reject(failure)), timeout])
          const parsed = JSON.parse(line) as { error?: string }
          if (parsed.error) throw new Error(`prover: ${parsed.error}`)
          return parsed
        } finally {
          clearTimeout(timer)
        }
      }
      const close = () => {
        child.stdin.end()
        if (child.exitCode === null) setTimeout(() => child.kill('SIGKILL'), 5_000).unref()
      }
      return ask({ seedWordA: words.a, seedWordB: words.b, n: matrixSize }).then(
        (committed: {
          root: string
          computeMs: number
          backend: string
          totalMs?: number
          cpuMs?: number
        }) => ({
          merkleRoot: committed.root,
          backend: committed.backend,
          computeMs: committed.computeMs,
          ...(committed.totalMs === undefined ? {} : { totalMs: committed.totalMs }),
          ...(committed.cpuMs === undefined ? {} : { cpuMs: committed.cpuMs }),
          open: async (rows) => ((await ask({ rows })) as { rows: RowOpeningWire[] }).rows,
          close,
        }),
        (error: unknown) => {
          close()
          throw error
        },
      )
    },
  }
}

export const referenceProver: Prover = {
  async prove(seedHex, matrixSize) {
    const seed = fromHex(seedHex)
    if (!seed) throw new Error('challenge seed is not hex')
    const started = performance.now()
    const committed = proveReference(seed, matrixSize)
    return {
      merkleRoot: toHex(committed.root),
      backend: 'typescript-reference',
      computeMs: performance.now() - started,
      open: async (rows) => rows.map((row) => encodeOpening(row, committed.open(row))),
      close() {},
    }
  },
}

export function encodeOpening(
  row: number,
  opened: { values: Int32Array; proof: readonly Uint8Array[] },
): RowOpeningWire {
  const bytes = Buffer.alloc(opened.values.length * 4)
  opened.values.forEach((value, index) => bytes.writeInt32LE(value, index * 4))
  return { row, values: bytes.toString('base64'), proof: opened.proof.map(toHex) }
}
