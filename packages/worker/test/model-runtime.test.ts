import assert from 'node:assert/strict'
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { after, describe, it } from 'node:test'

// The shipped tiny model and the Python code that serves any model in the store: the runtime's self-test and
// unit tests, then the Ray Serve launcher on loopback answering OpenAI-shaped requests with exact token
// counts, and stopping cleanly on SIGTERM. Needs the managed Python environment (scripts/setup-python.sh).

const repoRoot = resolve(import.meta.dirname, '../../..')
const python = join(repoRoot, '.venv/bin/python')
const modelsDir = join(repoRoot, 'python/gpumesh_models')
const tinyModel = join(repoRoot, 'python/models/tiny-chat')
const usable =
  existsSync(python) &&
  existsSync(join(tinyModel, 'model.safetensors')) &&
  (() => {
    try {
      execFileSync(python, ['-c', 'import torch, ray.serve'], { stdio: 'ignore' })
      return true
    } catch {
      return false
    }
  })()

describe(
  'the tiny model and its serving code',
  { skip: usable ? false : 'needs .venv with torch and Ray Serve (scripts/setup-python.sh)' },
  () => {
    let launcher: ChildProcess | undefined
    after(() => {
      launcher?.kill('SIGKILL')
    })

    it('passes the runtime self-test and unit tests', () => {
      const selftest = JSON.parse(
        execFileSync(python, [join(modelsDir, 'selftest.py')], { encoding: 'utf8', timeout: 120_000 })
          .trim()
          .split('\n')
          .pop()!,
      )
      assert.equal(selftest.ok, true, JSON.stringify(selftest))
      assert.ok(selftest.checks >= 5)
      // unittest reports on stderr: the count of tests run and OK, or what failed.
      const units = spawnSync(python, [join(modelsDir, 'test_units.py')], {
        encoding: 'utf8',
        timeout: 120_000,
      })
      assert.equal(units.status, 0, units.stderr)
      assert.match(units.stderr, /Ran [1-9]\d* tests?/)
      assert.match(units.stderr, /\nOK\s*$/)
    })

    it('serves the model with Ray Serve: OpenAI-shaped replies with exact token counts, and stops on SIGTERM', async () => {
      launcher = spawn(
        python,
        [
          join(modelsDir, 'serve_model.py'),
          '--model-dir',
          tinyModel,
          '--expected-sha256-file',
          join(repoRoot, 'python/models/tiny-chat.sha256'),
          '--host',
          '127.0.0.1',
          '--port',
          '0',
          '--num-replicas',
          '1',
          '--num-cpus',
          '2',
          '--node-ip-address',
          '127.0.0.1',
          '--object-store-memory-bytes',
          String(100 * 1024 * 1024),
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      )
      const child = launcher
      let stderr = ''
      child.stderr!.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)))
      const ready = await new Promise<{ url: string }>((resolveReady, reject) => {
        let stdout = ''
        const timer = setTimeout(
          () => reject(new Error(`no ready line in 180 s; stderr: ${stderr}`)),
          180_000,
        )
        child.stdout!.on('data', (chunk: Buffer) => {
          stdout += chunk.toString()
          const line = stdout.split('\n').find((text) => text.startsWith('GPUMESH-SERVE-'))
          if (!line) return
          clearTimeout(timer)
          if (line.startsWith('GPUMESH-SERVE-READY '))
            resolveReady(JSON.parse(line.slice('GPUMESH-SERVE-READY '.length)))
          else reject(new Error(`${line}; stderr: ${stderr}`))
        })
        child.once('exit', (code) => reject(new Error(`launcher exited ${code}; stderr: ${stderr}`)))
      })

      const prompt = 'The Fox and the '
      const response = await fetch(`${ready.url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'tiny-chat', prompt, max_tokens: 12, temperature: 0, seed: 7 }),
      })
      assert.equal(response.status, 200)
      const completion = (await response.json()) as any
      assert.equal(completion.object, 'text_completion')
      // One token per character of the prompt: counted here by hand.
      assert.equal(completion.usage.prompt_tokens, [...prompt].length)
      assert.ok(completion.usage.completion_tokens >= 1 && completion.usage.completion_tokens <= 12)
      assert.equal(
        completion.usage.total_tokens,
        completion.usage.prompt_tokens + completion.usage.completion_tokens,
      )
      assert.equal(typeof completion.choices[0].text, 'string')

      const tooLong = await fetch(`${ready.url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'tiny-chat', prompt: 'x', max_tokens: 100_000 }),
      })
      assert.equal(tooLong.status, 400)
      assert.equal(((await tooLong.json()) as any).error.param, 'max_tokens')

      child.kill('SIGTERM')
      const exitCode = await new Promise<number | null>((resolveExit) => child.once('exit', resolveExit))
      assert.equal(exitCode, 0, stderr)
      launcher = undefined
    })
  },
)
