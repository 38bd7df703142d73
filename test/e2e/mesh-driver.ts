// Runs inside a test host's namespace and drives mesh interfaces and Ray nodes there, as the worker will:
// JSON commands on stdin, one JSON reply per line on stdout.
import { createInterface } from 'node:readline'
import {
  createRayNode,
  generateWireguardKeyPair,
  startMeshInterface,
  type MeshInterface,
  type RayNode,
} from '@gpumesh/worker'
import type { WireguardKeyPair } from '@gpumesh/mesh'

const keys = new Map<string, WireguardKeyPair>()
const interfaces = new Map<string, MeshInterface>()
const rayNodes = new Map<string, RayNode>()
const reply = (message: object) => process.stdout.write(`${JSON.stringify(message)}\n`)

for await (const line of createInterface({ input: process.stdin })) {
  const command = JSON.parse(line)
  try {
    if (command.cmd === 'key') {
      const keyPair = generateWireguardKeyPair()
      keys.set(command.clusterId, keyPair)
      reply({ publicKey: keyPair.publicKey })
    } else if (command.cmd === 'start') {
      const mesh = await startMeshInterface(command.plan, {
        keyPair: keys.get(command.clusterId)!,
        keyDir: command.keyDir,
        netnsMountNamespace: command.netnsMountNamespace,
      })
      interfaces.set(command.clusterId, mesh)
      reply({ ok: true, pid: mesh.pid })
    } else if (command.cmd === 'ray-start') {
      const node = createRayNode(command.ray)
      rayNodes.set(command.clusterId, node)
      await node.start()
      reply({ ok: true, processGroupId: node.processGroupId })
    } else if (command.cmd === 'ray-stop') {
      await rayNodes.get(command.clusterId)?.stop()
      rayNodes.delete(command.clusterId)
      reply({ ok: true })
    } else if (command.cmd === 'stop') {
      await interfaces.get(command.clusterId)?.stop()
      interfaces.delete(command.clusterId)
      reply({ ok: true })
    }
  } catch (error) {
    reply({ error: String(error) })
  }
}
for (const node of rayNodes.values()) await node.stop()
for (const mesh of interfaces.values()) await mesh.stop()
