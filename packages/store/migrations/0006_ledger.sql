-- The double-entry ledger (packages/ledger): accounts with four running totals, and immutable transfers.
-- The totals are written in the same transaction as the transfers that change them, and can always be
-- recomputed from the transfers (`gpumesh ledger verify`).
CREATE TABLE ledger_accounts (
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  owner_id TEXT,
  allow_negative BOOLEAN NOT NULL,
  debits_pending BIGINT NOT NULL DEFAULT 0,
  debits_posted BIGINT NOT NULL DEFAULT 0,
  credits_pending BIGINT NOT NULL DEFAULT 0,
  credits_posted BIGINT NOT NULL DEFAULT 0,
  created_at_ms BIGINT NOT NULL,
  -- The database refuses an overdraft too, whatever the code above it does.
  CONSTRAINT ledger_accounts_no_overdraft
    CHECK (allow_negative OR credits_posted - debits_posted - debits_pending >= 0)
);
CREATE INDEX ledger_accounts_owner ON ledger_accounts (owner_id);

CREATE TABLE ledger_transfers (
  seq BIGSERIAL UNIQUE,
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  debit_account_id TEXT NOT NULL REFERENCES ledger_accounts (id),
  credit_account_id TEXT NOT NULL REFERENCES ledger_accounts (id),
  amount BIGINT NOT NULL CHECK (amount > 0),
  pending_id TEXT REFERENCES ledger_transfers (id),
  timeout_ms BIGINT NOT NULL,
  code TEXT NOT NULL,
  reference TEXT,
  created_at_ms BIGINT NOT NULL
);
-- A pending transfer is resolved (posted, voided or expired) at most once.
CREATE UNIQUE INDEX ledger_transfers_resolves ON ledger_transfers (pending_id) WHERE pending_id IS NOT NULL;
CREATE INDEX ledger_transfers_debit ON ledger_transfers (debit_account_id, seq);
CREATE INDEX ledger_transfers_credit ON ledger_transfers (credit_account_id, seq);
CREATE INDEX ledger_transfers_timeouts ON ledger_transfers (created_at_ms) WHERE kind = 'pending' AND timeout_ms > 0;
