-- Billing state of a cluster: its current hold in the ledger (a pending transfer from the renter's wallet to
-- the cluster's escrow) and how many billing intervals have been charged. Every charge is a ledger transfer
-- whose id names the cluster and the interval, so a charge replayed after a crash is charged once.
ALTER TABLE clusters ADD COLUMN billing_hold_id TEXT;
ALTER TABLE clusters ADD COLUMN billed_intervals INTEGER NOT NULL DEFAULT 0;
-- The end of the last interval charged: the renter has paid for everything before it.
ALTER TABLE clusters ADD COLUMN billed_until_ms BIGINT;

-- Each node's own price (its GPUs at the price quoted when it was reserved): what the renter pays for it and
-- what its supplier earns from, less the fee.
ALTER TABLE cluster_nodes ADD COLUMN price_per_hour_micro_usd BIGINT NOT NULL DEFAULT 0;

-- When each node was really serving: from Ray reporting it alive until it left Ray, was lost or released.
-- Billing charges a node for these periods only, so a node that was down is not charged for. Written in the
-- same statement as the phase change that opens or closes a period.
CREATE TABLE cluster_node_service (
  cluster_id TEXT NOT NULL REFERENCES clusters (id),
  device_id TEXT NOT NULL,
  started_at_ms BIGINT NOT NULL,
  ended_at_ms BIGINT,
  PRIMARY KEY (cluster_id, device_id, started_at_ms),
  CHECK (ended_at_ms IS NULL OR ended_at_ms >= started_at_ms)
);
-- At most one open period per node.
CREATE UNIQUE INDEX cluster_node_service_open ON cluster_node_service (cluster_id, device_id)
  WHERE ended_at_ms IS NULL;
