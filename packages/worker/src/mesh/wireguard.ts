import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import {
  wireguardKeyPairFromSecret,
  wireguardSecretBytes,
  type MeshPeer,
  type MeshPlan,
  type WireguardKeyPair,
} from '@gpumesh/mesh'

// A cluster node's end of the private mesh, on the supplier's machine. wireguard-go (userspace) serves
// the interface; its UDP socket and control socket stay in the worker's own network namespace, while the
// interface itself is moved into the cluster's namespace: code running there reaches the mesh and nothing
// else — not the supplier's network, not the worker, not another cluster on the same machine.

const run = promisify(execFile)
const wireguardSocketDir = '/var/run/wireguard'
const socketWaitMs = 10_000
const stopWaitMs = 5_000

/** A fresh key pair from this machine's CSPRNG: the private key never leaves this machine. */
export function generateWireguardKeyPair(): WireguardKeyPair {
  return wireguardKeyPairFromSecret(randomBytes(wireguardSecretBytes))
}

export type MeshInterfaceInit = {
  readonly interfaceName: string
  readonly namespace: string
  readonly keyPair: WireguardKeyPair
  /** Where the private key file lives (mode 0600) while the interface is being opened. */
  readonly keyDir: string
  /** UDP port for WireGuard; 0 (the default) lets the kernel pick a free one. */
  readonly listenPort?: number
  readonly wireguardGoCommand?: string
  /**
   * A mount namespace (e.g. /proc/PID/ns/mnt) in which to create and delete the named cluster namespace.
   * Only needed when this process itself runs under `ip netns exec`, whose private mount namespace would
   * keep the new name from the rest of the machine (as in tests, where workers run on test hosts).
   */
  readonly netnsMountNamespace?: string
}

export type MeshInterface = {
  readonly interfaceName: string
  readonly namespace: string
  /** The wireguard-go process, while it runs. */
  readonly pid: number | undefined
  /** The UDP port WireGuard listens on, once open. */
  readonly listenPort: number | undefined
  /** Creates the namespace and starts wireguard-go with the key; returns the port peers must reach. */
  open(): Promise<number>
  /**
   * Gives the interface its overlay address inside the namespace and the peer set. The address is set once;
   * calling again only replaces the peers.
   */
  configure(overlayAddress: string, prefixLength: number, peers: readonly MeshPeer[]): Promise<void>
  /** Replaces the peer set: adds new members, updates moved ones, removes those that left. */
  setPeers(peers: readonly MeshPeer[]): Promise<void>
  /** Removes the namespace, the interface and the wireguard-go process. Safe to call twice or before open. */
  stop(): Promise<void>
}

