import { execFile } from 'node:child_process'
import { readdirSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { clusterNamespaceName, meshInterfaceName } from '@gpumesh/mesh'

// An agent killed outright leaves its cluster nodes running: Ray in the cluster namespace, wireguard-go
// for the interface. The next start removes them, found only by what that node owned (its namespace, its
// interface, its Ray temp dir), never by process names another cluster could share.

const run = promisify(execFile)

/** What is kept on disk per node, so a crashed agent's leftovers can be found and removed next time. */
export type ClusterNodeFootprint = {
  readonly clusterId: string
  readonly namespace: string
  readonly interfaceName: string
  readonly rayTempDir: string
}

export async function cleanUpClusterNode(
  footprint: ClusterNodeFootprint,
  netnsMountNamespace: string | undefined,
): Promise<void> {
  const ip = (args: string[]) =>
    netnsMountNamespace
      ? run('nsenter', [`--mount=${netnsMountNamespace}`, '--', 'ip', ...args])
      : run('ip', args)
  const pids = new Set<number>()
  try {
    const { stdout } = await ip(['netns', 'pids', footprint.namespace])
    for (const line of stdout.split('\n')) if (/^\d+$/.test(line.trim())) pids.add(Number(line.trim()))
  } catch {
    // the namespace is already gone
  }
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const commandLine = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0')
      const ownsInterface =
        commandLine.some((arg) => arg.endsWith('wireguard-go')) &&
        commandLine.includes(footprint.interfaceName)
      const usesTempDir = commandLine.some((arg) => arg.includes(footprint.rayTempDir))
      if (ownsInterface || usesTempDir) pids.add(Number(entry))
    } catch {
      // exited while we looked
    }
  }
  pids.delete(process.pid)
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // already gone
    }
  }
  await ip(['netns', 'del', footprint.namespace]).catch(() => undefined)
  for (const suffix of ['.sock', '.name'])
    rmSync(join('/var/run/wireguard', `${footprint.interfaceName}${suffix}`), { force: true })
  rmSync(footprint.rayTempDir, { recursive: true, force: true })
}

/** Removes whatever a device may still run of these clusters, by the names the worker derives from ids. */
export async function removeClusterNodesOf(deviceId: string, clusterIds: readonly string[]): Promise<void> {
  for (const clusterId of clusterIds) {
    const namespace = clusterNamespaceName(clusterId, deviceId)
    await cleanUpClusterNode(
      {
        clusterId,
        namespace,
        interfaceName: meshInterfaceName(clusterId, deviceId),
        rayTempDir: clusterNodeTempDir(namespace),
      },
      undefined,
    )
  }
}

/** A cluster node's Ray temp dir: short (Ray's socket paths must stay under 108 bytes) and unique per node. */
export function clusterNodeTempDir(namespace: string): string {
  return `/tmp/${namespace}`
}
