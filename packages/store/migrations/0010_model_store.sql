-- The model store: each model version and its artifacts, which are content-addressed blobs (SHA-256) kept by
-- the coordinator's artifact store. A model is "uploading" until every artifact it names is stored, then
-- "ready"; "removed" keeps the row for receipts that name it.
CREATE TABLE models (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  version TEXT NOT NULL,
  tasks TEXT[] NOT NULL,
  format TEXT NOT NULL,
  runtime TEXT NOT NULL,
  license TEXT NOT NULL,
  required_vram_mib INTEGER NOT NULL,
  context_tokens INTEGER NOT NULL,
  max_output_tokens INTEGER NOT NULL,
  owner_account_id TEXT NOT NULL REFERENCES accounts (id),
  state TEXT NOT NULL,
  created_at_ms BIGINT NOT NULL,
  updated_at_ms BIGINT NOT NULL
);
-- One live version per name and version; a removed one may be pushed again.
CREATE UNIQUE INDEX models_name_version ON models (name, version) WHERE state <> 'removed';

CREATE TABLE model_artifacts (
  model_id TEXT NOT NULL REFERENCES models (id),
  path TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  size_bytes BIGINT NOT NULL,
  PRIMARY KEY (model_id, path)
);
CREATE INDEX model_artifacts_sha256 ON model_artifacts (sha256);

-- Blobs the artifact store holds, by content hash.
CREATE TABLE artifact_blobs (
  sha256 TEXT PRIMARY KEY,
  size_bytes BIGINT NOT NULL,
  stored_at_ms BIGINT NOT NULL
);
