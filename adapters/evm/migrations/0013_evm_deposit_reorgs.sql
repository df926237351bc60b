-- Deposits a reorg took away after they were credited (reversed: `reorg:<receipt key>`), so that the same log mined
-- again on the new branch (a new generation of it) gives the reversal back — the invoice paid again, its received
-- amount what it was — instead of being credited as a second payment of an invoice left reversed for good.
CREATE TABLE evm_deposit_reorgs (
  chain_id integer NOT NULL,
  token text NOT NULL,
  tx_hash text NOT NULL,
  log_index integer NOT NULL,
  generation integer NOT NULL,
  reference text NOT NULL,
  -- The generation that gave it back (mined again); null while it stands.
  reinstated_by integer,
  PRIMARY KEY (chain_id, token, tx_hash, log_index, generation)
);
