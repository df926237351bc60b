-- The removal of an event a reorg took away, kept before it is applied through the sink (watcher-poll.ts checkReorg:
-- in the transaction that marks the event removed and moves the cursor back) and forgotten once it is; one whose sink
-- call fails (a credit the ledger cannot reverse now) stays, tried again later (releaseHeld), as the event was before
-- its removal. Before, the sink was called first and a failure failed the poll — every poll, if it kept failing, and the
-- watcher credited no deposit of any tenant after the reorg. The event's own row is marked removed all the same
-- (0002's "removed": voided or reversed — here not yet). While its removal is held, the same log mined again (its
-- transaction and arguments) is not made final: the removal is applied first, then undone by it.
CREATE TABLE evm_watch_removals_held (
  chain_id integer NOT NULL,
  contract text NOT NULL,
  tx_hash text NOT NULL,
  log_index integer NOT NULL,
  generation integer NOT NULL,
  block_number bigint NOT NULL,
  block_hash text NOT NULL,
  event_name text NOT NULL,
  args jsonb NOT NULL,
  was_final boolean NOT NULL,
  held_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (chain_id, contract, tx_hash, log_index, generation)
);
