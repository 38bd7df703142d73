import type { SqlDriver } from './driver.ts'

// The model registry in the database. The bytes live in an ArtifactStore (the coordinator's data directory by
// default); here are the models, which artifacts each one names, and which blobs are stored.

export type ModelState = 'uploading' | 'ready' | 'removed'

export type ModelArtifactRecord = {
  readonly path: string
  readonly sha256: string
  readonly sizeBytes: number
}

export type ModelRecord = {
  readonly id: string
  readonly name: string
  readonly version: string
  readonly tasks: readonly string[]
  readonly format: string
  readonly runtime: string
  readonly license: string
  readonly requiredVramMib: number
  readonly contextTokens: number
  readonly maxOutputTokens: number
  /** How many devices serve it: at least min while idle ones exist, up to max as demand grows. */
  readonly minReplicas: number
  readonly maxReplicas: number
  readonly ownerAccountId: string
  readonly state: ModelState
  readonly createdAtMs: number
  readonly updatedAtMs: number
  readonly artifacts: readonly ModelArtifactRecord[]
}

export type ModelRegistry = {
  /** Adds a model version; false when a live one with this name and version exists. */
  createModel(model: ModelRecord): Promise<boolean>
  getModel(id: string): Promise<ModelRecord | undefined>
  findModel(name: string, version: string): Promise<ModelRecord | undefined>
  /** Live models (uploading and ready), by name then version. */
  listModels(): Promise<ModelRecord[]>
  /** Sets how many devices serve a live model; false when there is none. */
  setServing(id: string, minReplicas: number, maxReplicas: number, nowMs: number): Promise<boolean>
  /** Marks a model removed; false when there was no live one. */
  removeModel(id: string, nowMs: number): Promise<boolean>
  recordBlob(sha256: string, sizeBytes: number, nowMs: number): Promise<void>
  /** Which of these hashes are stored. */
  storedBlobs(sha256s: readonly string[]): Promise<Set<string>>
  /** Uploading models whose every artifact is now stored become ready; returns their ids. */
  markCompleteModelsReady(nowMs: number): Promise<string[]>
}

type ModelRow = {
  id: string
  name: string
  version: string
  tasks: string[]
  format: string
  runtime: string
  license: string
  required_vram_mib: number
  context_tokens: number
  max_output_tokens: number
  min_replicas: number
  max_replicas: number
  owner_account_id: string
  state: ModelState
  created_at_ms: bigint
  updated_at_ms: bigint
  artifacts: { path: string; sha256: string; size_bytes: number }[] | null
}

const modelSelect = `SELECT m.*, (SELECT json_agg(json_build_object('path', a.path, 'sha256', a.sha256, 'size_bytes', a.size_bytes)
    ORDER BY a.path) FROM model_artifacts a WHERE a.model_id = m.id) AS artifacts FROM models m`

const toModel = (row: ModelRow): ModelRecord => ({
  id: row.id,
  name: row.name,
  version: row.version,
  tasks: row.tasks,
  format: row.format,
  runtime: row.runtime,
  license: row.license,
  requiredVramMib: row.required_vram_mib,
  contextTokens: row.context_tokens,
  maxOutputTokens: row.max_output_tokens,
  minReplicas: row.min_replicas,
  maxReplicas: row.max_replicas,
  ownerAccountId: row.owner_account_id,
  state: row.state,
  createdAtMs: Number(row.created_at_ms),
  updatedAtMs: Number(row.updated_at_ms),
  artifacts: (row.artifacts ?? []).map((artifact) => ({
    path: artifact.path,
    sha256: artifact.sha256,
    sizeBytes: Number(artifact.size_bytes),
  })),
})

const isUniqueViolation = (error: unknown) => (error as { code?: string }).code === '23505'

export function createModelRegistry(driver: SqlDriver): ModelRegistry {
  return {
    async createModel(model) {
      try {
        await driver.transaction(async (tx) => {
          await tx.execute(
            `INSERT INTO models (id, name, version, tasks, format, runtime, license, required_vram_mib, context_tokens,
               max_output_tokens, owner_account_id, state, created_at_ms, updated_at_ms, min_replicas, max_replicas)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`,
            [
              model.id,
              model.name,
              model.version,
              [...model.tasks],
              model.format,
              model.runtime,
              model.license,
              model.requiredVramMib,
              model.contextTokens,
              model.maxOutputTokens,
              model.ownerAccountId,
              model.state,
              model.createdAtMs,
              model.updatedAtMs,
              model.minReplicas,
              model.maxReplicas,
            ],
          )
          for (const artifact of model.artifacts) {
            await tx.execute(
              'INSERT INTO model_artifacts (model_id, path, sha256, size_bytes) VALUES ($1, $2, $3, $4)',
              [model.id, artifact.path, artifact.sha256, artifact.sizeBytes],
            )
          }
        })
        return true
      } catch (error) {
        if (isUniqueViolation(error)) return false
        throw error
      }
    },

    async getModel(id) {
      const rows = await driver.query<ModelRow>(`${modelSelect} WHERE m.id = $1`, [id])
      return rows[0] && toModel(rows[0])
    },

    async findModel(name, version) {
      const rows = await driver.query<ModelRow>(
        `${modelSelect} WHERE m.name = $1 AND m.version = $2 AND m.state <> 'removed'`,
        [name, version],
      )
      return rows[0] && toModel(rows[0])
    },

    async listModels() {
      const rows = await driver.query<ModelRow>(
        `${modelSelect} WHERE m.state <> 'removed' ORDER BY m.name, m.created_at_ms DESC`,
      )
      return rows.map(toModel)
    },

    async setServing(id, minReplicas, maxReplicas, nowMs) {
      const changed = await driver.execute(
        `UPDATE models SET min_replicas = $2, max_replicas = $3, updated_at_ms = $4
         WHERE id = $1 AND state <> 'removed'`,
        [id, minReplicas, maxReplicas, nowMs],
      )
      return changed > 0
    },

    async removeModel(id, nowMs) {
      const changed = await driver.execute(
        `UPDATE models SET state = 'removed', updated_at_ms = $2 WHERE id = $1 AND state <> 'removed'`,
        [id, nowMs],
      )
      return changed > 0
    },

    async recordBlob(sha256, sizeBytes, nowMs) {
      await driver.execute(
        `INSERT INTO artifact_blobs (sha256, size_bytes, stored_at_ms) VALUES ($1, $2, $3)
         ON CONFLICT (sha256) DO NOTHING`,
        [sha256, sizeBytes, nowMs],
      )
    },

    async storedBlobs(sha256s) {
      if (sha256s.length === 0) return new Set()
      const rows = await driver.query<{ sha256: string }>(
        'SELECT sha256 FROM artifact_blobs WHERE sha256 = ANY($1::text[])',
        [[...sha256s]],
      )
      return new Set(rows.map((row) => row.sha256))
    },

    async markCompleteModelsReady(nowMs) {
      const rows = await driver.query<{ id: string }>(
        `UPDATE models m SET state = 'ready', updated_at_ms = $1
         WHERE m.state = 'uploading' AND NOT EXISTS (
           SELECT 1 FROM model_artifacts a LEFT JOIN artifact_blobs b ON b.sha256 = a.sha256
           WHERE a.model_id = m.id AND b.sha256 IS NULL)
         RETURNING m.id`,
        [nowMs],
      )
      return rows.map((row) => row.id)
    },
  }
}
