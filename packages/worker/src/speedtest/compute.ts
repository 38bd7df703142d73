import { execFile, type ExecFileException } from 'node:child_process'
import { ComputeSpeedtestResult, createValidator } from '@gpumesh/protocol'

// The compute half of the speedtest: a Python script (packages/worker/python/speedtest_compute.py) measures
// matmul throughput, memory bandwidth and usable memory with torch on each GPU, or with numpy on the CPU,
// and prints one JSON object, checked here against the protocol schema before anyone reads it.

export const speedtestComputeScriptPath = new URL('../../python/speedtest_compute.py', import.meta.url)
  .pathname
export const defaultComputeSpeedtestTimeoutMs = 300_000
/** The script prints one small JSON object; more than this is refused. */
const maxScriptOutputBytes = 1024 * 1024

const resultValidator = createValidator(ComputeSpeedtestResult, 'compute speedtest output')

export type ComputeSpeedtestInit = {
  readonly pythonPath: string
  /** Default 300 s: a GPU run measures four precisions per card. */
  readonly timeoutMs?: number
  readonly scriptPath?: string
  /** Extra environment for the script (e.g. CUDA_VISIBLE_DEVICES); the worker's own environment is inherited. */
  readonly env?: Readonly<Record<string, string>>
}

export class ComputeSpeedtestError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'ComputeSpeedtestError'
  }
}

export async function runComputeSpeedtest(init: ComputeSpeedtestInit): Promise<ComputeSpeedtestResult> {
  const timeoutMs = init.timeoutMs ?? defaultComputeSpeedtestTimeoutMs
  const scriptPath = init.scriptPath ?? speedtestComputeScriptPath
  const { stdout, stderr, error } = await new Promise<{
    stdout: string
    stderr: string
    error: ExecFileException | null
  }>((resolve) => {
    execFile(
      init.pythonPath,
      [scriptPath],
      {
        timeout: timeoutMs,
        maxBuffer: maxScriptOutputBytes,
        killSignal: 'SIGKILL',
        env: { ...process.env, ...init.env, PYTHONDONTWRITEBYTECODE: '1' },
      },
      (error, stdout, stderr) => resolve({ stdout, stderr, error }),
    )
  })
  if (error?.code === 'ENOENT') {
    throw new ComputeSpeedtestError(
      `cannot run ${init.pythonPath}: no such file. Create the managed Python environment (bash scripts/setup-python.sh) or name one with GPUMESH_PYTHON_ENV`,
      { cause: error },
    )
  }
  if (error?.code === 'EACCES') {
    throw new ComputeSpeedtestError(`cannot run ${init.pythonPath}: not executable`, { cause: error })
  }
  if (error?.killed || error?.signal) {
    throw new ComputeSpeedtestError(
      `the compute speedtest did not finish within ${Math.round(timeoutMs / 1000)} s and was stopped`,
      { cause: error },
    )
  }
  const lastLine = stdout.trim().split('\n').at(-1) ?? ''
  let parsed: unknown
  try {
    parsed = JSON.parse(lastLine)
  } catch {
    const detail = (stderr.trim() || stdout.trim() || String(error?.message ?? '')).slice(-2000)
    throw new ComputeSpeedtestError(
      `the compute speedtest (${init.pythonPath}) printed no JSON result${detail ? `: ${detail}` : ''}`,
      { cause: error ?? undefined },
    )
  }
  if (
    typeof parsed === 'object' &&
    parsed !== null &&
    typeof (parsed as { error?: unknown }).error === 'string'
  ) {
    throw new ComputeSpeedtestError(`the compute speedtest failed: ${(parsed as { error: string }).error}`)
  }
  if (error) {
    throw new ComputeSpeedtestError(`the compute speedtest exited with status ${String(error.code)}`, {
      cause: error,
    })
  }
  return resultValidator.parse(parsed)
}
