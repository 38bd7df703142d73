import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { execFileSync } from 'node:child_process'
import { linkSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { after, describe, it } from 'node:test'
import { readdirSync, statSync } from 'node:fs'
import { formatBytes, packWorkingDir } from '../src/commands/job.ts'
import { UsageError } from '../src/credentials.ts'

// `job submit --working-dir` packs the directory in memory as a .tar.gz. What comes out must unpack with
// plain `tar` to the same files, without the excluded trees, and hold only files and directories (the head
// node refuses anything else).

const scratch = mkdtempSync(join(tmpdir(), 'gpumesh-working-dir-'))
after(() => rmSync(scratch, { recursive: true, force: true }))
let made = 0
const newDir = () => {
  made += 1
  const dir = join(scratch, `case-${made}`)
  mkdirSync(dir)
  return dir
}

function write(root: string, path: string, content: string | Buffer): void {
  mkdirSync(join(root, path, '..'), { recursive: true })
  writeFileSync(join(root, path), content)
}

/** Every regular file under `root`, relative path → content. */
function filesUnder(root: string): Map<string, string> {
  const files = new Map<string, string>()
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name)
      if (statSync(path).isDirectory()) walk(path)
      else files.set(relative(root, path), readFileSync(path, 'base64'))
    }
  }
  walk(root)
  return files
}

function unpack(tarGz: Buffer): string {
  const archive = join(newDir(), 'dir.tar.gz')
  writeFileSync(archive, tarGz)
  const into = newDir()
  execFileSync('tar', ['-xzf', archive, '-C', into])
  return into
}

describe('packWorkingDir', () => {
  it('round-trips through tar -xzf, leaving out .git, node_modules, __pycache__ and .venv at any depth', async () => {
    const source = newDir()
    write(source, 'train.py', 'print("hello")\n')
    write(source, 'config/model.yaml', 'layers: 12\n')
    write(source, 'data/weights.bin', randomBytes(50_000))
    write(source, 'empty.txt', '')
    write(source, 'src/pkg/__init__.py', '')
    write(source, 'src/pkg/__pycache__/x.cpython-312.pyc', 'bytecode')
    write(source, '.git/HEAD', 'ref: refs/heads/main\n')
    write(source, 'node_modules/left-pad/index.js', 'module.exports = 1')
    write(source, 'tools/node_modules/x/index.js', 'nested')
    write(source, '.venv/bin/python', 'venv')
    write(source, '.gitignore', '*.pyc\n')
    mkdirSync(join(source, 'empty-dir'))

    const packed = await packWorkingDir(source)
    assert.equal(packed.files, 6)
    assert.deepEqual(packed.skipped, [])
    const unpacked = unpack(packed.tarGz)
    const expected = filesUnder(source)
    for (const path of expected.keys())
      if (/(^|\/)(\.git|node_modules|__pycache__|\.venv)\//.test(path)) expected.delete(path)
    assert.deepEqual(filesUnder(unpacked), expected)
    assert.ok(statSync(join(unpacked, 'empty-dir')).isDirectory())
  })

  it('names entries relative to the directory, as files and directories only', async () => {
    const source = newDir()
    write(source, 'a.py', 'a')
    write(source, 'lib/b.py', 'b')
    symlinkSync('a.py', join(source, 'link-to-a.py'))
    // A second name for the same file would be stored as a hard link, which the head refuses.
    linkSync(join(source, 'a.py'), join(source, 'lib/same-as-a.py'))

    const packed = await packWorkingDir(source)
    assert.deepEqual(packed.skipped, ['link-to-a.py'])
    const archive = join(newDir(), 'dir.tar.gz')
    writeFileSync(archive, packed.tarGz)
    const listing = execFileSync('tar', ['-tvzf', archive], { encoding: 'utf8' }).trim().split('\n')
    const names = execFileSync('tar', ['-tzf', archive], { encoding: 'utf8' }).trim().split('\n')
    assert.deepEqual(names.sort(), ['a.py', 'lib/', 'lib/b.py', 'lib/same-as-a.py'])
    // `tar -tv` starts each line with the entry type: '-' file, 'd' directory ('l' or 'h' for links).
    for (const line of listing) assert.match(line, /^[-d]/, line)
    assert.equal(readFileSync(join(unpack(packed.tarGz), 'lib/same-as-a.py'), 'utf8'), 'a')
  })

  it('refuses a directory whose tarball exceeds the limit, naming its compressed size', async () => {
    const source = newDir()
    write(source, 'random.bin', randomBytes(300_000))
    await assert.rejects(packWorkingDir(source, 100_000), (error: unknown) => {
      assert.ok(error instanceof UsageError)
      assert.match(error.message, /--working-dir .* is 29\d KiB compressed; the limit is 98 KiB/)
      return true
    })
    // Far over the limit, packing stops early.
    await assert.rejects(
      packWorkingDir(source, 10_000),
      /is more than 78 KiB compressed; the limit is 9.8 KiB/,
    )
    // Under the limit passes.
    const packed = await packWorkingDir(source, 400_000)
    assert.ok(packed.tarGz.length > 300_000 && packed.tarGz.length <= 400_000)
  })

  it('refuses what is not a directory or has nothing to send', async () => {
    const source = newDir()
    await assert.rejects(packWorkingDir(join(source, 'missing')), /no such directory/)
    write(source, 'file.txt', 'x')
    await assert.rejects(packWorkingDir(join(source, 'file.txt')), /not a directory/)
    const onlyExcluded = newDir()
    write(onlyExcluded, 'node_modules/x.js', 'x')
    await assert.rejects(packWorkingDir(onlyExcluded), /nothing to send/)
  })
})

describe('formatBytes', () => {
  it('uses binary units', () => {
    assert.equal(formatBytes(0), '0 B')
    assert.equal(formatBytes(1023), '1023 B')
    assert.equal(formatBytes(1536), '1.5 KiB')
    assert.equal(formatBytes(8 * 1024 * 1024), '8.0 MiB')
    assert.equal(formatBytes(300 * 1024 * 1024), '300 MiB')
  })
})
