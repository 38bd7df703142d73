// Runs inside a test host's namespace and drives one or more mesh interfaces there, as the worker will:
// JSON commands on stdin, one JSON reply per line on stdout.
import { createInterface } from 'node:readline'
import {
  createMeshInterface,
  generateWireguardKeyPair,
  type MeshInterface,
  type WireguardKeyPair,
} from '@gpumesh/worker'

const keys = new Map<string, WireguardKeyPair>()
const interfaces = new Map<string, MeshInterface>()
const reply = (message: object) => process.stdout.write(`${JSON.stringify(message)}\n`)

for await (const line of createInterface({ input: process.stdin })) {
  const command = JSON.parse(line)
  try {
    if (command.cmd === 'key') {
      const keyPair = generateWireguardKeyPair()
      keys.set(command.clusterId, keyPair)
      reply({ publicKey: keyPair.publicKey })
    } else if (command.cmd === 'start') {
      const mesh = createMeshInterface({
        plan: command.plan,
        keyPair: keys.get(command.clusterId)!,
        keyDir: command.keyDir,
        netnsMountNamespace: command.netnsMountNamespace,
      })
      interfaces.set(command.clusterId, mesh)
      await mesh.start()
      reply({ ok: true, pid: mesh.pid })
    } else if (command.cmd === 'stop') {
      await interfaces.get(command.clusterId)?.stop()
      interfaces.delete(command.clusterId)
      reply({ ok: true })
    }
  } catch (error) {
    reply({ error: String(error) })
  }
}
for (const mesh of interfaces.values()) await mesh.stop()
