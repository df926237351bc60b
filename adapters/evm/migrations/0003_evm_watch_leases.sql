-- Which watcher follows a (chain, contract) now: one at a time across gateway processes, the others stand by
-- until the holder stops (it deletes its row) or its lease runs out.
CREATE TABLE evm_watch_leases (
  chain_id integer NOT NULL,
  contract text NOT NULL,
  holder text NOT NULL,
  expires_at timestamptz NOT NULL,
  PRIMARY KEY (chain_id, contract)
);
