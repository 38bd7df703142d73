-- GMT on a chain (SPL token on Solana; see docs/chain.md). The ledger keeps the money; these tables keep what
-- the chain adapter needs to move it exactly once.

-- One deposit address per account: an SPL token account at an address derived from the vault's key and a seed,
-- owned by the vault's key, so only the network can move what lands there.
CREATE TABLE chain_deposit_addresses (
  account_id TEXT PRIMARY KEY,
  address TEXT NOT NULL UNIQUE,
  seed TEXT NOT NULL,
  created_at_ms BIGINT NOT NULL
);

-- Each credited token transfer into a deposit address: the transaction signature and the instruction's index
-- are its identity, so a deposit reported twice, or by two coordinators, is credited once.
CREATE TABLE chain_deposits (
  signature TEXT NOT NULL,
  instruction_index INTEGER NOT NULL,
  account_id TEXT NOT NULL,
  address TEXT NOT NULL,
  amount BIGINT NOT NULL CHECK (amount > 0),
  transfer_id TEXT NOT NULL UNIQUE,
  credited_at_ms BIGINT NOT NULL,
  PRIMARY KEY (signature, instruction_index)
);
CREATE INDEX chain_deposits_address ON chain_deposits (address);

-- Every transaction the vault's key signs (withdrawals, and sweeps of deposit addresses into the vault), stored
-- with its signature and exact bytes BEFORE it is sent: after a crash the adapter asks the chain about this
-- signature, resends these bytes while their blockhash is valid, and never signs a second payment for one id.
CREATE TABLE chain_outgoing (
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL CHECK (kind IN ('withdrawal', 'sweep')),
  account_id TEXT NOT NULL,
  source TEXT NOT NULL,
  destination TEXT NOT NULL,
  amount BIGINT NOT NULL CHECK (amount > 0),
  signature TEXT NOT NULL UNIQUE,
  wire_base64 TEXT NOT NULL,
  last_valid_block_height BIGINT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('signed', 'landed', 'failed', 'expired')),
  created_at_ms BIGINT NOT NULL,
  resolved_at_ms BIGINT
);
CREATE INDEX chain_outgoing_unresolved ON chain_outgoing (created_at_ms) WHERE state = 'signed';
CREATE INDEX chain_outgoing_source ON chain_outgoing (source);
