// Finds circles of imports among the packages' source files (tests excluded), type-only imports included:
// a circle makes a module's meaning depend on load order and hides which part is the lower layer.
// Usage: node scripts/import-cycles.ts   (exit 1 and each circle printed when there is one)
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'

const root = resolve(dirname(new URL(import.meta.url).pathname), '..')
const packagesDir = join(root, 'packages')

type PackageEntry = { readonly dir: string; readonly exports: Record<string, string> }

function packageEntries(): Map<string, PackageEntry> {
  const entries = new Map<string, PackageEntry>()
  for (const name of readdirSync(packagesDir)) {
    const manifestPath = join(packagesDir, name, 'package.json')
    if (!existsSync(manifestPath)) continue
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as {
      name: string
      exports?: Record<string, string> | string
    }
    const exports =
      typeof manifest.exports === 'string' ? { '.': manifest.exports } : (manifest.exports ?? {})
    entries.set(manifest.name, { dir: join(packagesDir, name), exports })
  }
  return entries
}

function sourceFiles(dir: string): string[] {
  const files: string[] = []
  for (const name of readdirSync(dir)) {
    const path = join(dir, name)
    if (name === 'node_modules' || name === 'dist') continue
    if (statSync(path).isDirectory()) files.push(...sourceFiles(path))
    else if (/\.tsx?$/.test(name) && !/\.test\.tsx?$/.test(name)) files.push(path)
  }
  return files
}

const specifierPattern = /(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]/g

function resolveSpecifier(from: string, specifier: string, packages: Map<string, PackageEntry>) {
  if (specifier.startsWith('.')) return resolve(dirname(from), specifier)
  const match = /^(@gpumesh\/[^/]+)(\/.*)?$/.exec(specifier)
  if (!match) return undefined
  const entry = packages.get(match[1]!)
  const target = entry?.exports[match[2] ? `.${match[2]}` : '.']
  return entry && target ? join(entry.dir, target) : undefined
}

export function findImportCycles(): string[][] {
  const packages = packageEntries()
  const graph = new Map<string, string[]>()
  for (const entry of packages.values()) {
    const srcDir = join(entry.dir, 'src')
    if (!existsSync(srcDir)) continue
    for (const file of sourceFiles(srcDir)) {
      const text = readFileSync(file, 'utf8')
      const targets = [...text.matchAll(specifierPattern)]
        .map((found) => resolveSpecifier(file, found[1]!, packages))
        .filter((target): target is string => target !== undefined && existsSync(target))
      graph.set(file, targets)
    }
  }
  return stronglyConnected(graph).filter((component) => component.length > 1 || selfImport(graph, component))
}

function selfImport(graph: Map<string, string[]>, component: string[]): boolean {
  return (graph.get(component[0]!) ?? []).includes(component[0]!)
}

// Tarjan's algorithm, iterative so a deep chain of imports cannot overflow the stack.
function stronglyConnected(graph: Map<string, string[]>): string[][] {
  const index = new Map<string, number>()
  const lowLink = new Map<string, number>()
  const onStack = new Set<string>()
  const stack: string[] = []
  const components: string[][] = []
  let counter = 0
  for (const start of graph.keys()) {
    if (index.has(start)) continue
    const work: { node: string; next: number }[] = [{ node: start, next: 0 }]
    index.set(start, counter)
    lowLink.set(start, counter)
    counter += 1
    stack.push(start)
    onStack.add(start)
    while (work.length > 0) {
      const frame = work[work.length - 1]!
      const edges = graph.get(frame.node) ?? []
      if (frame.next < edges.length) {
        const target = edges[frame.next]!
        frame.next += 1
        if (!index.has(target)) {
          index.set(target, counter)
          lowLink.set(target, counter)
          counter += 1
          stack.push(target)
          onStack.add(target)
          work.push({ node: target, next: 0 })
        } else if (onStack.has(target)) {
          lowLink.set(frame.node, Math.min(lowLink.get(frame.node)!, index.get(target)!))
        }
        continue
      }
      work.pop()
      const parent = work[work.length - 1]
      if (parent) lowLink.set(parent.node, Math.min(lowLink.get(parent.node)!, lowLink.get(frame.node)!))
      if (lowLink.get(frame.node) === index.get(frame.node)) {
        const component: string[] = []
        let member: string
        do {
          member = stack.pop()!
          onStack.delete(member)
          component.push(member)
        } while (member !== frame.node)
        components.push(component)
      }
    }
  }
  return components
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const cycles = findImportCycles()
  for (const cycle of cycles) {
    console.error(`import circle: ${cycle.map((file) => relative(root, file)).join(' <-> ')}`)
  }
  if (cycles.length > 0) process.exit(1)
  console.log('no import circles')
}
