-- The ledger: TigerBeetle's accounts and transfers on PostgreSQL (and PGlite, same SQL).
-- u128 ids are uuid (16 bytes, compared as unsigned big-endian, so id order is uuid order); zero is stored as NULL
-- in optional uuid columns. Amounts and balances are int8 (a deliberate limit of 2^63 - 1, see types.ts).
-- u64 user data is stored as int8 two's complement. Timestamps are int8 nanoseconds assigned by the ledger.

CREATE TABLE ledger_accounts (
  id uuid PRIMARY KEY,
  ledger bigint NOT NULL,
  code integer NOT NULL,
  flags integer NOT NULL,
  user_data_128 uuid,
  user_data_64 bigint NOT NULL DEFAULT 0,
  user_data_32 bigint NOT NULL DEFAULT 0,
  debits_pending bigint NOT NULL DEFAULT 0 CHECK (debits_pending >= 0),
  debits_posted bigint NOT NULL DEFAULT 0 CHECK (debits_posted >= 0),
  credits_pending bigint NOT NULL DEFAULT 0 CHECK (credits_pending >= 0),
  credits_posted bigint NOT NULL DEFAULT 0 CHECK (credits_posted >= 0),
  timestamp bigint NOT NULL
) WITH (fillfactor = 50);

CREATE TABLE ledger_transfers (
  id uuid PRIMARY KEY,
  debit_account_id uuid NOT NULL,
  credit_account_id uuid NOT NULL,
  amount bigint NOT NULL CHECK (amount >= 0),
  timestamp bigint NOT NULL,
  ledger bigint NOT NULL,
  code integer NOT NULL,
  flags integer NOT NULL,
  timeout bigint NOT NULL DEFAULT 0,
  pending_id uuid,
  user_data_128 uuid,
  user_data_64 bigint NOT NULL DEFAULT 0,
  user_data_32 bigint NOT NULL DEFAULT 0,
  evidence jsonb
);

-- An account's transfers in time order (getAccountTransfers).
CREATE INDEX ledger_transfers_debit ON ledger_transfers (debit_account_id, timestamp);
CREATE INDEX ledger_transfers_credit ON ledger_transfers (credit_account_id, timestamp);
-- A pending transfer resolves at most once, whichever process tries.
CREATE UNIQUE INDEX ledger_transfers_pending_id ON ledger_transfers (pending_id) WHERE pending_id IS NOT NULL;

-- Pending transfers not yet posted, voided or expired; expires_at is NULL without a timeout.
CREATE TABLE ledger_pending_open (
  id uuid PRIMARY KEY,
  expires_at bigint
);
CREATE INDEX ledger_pending_open_expires_at ON ledger_pending_open (expires_at) WHERE expires_at IS NOT NULL;

-- One row. Every ledger write locks it first (so writers from any number of processes apply batches one at a
-- time, like TigerBeetle's single-threaded state machine), takes its timestamps after timestamp_last, and leaves
-- a fresh token behind, by which a writer knows whether anyone else wrote since its own last batch.
CREATE TABLE ledger_clock (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  timestamp_last bigint NOT NULL,
  token bigint NOT NULL
);
INSERT INTO ledger_clock (singleton, timestamp_last, token) VALUES (true, 0, 0);
