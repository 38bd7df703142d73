-- Epoch rewards: each closed epoch and every device's payout with the measured factors it came from, so a
-- supplier can recompute it. An epoch row is written with all its payouts in one transaction (the plan); the
-- ledger transfers that pay it have ids naming the epoch and the device, and paid_at_ms is set once they are
-- committed. Closing an epoch again reuses the stored plan, so it pays once.
CREATE TABLE reward_epochs (
  epoch BIGINT PRIMARY KEY,
  starts_at_ms BIGINT NOT NULL,
  ends_at_ms BIGINT NOT NULL,
  policy_version TEXT NOT NULL,
  emission_units BIGINT NOT NULL CHECK (emission_units >= 0),
  paid_units BIGINT NOT NULL CHECK (paid_units >= 0 AND paid_units <= emission_units),
  devices_considered INTEGER NOT NULL,
  devices_eligible INTEGER NOT NULL,
  devices_paid INTEGER NOT NULL,
  pools JSONB NOT NULL,
  computed_at_ms BIGINT NOT NULL,
  paid_at_ms BIGINT
);

-- No foreign keys: the closer writes these rows only from the devices and the epoch it has just read, and
-- PostgreSQL checks a foreign key row by row, which took over 5 s for the payouts of 100,000 devices.
CREATE TABLE reward_payouts (
  epoch BIGINT NOT NULL,
  device_id TEXT NOT NULL,
  account_id TEXT NOT NULL,
  pool TEXT NOT NULL,
  eligible BOOLEAN NOT NULL,
  ineligible_reason_code TEXT,
  ineligible_reason TEXT,
  -- The measured factors, as columns: a JSON document per row made storing 100,000 payouts 2 s slower.
  hired_ppm INTEGER NOT NULL,
  uptime_ppm INTEGER NOT NULL,
  bandwidth_tier TEXT,
  bandwidth_milli INTEGER NOT NULL,
  hardware_milli BIGINT NOT NULL,
  hired_milli INTEGER NOT NULL,
  -- Each GPU model as "model:count:multiplier", space separated ("h100:2:2000").
  gpus TEXT NOT NULL,
  score NUMERIC NOT NULL,
  pool_total_score NUMERIC NOT NULL,
  amount_units BIGINT NOT NULL CHECK (amount_units >= 0),
  transfer_id TEXT,
  PRIMARY KEY (epoch, device_id)
);
CREATE INDEX reward_payouts_device ON reward_payouts (device_id, epoch DESC);

-- The explorer's price index: the median asked price per GPU-hour of each model's offers, sampled as the
-- market is measured.
CREATE TABLE price_index_samples (
  model_key TEXT NOT NULL,
  at_ms BIGINT NOT NULL,
  median_micro_usd BIGINT NOT NULL,
  offers INTEGER NOT NULL,
  PRIMARY KEY (model_key, at_ms)
);
CREATE INDEX price_index_samples_at ON price_index_samples (at_ms);

-- Epoch inputs read service periods by time, across clusters.
CREATE INDEX cluster_node_service_time ON cluster_node_service (started_at_ms);
CREATE INDEX device_events_time ON device_events (at_ms);
CREATE INDEX verification_challenges_finished ON verification_challenges (finished_at_ms) WHERE outcome <> 'issued';
-- An epoch's payouts are listed largest first, a page at a time.
CREATE INDEX reward_payouts_epoch_amount ON reward_payouts (epoch, amount_units DESC, device_id);
