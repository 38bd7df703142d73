-- Proof-of-compute challenges, GPU identities for duplicate detection, and speedtest results.

-- One row per GPU a device reports, so a UUID claimed by two live devices is found with an index.
CREATE TABLE device_gpus (
  device_id TEXT NOT NULL REFERENCES devices (id),
  uuid TEXT NOT NULL,
  gpu_index INTEGER NOT NULL,
  model_key TEXT NOT NULL,
  vram_mib INTEGER NOT NULL,
  PRIMARY KEY (device_id, uuid)
);
CREATE INDEX device_gpus_uuid ON device_gpus (uuid);

ALTER TABLE devices ADD COLUMN verification_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN next_verification_at_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN measured_fp32_tflops DOUBLE PRECISION;

CREATE TABLE verification_challenges (
  id TEXT PRIMARY KEY,
  device_id TEXT NOT NULL REFERENCES devices (id),
  issued_at_ms BIGINT NOT NULL,
  matrix_size INTEGER NOT NULL,
  seed_hex TEXT NOT NULL,
  commit_deadline_at_ms BIGINT NOT NULL,
  outcome TEXT NOT NULL,
  reason_code TEXT,
  reason TEXT NOT NULL,
  merkle_root_hex TEXT,
  committed_at_ms BIGINT,
  finished_at_ms BIGINT,
  backend TEXT,
  effective_tflops DOUBLE PRECISION
);
CREATE INDEX verification_challenges_device ON verification_challenges (device_id, issued_at_ms DESC);

CREATE TABLE speedtest_results (
  id TEXT PRIMARY KEY,
  device_id TEXT NOT NULL REFERENCES devices (id),
  measured_at_ms BIGINT NOT NULL,
  latency_ms DOUBLE PRECISION NOT NULL,
  jitter_ms DOUBLE PRECISION NOT NULL,
  download_mbps DOUBLE PRECISION NOT NULL,
  upload_mbps DOUBLE PRECISION NOT NULL,
  bandwidth_tier TEXT,
  compute JSONB
);
CREATE INDEX speedtest_results_device ON speedtest_results (device_id, measured_at_ms DESC);
