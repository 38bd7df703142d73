import assert from 'node:assert/strict'
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { freeTcpPort } from '@gpumesh/testing'
import { cleanUpModelReplicaLeftovers, removeClusterNodesOf } from '@gpumesh/worker'

// The first hour of a new user, as the README tells it: a fresh clone of this repository in a temporary
// folder, with no managed Python runtime yet, runs `./gpumesh up`; then every line of the README's
// "first hour" block runs, exactly as written, in a second shell, and each prints what the README says.
// (The Debian packages are the machine's: CI installed them, so `up` finds them; bench/first-hour.ts
// measures a run that installs them too.)

const repoRoot = resolve(import.meta.dirname, '../..')
const readmeBlock = (() => {
  const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8')
  const block = /<!-- first-hour:begin -->\n```sh\n([\s\S]*?)```\n<!-- first-hour:end -->/.exec(readme)
  assert.ok(block, 'README.md has the first-hour block')
  // One command per line; a trailing backslash continues it.
  return block[1]!
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
})()

/** What each README command must print (stdout and stderr together), by how it starts. */
const expectations: [RegExp, (output: string) => void][] = [
  [/^\.\/gpumesh offers search/, (out) => assert.equal(out.match(/CPU \(/g)?.length, 3, out)],
  [/^\.\/gpumesh quote/, (out) => assert.match(out, /total|USD/i)],
  [/^eval/, () => undefined],
  [
    /^curl -s \$GPUMESH_COORDINATOR\/v1\/models/,
    (out) => {
      const served = JSON.parse(out).data.find((model: { id: string }) => model.id === 'tiny-chat')
      assert.ok(served?.replicas >= 1, out)
    },
  ],
  [
    /^curl -s \$GPUMESH_COORDINATOR\/v1\/chat\/completions/,
    (out) => {
      const reply = JSON.parse(out)
      assert.equal(reply.object, 'chat.completion', out)
      assert.ok(reply.choices[0].message.content.length > 0)
      assert.ok(reply.usage.completion_tokens > 0)
    },
  ],
  [/^pip install openai/, () => undefined],
  [/^python3 -c .*openai/, (out) => assert.ok(out.trim().length > 0, 'the model answered')],
  [
    /^\.\/gpumesh cluster create/,
    (out) => assert.match(out, /cluster cls_\S+ ready in \d+ s: 2\/2 nodes in Ray/),
  ],
  [/^\.\/gpumesh job submit/, (out) => assert.match(out, /'CPU': \d/)],
  [/^\.\/gpumesh job ls/, (out) => assert.match(out, /succeeded/)],
  [/^\.\/gpumesh cluster terminate/, (out) => assert.match(out, /terminated/)],
  [/^\.\/gpumesh wallet balance/, (out) => assert.match(out, /balance \d+\.\d+ GMT/)],
  [/^\.\/gpumesh wallet history/, (out) => assert.match(out, /100\.000000|faucet|deposit/i)],
  [/device ls/, (out) => assert.equal(out.match(/clusters, models/g)?.length, 3, out)],
]

describe(
  'the first hour on a fresh clone',
  // Under CI every prerequisite is installed by .ci/run: a missing one fails rather than skips.
  { skip: process.getuid?.() === 0 || process.env['CI'] ? false : 'needs root (up installs and sandboxes)' },
  () => {
    const workDir = mkdtempSync(join(tmpdir(), 'gpumesh-first-hour-'))
    const clone = join(workDir, 'gpumesh')
    const dataDir = join(workDir, 'local')
    const configDir = join(workDir, 'config')
    const clientEnv = join(workDir, 'client-python')
    let up: ChildProcess | undefined
    let upOutput = ''
    let accounts: { supplierKey: string; renterKey: string }
    let env: NodeJS.ProcessEnv

    before(
      async () => {
        // The sandbox user runs the clone's managed Python: every directory above it must be open to it.
        chmodSync(workDir, 0o755)
        execFileSync('git', ['clone', '--quiet', '--no-hardlinks', repoRoot, clone])
        assert.ok(!existsSync(join(clone, '.venv')), 'the clone has no managed Python runtime yet')
        const port = await freeTcpPort()
        env = {
          PATH: `${join(clientEnv, 'bin')}:${process.env['PATH']}`,
          HOME: process.env['HOME'] ?? '/root',
          LANG: 'C.UTF-8',
          GPUMESH_CONFIG_DIR: configDir,
          // This machine has no route to pypi.org: pip goes straight to its configured local index.
          PIP_RETRIES: '0',
          PIP_DISABLE_PIP_VERSION_CHECK: '1',
        }
        up = spawn(join(clone, 'gpumesh'), ['up', '--port', String(port), '--data-dir', dataDir], {
          cwd: clone,
          env,
          stdio: ['ignore', 'pipe', 'pipe'],
          detached: true,
        })
        up.stdout!.on('data', (chunk: Buffer) => (upOutput += chunk.toString()))
        up.stderr!.on('data', (chunk: Buffer) => (upOutput += chunk.toString()))
        // The README's `pip install openai` runs in a Python environment of the user's own.
        execFileSync('python3', ['-m', 'venv', clientEnv])
        const deadline = Date.now() + 15 * 60_000
        while (!upOutput.includes('Press Ctrl-C to stop the network.')) {
          if (up.exitCode !== null) assert.fail(`gpumesh up exited (${up.exitCode}):\n${upOutput}`)
          if (Date.now() > deadline) assert.fail(`gpumesh up was not ready in 15 min:\n${upOutput}`)
          await new Promise((done) => setTimeout(done, 500))
        }
        accounts = JSON.parse(readFileSync(join(dataDir, 'accounts.json'), 'utf8'))
      },
      { timeout: 16 * 60_000 },
    )

    after(
      async () => {
        if (up && up.exitCode === null) {
          const exited = new Promise((done) => up!.once('exit', done))
          process.kill(-up.pid!, 'SIGINT')
          const timer = setTimeout(() => process.kill(-up!.pid!, 'SIGKILL'), 60_000)
          await exited
          clearTimeout(timer)
        }
        // Safety net, by what this run's own workers recorded: nodes and replicas left if up was killed.
        for (let index = 1; index <= 3; index += 1) {
          const stateDir = join(dataDir, `worker-${index}`)
          if (!existsSync(join(stateDir, 'enrollment.json'))) continue
          const { deviceId } = JSON.parse(readFileSync(join(stateDir, 'enrollment.json'), 'utf8'))
          const clusterIds = existsSync(join(stateDir, 'cluster-nodes.json'))
            ? (
                JSON.parse(readFileSync(join(stateDir, 'cluster-nodes.json'), 'utf8')) as {
                  clusterId: string
                }[]
              ).map((node) => node.clusterId)
            : []
          await removeClusterNodesOf(deviceId, clusterIds)
          await cleanUpModelReplicaLeftovers(stateDir, undefined)
        }
        rmSync(workDir, { recursive: true, force: true })
      },
      { timeout: 3 * 60_000 },
    )

    it('up on a fresh clone made the runtime, logged the CLI in and funded the renter', () => {
      assert.match(upOutput, /Python runtime: made the managed environment/)
      assert.match(upOutput, /clusters {6}on \(3 of 3 workers\)/)
      assert.match(upOutput, /inference {5}on \(3 of 3 workers\)/)
      assert.match(upOutput, /funded with 100 GMT from the faucet/)
      assert.ok(existsSync(join(configDir, 'credentials.json')), 'the CLI is logged in')
      assert.ok(existsSync(join(clone, '.venv', 'bin', 'python')))
    })

    it(
      "runs every command of the README's first hour, each printing what the README says",
      { timeout: 12 * 60_000 },
      () => {
        const script = readmeBlock
          .map((command, index) => {
            const runnable = command
              .replaceAll('<supplier key>', accounts.supplierKey)
              .replaceAll('<renter key>', accounts.renterKey)
            return `echo "@@begin ${index}"\n{ ${runnable}\n} 2>&1\necho "@@end ${index} $?"`
          })
          .join('\n')
        mkdirSync(join(workDir, 'shell'), { recursive: true })
        writeFileSync(join(workDir, 'shell', 'first-hour.sh'), `${script}\n`)
        let output: string
        try {
          output = execFileSync('bash', [join(workDir, 'shell', 'first-hour.sh')], {
            cwd: clone,
            env,
            encoding: 'utf8',
            stdio: ['ignore', 'pipe', 'pipe'],
            maxBuffer: 64 * 1024 * 1024,
            timeout: 11 * 60_000,
          })
        } catch (error) {
          assert.fail(
            `the first-hour commands did not finish: ${(error as { stdout?: string }).stdout ?? error}`,
          )
        }
        readmeBlock.forEach((command, index) => {
          const section = new RegExp(`@@begin ${index}\\n([\\s\\S]*?)@@end ${index} (\\d+)`).exec(output)
          assert.ok(section, `no output for: ${command}`)
          const [, printed, code] = section
          assert.equal(code, '0', `${command}\nexited ${code}:\n${printed}`)
          const expectation = expectations.find(([prefix]) => prefix.test(command))
          assert.ok(expectation, `the test has no expectation for the README command: ${command}`)
          try {
            expectation[1](printed!)
          } catch (error) {
            throw new Error(`${command}\nprinted what the README does not say:\n${printed}\n${String(error)}`)
          }
        })
      },
    )
  },
)
