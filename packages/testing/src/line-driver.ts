import type { ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import type { TestHost, TestNetwork } from './netns.ts'

/** A helper process on a test host that takes one JSON command per line and answers one JSON line each. */
export type LineDriver = {
  readonly host: TestHost
  readonly child: ChildProcess
  ask(command: object): Promise<any>
}

export function startLineDriver(network: TestNetwork, host: TestHost, script: string): LineDriver {
  const child = network.spawnIn(host, process.execPath, [script], { stdin: 'pipe' })
  const replies: ((line: string) => void)[] = []
  createInterface({ input: child.stdout! }).on('line', (line) => replies.shift()?.(line))
  return {
    host,
    child,
    ask(command) {
      const reply = new Promise<string>((resolve) => replies.push(resolve))
      child.stdin!.write(`${JSON.stringify(command)}\n`)
      return reply.then((line) => {
        const parsed = JSON.parse(line) as { error?: string }
        if (parsed.error) throw new Error(`${host.name}: ${parsed.error}`)
        return parsed
      })
    },
  }
}
