import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import {
  managedPython as python,
  modelServerUnavailable,
  repositoryRoot,
  startModelServer,
  type RunningModelServer,
} from '@gpumesh/testing'

// The shipped tiny model and the Python code that serves any model in the store: the runtime's self-test and
// unit tests, then the Ray Serve launcher on loopback answering OpenAI-shaped requests with exact token
// counts, and stopping cleanly on SIGTERM. Needs the managed Python environment (scripts/setup-python.sh).

const modelsDir = join(repositoryRoot, 'python/gpumesh_models')
const unavailable = modelServerUnavailable()

describe('the tiny model and its serving code', { skip: unavailable ?? false }, () => {
  let launcher: RunningModelServer | undefined
  after(async () => {
    await launcher?.stop(5_000)
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
    const server = await startModelServer()
    launcher = server
    const { ready } = server
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

    const exitCode = await server.stop()
    assert.equal(exitCode, 0, 'the launcher exits 0 on SIGTERM')
    launcher = undefined
  })
})
