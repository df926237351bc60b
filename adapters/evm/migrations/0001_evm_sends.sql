-- One row per attempt the EVM rail has signed: written before the transaction is broadcast, so that a retry
-- or a restart finds the same signed transaction (same nonce) and can never pay the attempt twice.
CREATE TABLE evm_sends (
  attempt_id text PRIMARY KEY,
  chain_id integer NOT NULL,
  tx_hash text NOT NULL UNIQUE,
  raw_tx text NOT NULL,
  nonce integer NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
