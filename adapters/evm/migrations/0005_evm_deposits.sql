-- Money in on the EVM rail: one row per invoice the rail offered, with both ways to pay it — the deposit address
-- (a CREATE2 forwarder of the ForwarderFactory, from a salt derived from the reference) and the EIP-3009
-- authorization (its nonce derived from the reference, submitted by the hot wallet). The deposit watcher follows
-- the token's Transfer logs to the addresses and AuthorizationUsed logs of the nonces while `watch_until` is ahead.
CREATE TABLE evm_deposits (
  chain_id integer NOT NULL,
  token text NOT NULL,
  -- the invoice id (ReceiveRequest.reference)
  reference text NOT NULL,
  amount bigint NOT NULL CHECK (amount > 0),
  -- lower case; null when the rail has no ForwarderFactory (authorization only)
  deposit_address text,
  salt text NOT NULL,
  auth_nonce text NOT NULL,
  client_secret text NOT NULL UNIQUE,
  expires_at timestamptz NOT NULL,
  watch_until timestamptz NOT NULL,
  -- the first authorization submitted for it: its signer and transaction
  auth_from text,
  auth_tx_hash text,
  -- set when a confirmed transfer reached the address and it is not swept since
  sweep_due_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (chain_id, token, reference)
);
CREATE UNIQUE INDEX evm_deposits_address ON evm_deposits (chain_id, token, deposit_address);
CREATE UNIQUE INDEX evm_deposits_nonce ON evm_deposits (chain_id, token, auth_nonce);
CREATE INDEX evm_deposits_watched ON evm_deposits (chain_id, token, watch_until);
CREATE INDEX evm_deposits_sweep_due ON evm_deposits (chain_id, token, sweep_due_at) WHERE sweep_due_at IS NOT NULL;

-- Batch sweeps of forwarders to the hot wallet: written before the transaction is sent (its key in evm_sends), done
-- once its gas was handed to the gateway to book.
CREATE TABLE evm_sweeps (
  key text PRIMARY KEY,
  chain_id integer NOT NULL,
  token text NOT NULL,
  salts jsonb NOT NULL,
  started_at timestamptz NOT NULL DEFAULT now(),
  done_at timestamptz
);
CREATE INDEX evm_sweeps_open ON evm_sweeps (chain_id, token) WHERE done_at IS NULL;
