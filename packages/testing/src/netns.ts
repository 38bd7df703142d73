import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'

// Test hosts: network namespaces joined by a bridge that lives in a namespace of its own, so every packet
// a test sends stays between hosts the test made. Everything is named after one random run id and removed
// by that name, even when the test fails.

export type TestHost = { readonly name: string; readonly namespace: string; readonly address: string }

export type TestNetwork = {
  readonly runId: string
  readonly hosts: readonly TestHost[]
  /** Starts a process inside a host's namespace; it is killed by destroy() if still running. */
  spawnIn(
    host: TestHost,
    command: string,
    args: readonly string[],
    options?: { env?: NodeJS.ProcessEnv; logPrefix?: string; stdin?: 'pipe' | 'ignore' },
  ): ChildProcess
  /** Runs a command inside a host's namespace and returns its stdout. */
  execIn(host: TestHost, command: string, args: readonly string[]): string
  destroy(): Promise<void>
}

function ip(args: readonly string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] })
}

/** Creates `names.length` hosts on one private /24 chosen from the run id. */
export function createTestNetwork(names: readonly string[]): TestNetwork {
  const runId = randomBytes(3).toString('hex')
  const subnetOctet = 16 + (parseInt(runId.slice(0, 2), 16) % 200)
  const bridgeNamespace = `gmt-${runId}-br`
  const namespaces: string[] = []
  const processes = new Set<ChildProcess>()
  const hosts: TestHost[] = []

  const destroy = async () => {
    await Promise.all(
      [...processes].map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve()
            const timer = setTimeout(() => child.kill('SIGKILL'), 3_000)
            child.once('exit', () => {
              clearTimeout(timer)
              resolve()
            })
            child.kill('SIGTERM')
          }),
      ),
    )
    // Deleting a namespace deletes the veth ends inside it, and with them their peers.
    for (const namespace of [...namespaces].reverse()) {
      try {
        ip(['netns', 'del', namespace])
      } catch {
        // already gone
      }
    }
  }

  try {
    ip(['netns', 'add', bridgeNamespace])
    namespaces.push(bridgeNamespace)
    ip(['-n', bridgeNamespace, 'link', 'add', 'br0', 'type', 'bridge'])
    ip(['-n', bridgeNamespace, 'link', 'set', 'br0', 'up'])
    names.forEach((name, index) => {
      const namespace = `gmt-${runId}-${name}`
      ip(['netns', 'add', namespace])
      namespaces.push(namespace)
      const hostEnd = `gm${runId}h${index}`
      const bridgeEnd = `gm${runId}b${index}`
      const address = `10.231.${subnetOctet}.${index + 10}`
      ip(['link', 'add', hostEnd, 'type', 'veth', 'peer', 'name', bridgeEnd])
      ip(['link', 'set', hostEnd, 'netns', namespace])
      ip(['link', 'set', bridgeEnd, 'netns', bridgeNamespace])
      ip(['-n', bridgeNamespace, 'link', 'set', bridgeEnd, 'master', 'br0', 'up'])
      ip(['-n', namespace, 'addr', 'add', `${address}/24`, 'dev', hostEnd])
      ip(['-n', namespace, 'link', 'set', hostEnd, 'up'])
      ip(['-n', namespace, 'link', 'set', 'lo', 'up'])
      hosts.push({ name, namespace, address })
    })
  } catch (error) {
    void destroy()
    throw error
  }

  return {
    runId,
    hosts,
    spawnIn(host, command, args, options = {}) {
      // `ip netns exec` execs the command in place, so the child's pid is the command's own.
      const child = spawn('ip', ['netns', 'exec', host.namespace, command, ...args], {
        env: options.env ?? process.env,
        stdio: [options.stdin ?? 'ignore', 'pipe', 'pipe'],
      })
      processes.add(child)
      child.once('exit', () => processes.delete(child))
      const prefix = options.logPrefix ?? host.name
      const relay = (chunk: Buffer) => {
        if (process.env['GPUMESH_TEST_VERBOSE']) process.stderr.write(`[${prefix}] ${chunk.toString()}`)
      }
      child.stdout?.on('data', relay)
      child.stderr?.on('data', relay)
      return child
    },
    execIn(host, command, args) {
      return execFileSync('ip', ['netns', 'exec', host.namespace, command, ...args], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
        timeout: 30_000,
      })
    },
    destroy,
  }
}
