-- A renter's own machine joined to a cluster's mesh as a WireGuard peer: it reaches the nodes' overlay
-- addresses (Ray's head among them) and nothing else. Only its public key is known here.
CREATE TABLE cluster_clients (
  cluster_id TEXT NOT NULL REFERENCES clusters (id),
  public_key TEXT NOT NULL,
  name TEXT NOT NULL,
  -- overlay address index in the cluster subnet; clients use 200..249, nodes 0..199
  address_index INTEGER NOT NULL,
  created_at_ms BIGINT NOT NULL,
  removed_at_ms BIGINT,
  PRIMARY KEY (cluster_id, public_key)
);
CREATE UNIQUE INDEX cluster_clients_address ON cluster_clients (cluster_id, address_index)
  WHERE removed_at_ms IS NULL;
