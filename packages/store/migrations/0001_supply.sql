-- Accounts, API keys, worker enrollment, devices and their uptime.
-- Times are BIGINT milliseconds since the Unix epoch: the coordinator's Clock decides time, not the database.

CREATE TABLE accounts (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  roles TEXT[] NOT NULL,
  created_at_ms BIGINT NOT NULL
);

CREATE TABLE api_keys (
  id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES accounts (id),
  name TEXT NOT NULL,
  roles TEXT[] NOT NULL,
  -- SHA-256 of the secret part; the secret itself is shown once and never stored.
  secret_sha256 TEXT NOT NULL,
  created_at_ms BIGINT NOT NULL,
  last_used_at_ms BIGINT,
  revoked_at_ms BIGINT
);
CREATE INDEX api_keys_account ON api_keys (account_id);

CREATE TABLE enrollment_tokens (
  id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES accounts (id),
  label TEXT,
  secret_sha256 TEXT NOT NULL,
  created_at_ms BIGINT NOT NULL,
  expires_at_ms BIGINT NOT NULL,
  used_at_ms BIGINT,
  used_by_public_key TEXT,
  device_id TEXT
);
CREATE INDEX enrollment_tokens_account ON enrollment_tokens (account_id);

-- Bumped on every change the marketplace index cares about, so each coordinator process can pull
-- only what changed since it last looked.
CREATE SEQUENCE device_change_seq;

CREATE TABLE devices (
  id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES accounts (id),
  -- The worker's Ed25519 public key is its identity: re-enrolling with the same key is the same device.
  public_key TEXT NOT NULL UNIQUE,
  hostname TEXT NOT NULL,
  state TEXT NOT NULL,
  state_reason_code TEXT NOT NULL,
  state_reason TEXT NOT NULL,
  state_changed_at_ms BIGINT NOT NULL,
  verification_state TEXT NOT NULL DEFAULT 'unverified',
  verification_reason TEXT NOT NULL DEFAULT 'no proof-of-compute challenge passed yet',
  region TEXT,
  country TEXT,
  asking_price_micro_usd BIGINT,
  bandwidth_tier TEXT,
  inventory JSONB,
  enrolled_at_ms BIGINT NOT NULL,
  last_seen_at_ms BIGINT,
  uptime_ms_total BIGINT NOT NULL DEFAULT 0,
  reliability DOUBLE PRECISION NOT NULL DEFAULT 0,
  change_seq BIGINT NOT NULL DEFAULT nextval('device_change_seq')
);
CREATE INDEX devices_account ON devices (account_id);
CREATE INDEX devices_change_seq ON devices (change_seq);
CREATE INDEX devices_online_last_seen ON devices (last_seen_at_ms) WHERE state = 'online';

CREATE TABLE device_events (
  id BIGSERIAL PRIMARY KEY,
  device_id TEXT NOT NULL REFERENCES devices (id),
  at_ms BIGINT NOT NULL,
  state TEXT NOT NULL,
  reason_code TEXT NOT NULL,
  reason TEXT NOT NULL
);
CREATE INDEX device_events_device ON device_events (device_id, id);

CREATE TABLE device_uptime_buckets (
  device_id TEXT NOT NULL REFERENCES devices (id),
  bucket_start_ms BIGINT NOT NULL,
  online_ms BIGINT NOT NULL,
  PRIMARY KEY (device_id, bucket_start_ms)
);
