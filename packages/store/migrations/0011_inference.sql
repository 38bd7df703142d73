-- Inference: how many devices serve each model, which devices their suppliers opted in, every request's
-- receipt, and running totals per model for the explorer.
ALTER TABLE models ADD COLUMN min_replicas INTEGER NOT NULL DEFAULT 1;
ALTER TABLE models ADD COLUMN max_replicas INTEGER NOT NULL DEFAULT 4;

-- A supplier's choice per device. A device without a row does not serve models.
CREATE TABLE device_serving (
  device_id TEXT PRIMARY KEY REFERENCES devices (id),
  enabled BOOLEAN NOT NULL,
  -- micro-USD per GPU-hour, NULL when the device's rental price is the floor
  min_price_micro_usd BIGINT,
  updated_at_ms BIGINT NOT NULL
);

-- One row per request, written in the same transaction as the ledger transfers that charged it. Amounts are
-- GMT units, and prices are units per million tokens.
CREATE TABLE inference_receipts (
  id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL,
  api_key_id TEXT NOT NULL,
  model_id TEXT NOT NULL,
  model TEXT NOT NULL,
  endpoint TEXT NOT NULL,
  device_id TEXT NOT NULL,
  supplier_account_id TEXT NOT NULL,
  prompt_tokens INTEGER NOT NULL CHECK (prompt_tokens >= 0),
  completion_tokens INTEGER NOT NULL CHECK (completion_tokens >= 0),
  input_per_million BIGINT NOT NULL,
  output_per_million BIGINT NOT NULL,
  amount BIGINT NOT NULL CHECK (amount >= 0),
  fee BIGINT NOT NULL CHECK (fee >= 0 AND fee <= amount),
  batch_id TEXT NOT NULL,
  -- the transfers that moved the request's money, NULL where none did (a request that cost nothing)
  supplier_transfer_id TEXT,
  fee_transfer_id TEXT,
  hold_post_transfer_id TEXT,
  created_at_ms BIGINT NOT NULL
);
CREATE INDEX inference_receipts_account ON inference_receipts (account_id, created_at_ms DESC, id DESC);
CREATE INDEX inference_receipts_batch ON inference_receipts (batch_id);

CREATE TABLE inference_model_totals (
  model TEXT PRIMARY KEY,
  requests BIGINT NOT NULL,
  prompt_tokens BIGINT NOT NULL,
  completion_tokens BIGINT NOT NULL,
  spent BIGINT NOT NULL,
  supplier_earnings BIGINT NOT NULL
);

-- Artifacts a worker downloaded and refused: the bytes did not hash to what the store published.
CREATE TABLE artifact_refusals (
  id BIGSERIAL PRIMARY KEY,
  device_id TEXT NOT NULL,
  model TEXT NOT NULL,
  path TEXT NOT NULL,
  expected_sha256 TEXT NOT NULL,
  -- NULL when the download ran past the published size and was stopped before it could be hashed
  received_sha256 TEXT,
  at_ms BIGINT NOT NULL
);
