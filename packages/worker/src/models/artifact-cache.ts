import { createHash, randomBytes } from 'node:crypto'
import { createWriteStream, existsSync, linkSync, mkdirSync, rmSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { Readable, Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { artifactPathPattern, sha256HexPattern } from '@gpumesh/protocol'

// A supplier's cache of model artifacts, by content hash. Each artifact is downloaded once, hashed while it
// streams to disk, and kept only when it matches the hash the coordinator published; a model directory is
// then assembled from hard links, so several models sharing weights store them once.

export type ArtifactRef = { readonly path: string; readonly sha256: string; readonly sizeBytes: number }

/** The bytes received do not match the published hash: nothing is kept, and the coordinator is told. */
export class ArtifactMismatchError extends Error {
  override readonly name = 'ArtifactMismatchError'
  readonly artifact: ArtifactRef
  /** Null when the download was stopped for running past the published size, before it could be hashed. */
  readonly receivedSha256: string | null
  constructor(artifact: ArtifactRef, receivedSha256: string | null, receivedBytes: number) {
    super(
      receivedSha256 === null
        ? `${artifact.path}: received more than the ${artifact.sizeBytes} bytes published (${receivedBytes} when stopped); refused`
        : `${artifact.path}: received ${receivedBytes} bytes hashing to ${receivedSha256}, expected ${artifact.sizeBytes} bytes hashing to ${artifact.sha256}; refused`,
    )
    this.artifact = artifact
    this.receivedSha256 = receivedSha256
  }
}

export type ArtifactCacheInit = {
  readonly cacheDir: string
  /** Where an artifact is fetched from, by hash (the coordinator's `/v1/store/artifacts/:sha256`). */
  readonly urlOf: (sha256: string) => string
  readonly fetchTimeoutMs?: number
}

export type ArtifactCache = {
  /** Downloads what is missing, checks every hash, and returns a directory holding the model's files. */
  materialize(
    modelKey: string,
    artifacts: readonly ArtifactRef[],
  ): Promise<{ directory: string; downloaded: number }>
}

const sha256Pattern = new RegExp(sha256HexPattern)
const pathPattern = new RegExp(artifactPathPattern)

export function createArtifactCache(init: ArtifactCacheInit): ArtifactCache {
  const blobPath = (sha256: string) => join(init.cacheDir, 'sha256', sha256)

  const fetchBlob = async (artifact: ArtifactRef): Promise<void> => {
    const target = blobPath(artifact.sha256)
    mkdirSync(join(init.cacheDir, 'sha256'), { recursive: true })
    const temporary = `${target}.${randomBytes(6).toString('hex')}.part`
    const response = await fetch(init.urlOf(artifact.sha256), {
      signal: AbortSignal.timeout(init.fetchTimeoutMs ?? 600_000),
    })
    if (!response.ok || !response.body)
      throw new Error(`${artifact.path}: download answered HTTP ${response.status}`)
    const hash = createHash('sha256')
    let received = 0
    const meter = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        received += chunk.length
        // More bytes than published cannot match: stop reading instead of filling the disk.
        if (received > artifact.sizeBytes) {
          done(new ArtifactMismatchError(artifact, null, received))
          return
        }
        hash.update(chunk)
        done(null, chunk)
      },
    })
    try {
      await pipeline(
        Readable.fromWeb(response.body as never),
        meter,
        createWriteStream(temporary, { mode: 0o644 }),
      )
    } catch (error) {
      rmSync(temporary, { force: true })
      throw error
    }
    const actual = hash.digest('hex')
    if (actual !== artifact.sha256 || received !== artifact.sizeBytes) {
      rmSync(temporary, { force: true })
      throw new ArtifactMismatchError(artifact, actual, received)
    }
    linkSync(temporary, target)
    rmSync(temporary, { force: true })
  }

  return {
    async materialize(modelKey, artifacts) {
      if (!/^[A-Za-z0-9._+@-]{1,160}$/.test(modelKey)) throw new Error(`bad model key ${modelKey}`)
      let downloaded = 0
      for (const artifact of artifacts) {
        if (!sha256Pattern.test(artifact.sha256) || !pathPattern.test(artifact.path))
          throw new Error(`refusing artifact ${JSON.stringify(artifact)}: bad hash or path`)
        const cached = blobPath(artifact.sha256)
        // A cached blob was checked when it was stored; its size guards against a truncated disk write.
        if (existsSync(cached) && statSync(cached).size === artifact.sizeBytes) continue
        rmSync(cached, { force: true })
        await fetchBlob(artifact)
        downloaded += 1
      }
      const directory = join(init.cacheDir, 'models', modelKey)
      mkdirSync(directory, { recursive: true })
      for (const artifact of artifacts) {
        const link = join(directory, artifact.path)
        rmSync(link, { force: true })
        linkSync(blobPath(artifact.sha256), link)
      }
      return { directory, downloaded }
    },
  }
}
