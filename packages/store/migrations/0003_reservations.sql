-- A reservation holds a device for one cluster. The primary key is the device: two clusters can never hold
-- the same device, whatever the coordinator processes do concurrently.
CREATE TABLE device_reservations (
  device_id TEXT PRIMARY KEY REFERENCES devices (id),
  cluster_id TEXT NOT NULL,
  account_id TEXT NOT NULL REFERENCES accounts (id),
  reserved_at_ms BIGINT NOT NULL
);
CREATE INDEX device_reservations_cluster ON device_reservations (cluster_id);
