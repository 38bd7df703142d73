import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
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
import { aliveRayNodes, livingMembers } from '@gpumesh/worker'

// A real Ray cluster over a real wireguard-go mesh: two test hosts, each with the cluster's namespace;
// the head on one, a worker on the other, both bound to overlay addresses. Tasks run on both nodes, and
// stopping leaves no Ray process behind (stopped by process group, never by name).

const driverScript = new URL('./mesh-driver.ts', import.meta.url).pathname
const python = new URL('../../.venv/bin/python', import.meta.url).pathname
const gcsPort = 6380
const usable = process.getuid?.() === 0 && existsSync(python)

type Driver = LineDriver

describe(
  'Ray over the cluster mesh',
  { skip: usable ? false : 'needs root and .venv with Ray (scripts/setup-python.sh)' },
  () => {
    let network: TestNetwork
    const drivers = new Map<string, Driver>()
    let plans: Map<string, MeshPlan>
    let clusterId: string
    const processGroups: number[] = []
    const keyDir = mkdtempSync(join(tmpdir(), 'gpumesh-ray-'))

    const startDriver = (host: TestHost): Driver => startLineDriver(network, host, driverScript)

    before(async () => {
      network = createTestNetwork(['w0', 'w1'])
      clusterId = `cls_ray_${network.runId}`
      const members = []
      for (const host of network.hosts) {
        const driver = startDriver(host)
        drivers.set(host.name, driver)
        const { publicKey } = await driver.ask({ cmd: 'key', clusterId })
        members.push({ deviceId: host.name, publicKey, endpoint: `${host.address}:51830` })
      }
      plans = planMesh(clusterId, 7, members, 51_830)
      for (const host of network.hosts) {
        await drivers.get(host.name)!.ask({
          cmd: 'start',
          clusterId,
          plan: plans.get(host.name),
          keyDir,
          netnsMountNamespace: `/proc/${process.pid}/ns/mnt`,
        })
      }
      const head = plans.get('w0')!
      for (const host of network.hosts) {
        const plan = plans.get(host.name)!
        const started = await drivers.get(host.name)!.ask({
          cmd: 'ray-start',
          clusterId,
          ray: {
            pythonPath: python,
            namespace: plan.namespace,
            nodeAddress: plan.overlayAddress,
            gcsPort,
            ...(host.name === 'w0' ? {} : { headAddress: head.overlayAddress }),
            numCpus: 1,
            numGpus: 0,
            tempDir: `/tmp/gmr-${network.runId}-${host.name}`,
            objectStoreMemoryBytes: 100 * 1024 * 1024,
          },
        })
        processGroups.push(started.processGroupId)
      }
    })

    after(async () => {
      for (const driver of drivers.values()) driver.child.stdin?.end()
      await new Promise((resolve) => setTimeout(resolve, 1_000))
      // Safety net, by our own process groups and names only.
      for (const group of processGroups) {
        try {
          process.kill(-group, 'SIGKILL')
        } catch {
          // already gone
        }
      }
      for (const plan of plans?.values() ?? []) {
        try {
          execFileSync('ip', ['netns', 'del', plan.namespace], { stdio: 'ignore' })
        } catch {
          // already gone
        }
      }
      await network?.destroy()
      for (const host of ['w0', 'w1'])
        rmSync(`/tmp/gmr-${network?.runId}-${host}`, { recursive: true, force: true })
      rmSync(keyDir, { recursive: true, force: true })
    })

    it('forms a Ray cluster of two nodes over the overlay addresses', async () => {
      const head = plans.get('w0')!
      assert.equal(await aliveRayNodes(python, head.namespace, head.overlayAddress, gcsPort), 2)
    })

    it('runs tasks on every node', () => {
      const head = plans.get('w0')!
      const script = [
        'import json, ray',
        'from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy',
        `ray.init(address=${JSON.stringify(`${head.overlayAddress}:${gcsPort}`)}, logging_level='ERROR')`,
        '@ray.remote(num_cpus=1)',
        'def where():',
        '    return ray.util.get_node_ip_address()',
        "nodes = [n['NodeID'] for n in ray.nodes() if n['Alive']]",
        'refs = [where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote() for node in nodes]',
        'print(json.dumps(sorted(ray.get(refs, timeout=60))))',
      ].join('\n')
      const output = execFileSync('ip', ['netns', 'exec', head.namespace, python, '-c', script], {
        encoding: 'utf8',
        timeout: 120_000,
      })
      const addresses = JSON.parse(output.trim().split('\n').pop()!)
      assert.deepEqual(addresses, [plans.get('w0')!.overlayAddress, plans.get('w1')!.overlayAddress].sort())
    })

    it('stops every Ray process it started', async () => {
      for (const host of [...network.hosts].reverse())
        await drivers.get(host.name)!.ask({ cmd: 'ray-stop', clusterId })
      for (const group of processGroups)
        assert.equal(livingMembers(group), 0, `Ray process group ${group} is empty`)
      const leftovers = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' })
        .split('\n')
        .filter((line) => line.includes(`/tmp/gmr-${network.runId}`))
      assert.deepEqual(leftovers, [])
    })
  },
)
