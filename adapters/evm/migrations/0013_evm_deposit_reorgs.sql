-- Deposits a reorg took away after they were credited (reversed: `reorg:<receipt key>`), so that the same transfer
-- mined again on the new branch (its transaction's hash, to the same invoice, the same amount: its log's place in its
-- block may differ) gives the reversal back — the invoice paid again, its received amount what it was — instead of
-- being credited as a second payment of an invoice left reversed for good.
CREATE TABLE evm_deposit_reorgs (
  chain_id integer NOT NULL,
  token text NOT NULL,
  tx_hash text NOT NULL,
  log_index integer NOT NULL,
  generation integer NOT NULL,
  reference text NOT NULL,
  amount numeric NOT NULL,
  -- The receipt key of the log that gave it back (the transfer mined again); null while it stands.
  reinstated_by text,
  -- Its prefix (chain, token, transaction) is how a transfer mined again finds its reversals.
  PRIMARY KEY (chain_id, token, tx_hash, log_index, generation)
);
