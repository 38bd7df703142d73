import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { ValidationError } from '@gpumesh/core'
import {
  ComputeSpeedtestError,
  repositoryRoot,
  resolvePythonPath,
  runComputeSpeedtest,
} from '@gpumesh/worker'

// The real Python script on this machine's CPU (numpy in the managed environment; .ci/run creates it).

const managedPython = join(repositoryRoot, '.venv', 'bin', 'python')

describe('compute speedtest', () => {
  it('finds the managed environment first, then GPUMESH_PYTHON, then python3', () => {
    assert.equal(resolvePythonPath({ GPUMESH_PYTHON_ENV: '/opt/env' }), '/opt/env/bin/python')
    if (existsSync(managedPython)) assert.equal(resolvePythonPath({}), managedPython)
    else {
      assert.equal(resolvePythonPath({ GPUMESH_PYTHON: '/usr/bin/python3.11' }), '/usr/bin/python3.11')
      assert.equal(resolvePythonPath({}), 'python3')
    }
  })

  it('measures the CPU with numpy and reports positive figures', { timeout: 120_000 }, async () => {
    const result = await runComputeSpeedtest({
      pythonPath: managedPython,
      env: { GPUMESH_SPEEDTEST_FORCE_CPU: '1' },
    })
    assert.equal(result.backend, 'numpy-cpu')
    assert.match(result.python, /^3\.\d+\.\d+/)
    assert.equal(result.devices.length, 1)
    const [cpu] = result.devices
    assert.equal(cpu!.kind, 'cpu')
    assert.ok(cpu!.matmulTflops.fp32! > 0)
    assert.ok(cpu!.matmulTflops.fp64! > 0)
    assert.ok(cpu!.memoryBandwidthGBps > 0)
    assert.ok(cpu!.usableMemoryMiB > 0)
    process.stdout.write(`# compute: ${JSON.stringify(result)}\n`)
  })

  it('says clearly when the Python is missing', async () => {
    await assert.rejects(
      runComputeSpeedtest({ pythonPath: '/nonexistent/bin/python' }),
      (error: unknown) =>
        error instanceof ComputeSpeedtestError &&
        /no such file/.test(error.message) &&
        /setup-python\.sh/.test(error.message),
    )
  })

  it('refuses output of the wrong shape, naming the field', async () => {
    const directory = mkdtempSync(join(tmpdir(), 'gpumesh-compute-'))
    try {
      const script = join(directory, 'wrong.py')
      writeFileSync(script, 'import json\nprint(json.dumps({"backend": "numpy-cpu", "python": "3"}))\n')
      await assert.rejects(
        runComputeSpeedtest({ pythonPath: managedPython, scriptPath: script }),
        (error: unknown) => error instanceof ValidationError && /devices/.test(error.message),
      )
      writeFileSync(script, 'print("not json")\n')
      await assert.rejects(
        runComputeSpeedtest({ pythonPath: managedPython, scriptPath: script }),
        (error: unknown) => error instanceof ComputeSpeedtestError && /no JSON result/.test(error.message),
      )
    } finally {
      rmSync(directory, { recursive: true, force: true })
    }
  })
})
