// Summarizes a V8 .cpuprofile (from `node --cpu-prof`, or from bench/worker-connections.ts --profile-hold):
// where the samples fall, by package and by function, self and inclusive time.
//
//   node bench/cpuprofile-summary.ts bench/results/coordinator-hold.cpuprofile [--top 25]

import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { table } from './common.ts'

type ProfileNode = {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  children?: number[]
}
type Profile = {
  nodes: ProfileNode[]
  samples: number[]
  timeDeltas: number[]
  startTime: number
  endTime: number
}

const { values: flags, positionals } = parseArgs({
  options: { top: { type: 'string', default: '25' } },
  allowPositionals: true,
})
const path = positionals[0]
if (!path) throw new Error('usage: node bench/cpuprofile-summary.ts FILE.cpuprofile [--top N]')
const profile = JSON.parse(readFileSync(path, 'utf8')) as Profile
const top = Number(flags.top)

const byId = new Map(profile.nodes.map((node) => [node.id, node]))
const parentOf = new Map<number, number>()
for (const node of profile.nodes) for (const child of node.children ?? []) parentOf.set(child, node.id)

/** Which package or part of the program a frame belongs to. */
function packageOf(url: string, functionName: string): string {
  if (!url) return functionName.startsWith('(') ? functionName : '(native/v8)'
  const modules = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)
  if (modules) return modules[1] ?? url
  const workspace = /\/packages\/([^/]+)\//.exec(url)
  if (workspace) return `@gpumesh/${workspace[1]}`
  if (url.startsWith('node:')) return 'node (core)'
  return url.replace(/^file:\/\//, '')
}
const frameKey = (node: ProfileNode) => {
  const { functionName, url, lineNumber } = node.callFrame
  const file = url
    .replace(/^file:\/\//, '')
    .replace(/^.*node_modules\//, '')
    .replace(/^.*\/packages\//, 'packages/')
  return `${functionName || '(anonymous)'} ${file ? `${file}:${lineNumber + 1}` : ''}`.trim()
}

const selfByFrame = new Map<string, number>()
const selfByPackage = new Map<string, number>()
const inclusiveByFrame = new Map<string, number>()
const inclusiveByPackage = new Map<string, number>()
let total = 0
for (let index = 0; index < profile.samples.length; index += 1) {
  const node = byId.get(profile.samples[index] ?? -1)
  if (!node) continue
  const deltaMs = (profile.timeDeltas[index + 1] ?? profile.timeDeltas[index] ?? 0) / 1000
  total += deltaMs
  selfByFrame.set(frameKey(node), (selfByFrame.get(frameKey(node)) ?? 0) + deltaMs)
  const pkg = packageOf(node.callFrame.url, node.callFrame.functionName)
  selfByPackage.set(pkg, (selfByPackage.get(pkg) ?? 0) + deltaMs)
  const seenFrames = new Set<string>()
  const seenPackages = new Set<string>()
  for (let id: number | undefined = node.id; id !== undefined; id = parentOf.get(id)) {
    const current = byId.get(id)
    if (!current) break
    seenFrames.add(frameKey(current))
    seenPackages.add(packageOf(current.callFrame.url, current.callFrame.functionName))
  }
  for (const key of seenFrames) inclusiveByFrame.set(key, (inclusiveByFrame.get(key) ?? 0) + deltaMs)
  for (const key of seenPackages) inclusiveByPackage.set(key, (inclusiveByPackage.get(key) ?? 0) + deltaMs)
}

const wallMs = (profile.endTime - profile.startTime) / 1000
const idleMs = selfByFrame.get('(idle)') ?? 0
const rows = (map: Map<string, number>, count: number) =>
  [...map.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, count)
    .map(([key, value]) => [key.slice(0, 110), value.toFixed(0), `${((100 * value) / total).toFixed(1)}%`])

console.log(
  `${path}: ${(wallMs / 1000).toFixed(1)} s profiled, ${((total - idleMs) / 1000).toFixed(2)} s busy (${((100 * (total - idleMs)) / total).toFixed(1)}%)`,
)
console.log('\nself time by package')
console.log(table(['package', 'ms', 'share'], rows(selfByPackage, top)))
console.log('\ninclusive time by package (a sample counts once per package on its stack)')
console.log(table(['package', 'ms', 'share'], rows(inclusiveByPackage, top)))
console.log('\nself time by function')
console.log(table(['function', 'ms', 'share'], rows(selfByFrame, top)))
console.log('\ninclusive time by function')
console.log(table(['function', 'ms', 'share'], rows(inclusiveByFrame, top)))
