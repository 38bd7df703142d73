-- Clusters: the controller's desired and observed state, each node's progress, the event log a renter
-- watches, and the jobs run on a cluster. device_reservations (0003) stays the one place that says a device
-- is held; a cluster's nodes reuse it.

CREATE TABLE clusters (
  id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES accounts (id),
  name TEXT NOT NULL,
  state TEXT NOT NULL,
  state_reason TEXT NOT NULL,
  desired TEXT NOT NULL,
  -- The scheduler request, kept so a lost node is replaced under the same constraints.
  request JSONB NOT NULL,
  node_count INTEGER NOT NULL,
  gpus_per_node INTEGER NOT NULL,
  duration_ms BIGINT NOT NULL,
  -- Index of the cluster's /24 in 100.64.0.0/10 (16,384 of them); NULL once the cluster has ended.
  subnet_index INTEGER CHECK (subnet_index BETWEEN 0 AND 16383),
  price_per_hour_micro_usd BIGINT NOT NULL,
  created_at_ms BIGINT NOT NULL,
  ready_at_ms BIGINT,
  expires_at_ms BIGINT,
  ended_at_ms BIGINT,
  -- when the state last changed: how long a cluster has been provisioning or terminating
  state_changed_at_ms BIGINT NOT NULL,
  updated_at_ms BIGINT NOT NULL
);
-- Two live clusters never share a subnet, whatever the coordinator processes do concurrently.
CREATE UNIQUE INDEX clusters_subnet_index ON clusters (subnet_index) WHERE subnet_index IS NOT NULL;
CREATE INDEX clusters_account ON clusters (account_id, created_at_ms);
CREATE INDEX clusters_active ON clusters (created_at_ms) WHERE state NOT IN ('terminated', 'failed');

CREATE TABLE cluster_nodes (
  cluster_id TEXT NOT NULL REFERENCES clusters (id),
  device_id TEXT NOT NULL REFERENCES devices (id),
  -- The node's overlay address in the cluster subnet: never reused within a cluster, even after a node is lost.
  node_index INTEGER NOT NULL,
  role TEXT NOT NULL,
  phase TEXT NOT NULL,
  phase_reason TEXT NOT NULL,
  wg_public_key TEXT,
  endpoint TEXT,
  joined_at_ms BIGINT NOT NULL,
  left_at_ms BIGINT,
  PRIMARY KEY (cluster_id, device_id),
  UNIQUE (cluster_id, node_index)
);
CREATE INDEX cluster_nodes_device ON cluster_nodes (device_id);

CREATE TABLE cluster_events (
  seq BIGSERIAL PRIMARY KEY,
  cluster_id TEXT NOT NULL REFERENCES clusters (id),
  at_ms BIGINT NOT NULL,
  kind TEXT NOT NULL,
  device_id TEXT,
  message TEXT NOT NULL
);
CREATE INDEX cluster_events_cluster ON cluster_events (cluster_id, seq);

CREATE TABLE cluster_jobs (
  id TEXT PRIMARY KEY,
  cluster_id TEXT NOT NULL REFERENCES clusters (id),
  account_id TEXT NOT NULL REFERENCES accounts (id),
  entrypoint TEXT NOT NULL,
  status TEXT NOT NULL,
  message TEXT NOT NULL,
  exit_code INTEGER,
  created_at_ms BIGINT NOT NULL,
  finished_at_ms BIGINT
);
CREATE INDEX cluster_jobs_cluster ON cluster_jobs (cluster_id, created_at_ms);

CREATE TABLE cluster_job_logs (
  job_id TEXT NOT NULL REFERENCES cluster_jobs (id),
  seq INTEGER NOT NULL,
  text TEXT NOT NULL,
  PRIMARY KEY (job_id, seq)
);
