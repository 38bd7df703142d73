// Packages Ray's client uploads before it submits a job (PUT /api/packages/gcs/_ray_pkg_<hash>.zip: a
// working_dir or a py_modules entry, zipped). Ray's dashboard puts them into the cluster's GCS; here they wait
// in this process until a job names them, and then travel to the head with the job, which puts them into the
// GCS itself. Bounded in bytes, oldest dropped first: a dropped package reads as missing, and Ray's client
// then simply uploads it again on its next submission (it asks with GET before every upload).

export type RayPackageCacheInit = {
  /** All packages of all clusters together. */
  readonly maxTotalBytes: number
}

export const defaultRayPackageCacheBytes = 256 * 1024 * 1024

export class RayPackageCache {
  readonly #maxTotalBytes: number
  /** `${clusterId}/${name}` in least recently used order (a Map keeps insertion order). */
  readonly #entries = new Map<string, Buffer>()
  #totalBytes = 0

  constructor(init: RayPackageCacheInit = { maxTotalBytes: defaultRayPackageCacheBytes }) {
    this.#maxTotalBytes = init.maxTotalBytes
  }

  has(clusterId: string, name: string): boolean {
    return this.#entries.has(`${clusterId}/${name}`)
  }

  /** The zip, marked as just used; undefined when it was never uploaded or was dropped. */
  get(clusterId: string, name: string): Buffer | undefined {
    const key = `${clusterId}/${name}`
    const bytes = this.#entries.get(key)
    if (bytes === undefined) return undefined
    this.#entries.delete(key)
    this.#entries.set(key, bytes)
    return bytes
  }

  put(clusterId: string, name: string, bytes: Buffer): void {
    const key = `${clusterId}/${name}`
    const previous = this.#entries.get(key)
    if (previous !== undefined) {
      this.#entries.delete(key)
      this.#totalBytes -= previous.length
    }
    this.#entries.set(key, bytes)
    this.#totalBytes += bytes.length
    for (const [oldest, oldBytes] of this.#entries) {
      if (this.#totalBytes <= this.#maxTotalBytes || oldest === key) break
      this.#entries.delete(oldest)
      this.#totalBytes -= oldBytes.length
    }
  }

  /** Forgets a cluster's packages (it terminated). */
  dropCluster(clusterId: string): void {
    for (const [key, bytes] of this.#entries) {
      if (!key.startsWith(`${clusterId}/`)) continue
      this.#entries.delete(key)
      this.#totalBytes -= bytes.length
    }
  }

  get totalBytes(): number {
    return this.#totalBytes
  }
}
