-- The next nonce of each hot wallet on each chain, shared by every gateway process on that wallet: a send takes
-- this row's lock, signs with max(next_nonce, the chain's pending count), stores the send and moves the row on,
-- all in one transaction, so two processes never sign two transactions with one nonce.
CREATE TABLE evm_nonces (
  chain_id integer NOT NULL,
  wallet text NOT NULL,
  next_nonce bigint NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (chain_id, wallet)
);

-- When a send was last signed (its first transaction or a replacement): a send without a receipt this long after
-- is replaced by the same call, same nonce, fees bumped.
ALTER TABLE evm_sends ADD COLUMN signed_at timestamptz NOT NULL DEFAULT now();

-- Transactions a replacement superseded. Any of them may still be the one mined: the receipt is looked for under
-- each (a payout's evidence is the log of whichever landed).
CREATE TABLE evm_sends_replaced (
  attempt_id text NOT NULL REFERENCES evm_sends (attempt_id),
  tx_hash text NOT NULL UNIQUE,
  raw_tx text NOT NULL,
  replaced_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (attempt_id, tx_hash)
);