export function createMeshInterface(init: MeshInterfaceInit): MeshInterface {
  const { interfaceName, namespace } = init
  const keyPath = join(init.keyDir, `${interfaceName}.key`)
  let daemon: ChildProcess | undefined
  let currentPeers: readonly MeshPeer[] = []
  let namespaceCreated = false
  let listenPort: number | undefined
  let addressed: string | undefined

  const ip = (args: string[]) => run('ip', args)
  const netnsAdmin = (args: string[]) =>
    init.netnsMountNamespace
      ? run('nsenter', [`--mount=${init.netnsMountNamespace}`, '--', 'ip', ...args])
      : ip(args)
  const wg = (args: string[]) => run('wg', args)

  const applyPeers = async (peers: readonly MeshPeer[]) => {
    const wanted = new Set(peers.map((peer) => peer.publicKey))
    for (const old of currentPeers)
      if (!wanted.has(old.publicKey)) await wg(['set', interfaceName, 'peer', old.publicKey, 'remove'])
    const known = new Map(currentPeers.map((peer) => [peer.publicKey, peer]))
    for (const peer of peers) {
      const before = known.get(peer.publicKey)
      if (before && before.endpoint === peer.endpoint && before.overlayAddress === peer.overlayAddress)
        continue
      await wg([
        'set',
        interfaceName,
        'peer',
        peer.publicKey,
        ...(peer.endpoint ? ['endpoint', peer.endpoint] : []),
        'allowed-ips',
        `${peer.overlayAddress}/32`,
        'persistent-keepalive',
        '25',
      ])
    }
    currentPeers = peers
  }

  return {
    interfaceName,
    namespace,
    get pid() {
      return daemon?.pid
    },
    get listenPort() {
      return listenPort
    },
    async open() {
      if (listenPort !== undefined) return listenPort
      mkdirSync(init.keyDir, { recursive: true, mode: 0o700 })
      writeFileSync(keyPath, `${init.keyPair.privateKey}\n`, { mode: 0o600 })
      await netnsAdmin(['netns', 'add', namespace])
      namespaceCreated = true
      await ip(['-n', namespace, 'link', 'set', 'lo', 'up'])
      daemon = spawn(init.wireguardGoCommand ?? 'wireguard-go', ['-f', interfaceName], {
        env: { ...process.env, WG_PROCESS_FOREGROUND: '1' },
        stdio: ['ignore', 'ignore', 'pipe'],
      })
      const exited = new Promise<never>((_, reject) => {
        daemon!.once('exit', (code) =>
          reject(new Error(`wireguard-go for ${interfaceName} exited (${code})`)),
        )
        daemon!.once('error', reject)
      })
      exited.catch(() => undefined)
      await Promise.race([waitForSocket(interfaceName), exited])
      await wg(['set', interfaceName, 'private-key', keyPath, 'listen-port', String(init.listenPort ?? 0)])
      rmSync(keyPath, { force: true })
      const { stdout } = await wg(['show', interfaceName, 'listen-port'])
      listenPort = Number(stdout.trim())
      if (!Number.isInteger(listenPort) || listenPort <= 0)
        throw new Error(`wireguard-go for ${interfaceName} reported no listen port (${stdout.trim()})`)
      return listenPort
    },
    async configure(overlayAddress, prefixLength, peers) {
      if (listenPort === undefined) throw new Error(`mesh interface ${interfaceName} is not open`)
      await applyPeers(peers)
      if (addressed === undefined) {
        // The UDP socket was bound in this namespace by open(); only the interface moves.
        await ip(['link', 'set', interfaceName, 'netns', namespace])
        await ip(['-n', namespace, 'addr', 'add', `${overlayAddress}/${prefixLength}`, 'dev', interfaceName])
        await ip(['-n', namespace, 'link', 'set', interfaceName, 'up'])
        addressed = overlayAddress
      } else if (addressed !== overlayAddress) {
        throw new Error(`mesh interface ${interfaceName} already has address ${addressed}`)
      }
    },
    setPeers: applyPeers,
    async stop() {
      rmSync(keyPath, { force: true })
      if (daemon && daemon.exitCode === null && daemon.signalCode === null) {
        const gone = new Promise<void>((resolve) => daemon!.once('exit', () => resolve()))
        daemon.kill('SIGTERM')
        const timer = setTimeout(() => daemon?.kill('SIGKILL'), stopWaitMs)
        await gone
        clearTimeout(timer)
      }
      daemon = undefined
      // Deleting the namespace deletes the interface in it.
      if (namespaceCreated) {
        await netnsAdmin(['netns', 'del', namespace]).catch(() => undefined)
        namespaceCreated = false
      }
      listenPort = undefined
      addressed = undefined
      currentPeers = []
      for (const suffix of ['.sock', '.name'])
        rmSync(join(wireguardSocketDir, `${interfaceName}${suffix}`), { force: true })
    },
  }
}

/** Opens and configures an interface from a whole plan in one step. */
export async function startMeshInterface(
  plan: MeshPlan,
  options: Omit<MeshInterfaceInit, 'interfaceName' | 'namespace' | 'listenPort'>,
): Promise<MeshInterface> {
  const mesh = createMeshInterface({
    ...options,
    interfaceName: plan.interfaceName,
    namespace: plan.namespace,
    listenPort: plan.listenPort,
  })
  try {
    await mesh.open()
    await mesh.configure(plan.overlayAddress, plan.prefixLength, plan.peers)
  } catch (error) {
    await mesh.stop()
    throw error
  }
  return mesh
}

async function waitForSocket(interfaceName: string): Promise<void> {
  const socket = join(wireguardSocketDir, `${interfaceName}.sock`)
  const deadline = Date.now() + socketWaitMs
  while (!existsSync(socket)) {
    if (Date.now() > deadline)
      throw new Error(`wireguard-go control socket ${socket} did not appear within ${socketWaitMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}
