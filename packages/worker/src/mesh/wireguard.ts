import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { generateKeyPairSync } from 'node:crypto'
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { MeshPeer, MeshPlan } from '@gpumesh/mesh'

// A cluster node's end of the private mesh, on the supplier's machine. wireguard-go (userspace) serves
// the interface; its UDP socket and control socket stay in the worker's own network namespace, while the
// interface itself is moved into the cluster's namespace: code running there reaches the mesh and nothing
// else — not the supplier's network, not the worker, not another cluster on the same machine.

const run = promisify(execFile)
const wireguardSocketDir = '/var/run/wireguard'
const socketWaitMs = 10_000
const stopWaitMs = 5_000

export type WireguardKeyPair = { readonly privateKey: string; readonly publicKey: string }

/** Curve25519 keys in WireGuard's base64 form, made here: the private key never leaves this machine. */
export function generateWireguardKeyPair(): WireguardKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('x25519')
  const raw = (jwk: { d?: string; x?: string }, field: 'd' | 'x') =>
    Buffer.from(jwk[field]!, 'base64url').toString('base64')
  return {
    privateKey: raw(privateKey.export({ format: 'jwk' }), 'd'),
    publicKey: raw(publicKey.export({ format: 'jwk' }), 'x'),
  }
}

export type MeshInterfaceInit = {
  readonly plan: MeshPlan
  readonly keyPair: WireguardKeyPair
  /** Where the private key file lives (mode 0600) while the interface exists. */
  readonly keyDir: string
  readonly wireguardGoCommand?: string
  /**
   * A mount namespace (e.g. /proc/PID/ns/mnt) in which to create and delete the named cluster namespace.
   * Only needed when this process itself runs under `ip netns exec`, whose private mount namespace would
   * keep the new name from the rest of the machine (as in tests, where workers run on test hosts).
   */
  readonly netnsMountNamespace?: string
}

export type MeshInterface = {
  readonly plan: MeshPlan
  /** The wireguard-go process, while it runs. */
  readonly pid: number | undefined
  start(): Promise<void>
  /** Replaces the peer set: adds new members, updates moved ones, removes those that left. */
  setPeers(peers: readonly MeshPeer[]): Promise<void>
  /** Removes the namespace, the interface and the wireguard-go process. Safe to call twice or before start. */
  stop(): Promise<void>
}

export function createMeshInterface(init: MeshInterfaceInit): MeshInterface {
  const { plan } = init
  const keyPath = join(init.keyDir, `${plan.interfaceName}.key`)
  let daemon: ChildProcess | undefined
  let currentPeers: readonly MeshPeer[] = []
  let namespaceCreated = false

  const ip = (args: string[]) => run('ip', args)
  const netnsAdmin = (args: string[]) =>
    init.netnsMountNamespace
      ? run('nsenter', [`--mount=${init.netnsMountNamespace}`, '--', 'ip', ...args])
      : ip(args)
  const wg = (args: string[]) => run('wg', args)

  const applyPeers = async (peers: readonly MeshPeer[]) => {
    const wanted = new Set(peers.map((peer) => peer.publicKey))
    for (const old of currentPeers)
      if (!wanted.has(old.publicKey)) await wg(['set', plan.interfaceName, 'peer', old.publicKey, 'remove'])
    for (const peer of peers) {
      await wg([
        'set',
        plan.interfaceName,
        'peer',
        peer.publicKey,
        'endpoint',
        peer.endpoint,
        'allowed-ips',
        `${peer.overlayAddress}/32`,
        'persistent-keepalive',
        '25',
      ])
    }
    currentPeers = peers
  }

  return {
    plan,
    get pid() {
      return daemon?.pid
    },
    async start() {
      mkdirSync(init.keyDir, { recursive: true, mode: 0o700 })
      writeFileSync(keyPath, `${init.keyPair.privateKey}\n`, { mode: 0o600 })
      await netnsAdmin(['netns', 'add', plan.namespace])
      namespaceCreated = true
      await ip(['-n', plan.namespace, 'link', 'set', 'lo', 'up'])
      daemon = spawn(init.wireguardGoCommand ?? 'wireguard-go', ['-f', plan.interfaceName], {
        env: { ...process.env, WG_PROCESS_FOREGROUND: '1' },
        stdio: ['ignore', 'ignore', 'pipe'],
      })
      const exited = new Promise<never>((_, reject) => {
        daemon!.once('exit', (code) =>
          reject(new Error(`wireguard-go for ${plan.interfaceName} exited (${code})`)),
        )
        daemon!.once('error', reject)
      })
      exited.catch(() => undefined)
      await Promise.race([waitForSocket(plan.interfaceName), exited])
      await wg(['set', plan.interfaceName, 'private-key', keyPath, 'listen-port', String(plan.listenPort)])
      rmSync(keyPath, { force: true })
      await applyPeers(plan.peers)
      // The UDP socket was bound above, in this namespace; only the interface moves.
      await ip(['link', 'set', plan.interfaceName, 'netns', plan.namespace])
      await ip([
        '-n',
        plan.namespace,
        'addr',
        'add',
        `${plan.overlayAddress}/${plan.prefixLength}`,
        'dev',
        plan.interfaceName,
      ])
      await ip(['-n', plan.namespace, 'link', 'set', plan.interfaceName, 'up'])
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
        await netnsAdmin(['netns', 'del', plan.namespace]).catch(() => undefined)
        namespaceCreated = false
      }
      for (const suffix of ['.sock', '.name'])
        rmSync(join(wireguardSocketDir, `${plan.interfaceName}${suffix}`), { force: true })
    },
  }
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
