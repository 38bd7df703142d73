import assert from 'node:assert/strict'
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { planMesh, type MeshPlan } from '@gpumesh/mesh'
import {
  createTestNetwork,
  startLineDriver,
  type LineDriver,
  type TestHost,
  type TestNetwork,
} from '@gpumesh/testing'

// Real wireguard-go meshes between test hosts: cluster A spans three hosts, cluster B two of the same
// hosts. Each node's interface lives in its cluster's own namespace, so a process there reaches its own
// cluster's nodes over the mesh and nothing else: not another cluster, not the hosts' network.

const driverScript = new URL('./mesh-driver.ts', import.meta.url).pathname
const isRoot = process.getuid?.() === 0
const hasWireguard = (() => {
  try {
    execFileSync('wireguard-go', ['--version'], { stdio: 'ignore' })
    execFileSync('wg', ['--version'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
})()

type Driver = LineDriver

describe(
  'cluster mesh over wireguard-go',
  {
    skip: !isRoot
      ? 'needs root'
      : !hasWireguard
        ? 'needs wireguard-go and wg (scripts/setup-system.sh)'
        : false,
  },
  () => {
    let network: TestNetwork
    const drivers = new Map<string, Driver>()
    const plans = new Map<string, Map<string, MeshPlan>>()
    const daemonPids: number[] = []
    const keyDir = mkdtempSync(join(tmpdir(), 'gpumesh-mesh-'))

    const startDriver = (host: TestHost): Driver => startLineDriver(network, host, driverScript)

    /** Tries a TCP connection from one namespace to an address; true when a listener there answered. */
    const canReach = (fromNamespace: string, address: string, port: number): boolean => {
      const script = `const s=require('node:net').connect({host:${JSON.stringify(address)},port:${port},timeout:1500});s.on('data',()=>{process.stdout.write('ok');process.exit(0)});s.on('timeout',()=>process.exit(1));s.on('error',()=>process.exit(1))`
      try {
        return (
          execFileSync('ip', ['netns', 'exec', fromNamespace, process.execPath, '-e', script], {
            encoding: 'utf8',
            timeout: 10_000,
          }) === 'ok'
        )
      } catch {
        return false
      }
    }
    const listeners: ChildProcess[] = []
    const listen = (namespace: string, address: string, port: number) => {
      const script = `require('node:net').createServer((s)=>s.end('hi')).listen(${port},${JSON.stringify(address)},()=>process.stdout.write('ready\\n'))`
      const child = spawn('ip', ['netns', 'exec', namespace, process.execPath, '-e', script], {
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      listeners.push(child)
      let stderr = ''
      child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`listener in ${namespace} not ready: ${stderr}`)),
          10_000,
        )
        child.stdout!.once('data', () => {
          clearTimeout(timer)
          resolve()
        })
        child.once('exit', (code) =>
          reject(new Error(`listener in ${namespace} exited (${code}): ${stderr}`)),
        )
      })
    }

    before(async () => {
      network = createTestNetwork(['w0', 'w1', 'w2'])
      for (const host of network.hosts) drivers.set(host.name, startDriver(host))
      const clusters = [
        { id: `cls_a_${network.runId}`, subnet: 1, port: 51_820, hosts: ['w0', 'w1', 'w2'] },
        { id: `cls_b_${network.runId}`, subnet: 2, port: 51_821, hosts: ['w1', 'w2'] },
      ]
      for (const cluster of clusters) {
        const members = []
        for (const name of cluster.hosts) {
          const driver = drivers.get(name)!
          const { publicKey } = await driver.ask({ cmd: 'key', clusterId: cluster.id })
          members.push({ deviceId: name, publicKey, endpoint: `${driver.host.address}:${cluster.port}` })
        }
        const clusterPlans = planMesh(cluster.id, cluster.subnet, members, cluster.port)
        plans.set(cluster.id, clusterPlans)
        for (const name of cluster.hosts) {
          const started = await drivers.get(name)!.ask({
            cmd: 'start',
            clusterId: cluster.id,
            plan: clusterPlans.get(name),
            keyDir,
            // drivers run under \`ip netns exec\`: named namespaces are made in this process's mount namespace
            netnsMountNamespace: `/proc/${process.pid}/ns/mnt`,
          })
          daemonPids.push(started.pid)
        }
      }
    })

    after(async () => {
      for (const listener of listeners) listener.kill('SIGKILL')
      for (const driver of drivers.values()) driver.child.stdin?.end()
      await new Promise((resolve) => setTimeout(resolve, 500))
      // Safety net by our own names and pids, in case a driver died before cleaning up.
      for (const pid of daemonPids) {
        try {
          process.kill(pid, 'SIGKILL')
        } catch {
          // already gone
        }
      }
      for (const clusterPlans of plans.values()) {
        for (const plan of clusterPlans.values()) {
          try {
            execFileSync('ip', ['netns', 'del', plan.namespace], { stdio: 'ignore' })
          } catch {
            // already gone
          }
        }
      }
      await network?.destroy()
      rmSync(keyDir, { recursive: true, force: true })
    })

    it('joins the nodes of a cluster over its overlay addresses', async () => {
      const [clusterA] = [...plans.keys()]
      const a = plans.get(clusterA!)!
      await listen(a.get('w2')!.namespace, a.get('w2')!.overlayAddress, 7000)
      assert.ok(
        canReach(a.get('w0')!.namespace, a.get('w2')!.overlayAddress, 7000),
        'w0 reaches w2 over cluster A',
      )
      await listen(a.get('w0')!.namespace, a.get('w0')!.overlayAddress, 7000)
      assert.ok(
        canReach(a.get('w1')!.namespace, a.get('w0')!.overlayAddress, 7000),
        'w1 reaches w0 over cluster A',
      )
    })

    it('keeps clusters apart, and off the hosts’ own network', async () => {
      const [clusterA, clusterB] = [...plans.keys()]
      const a = plans.get(clusterA!)!
      const b = plans.get(clusterB!)!
      await listen(b.get('w2')!.namespace, b.get('w2')!.overlayAddress, 7001)
      assert.ok(canReach(b.get('w1')!.namespace, b.get('w2')!.overlayAddress, 7001), 'cluster B works')
      // cluster A on w1, on the very machine that also runs cluster B, cannot reach B's node on w2
      assert.equal(canReach(a.get('w1')!.namespace, b.get('w2')!.overlayAddress, 7001), false)
      // nor can anything in a cluster reach a host's own address
      const hostListener = network.hosts.find((host) => host.name === 'w2')!
      const child = network.spawnIn(hostListener, process.execPath, [
        '-e',
        `require('node:net').createServer((s)=>s.end('hi')).listen(7002,${JSON.stringify(hostListener.address)})`,
      ])
      listeners.push(child)
      await new Promise((resolve) => setTimeout(resolve, 300))
      assert.ok(
        canReach(network.hosts[0]!.namespace, hostListener.address, 7002),
        'the hosts themselves are connected',
      )
      assert.equal(canReach(a.get('w0')!.namespace, hostListener.address, 7002), false)
    })

    it('tears down leaving no namespace, interface or process behind', async () => {
      for (const [clusterId, clusterPlans] of plans) {
        for (const name of clusterPlans.keys()) await drivers.get(name)!.ask({ cmd: 'stop', clusterId })
      }
      const namespaces = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
      for (const clusterPlans of plans.values()) {
        for (const plan of clusterPlans.values()) {
          assert.ok(!namespaces.includes(plan.namespace), `${plan.namespace} removed`)
          assert.ok(
            !existsSync(`/var/run/wireguard/${plan.interfaceName}.sock`),
            `${plan.interfaceName} control socket removed`,
          )
        }
      }
      for (const pid of daemonPids)
        assert.equal(existsSync(`/proc/${pid}`), false, `wireguard-go ${pid} stopped`)
    })
  },
)
