-- The RevenueSplitter watcher's durable state: where it is (cursor), the hashes of the recent blocks it has
-- read (to notice a reorg), every event it has seen with what became of it, and the split registry.

-- One row per (chain, contract): the next block to read.
CREATE TABLE evm_watch_cursors (
  chain_id integer NOT NULL,
  contract text NOT NULL,
  next_block bigint NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (chain_id, contract)
);

-- Hashes of blocks read and not yet final (those holding events, and the last block of each read).
CREATE TABLE evm_watch_blocks (
  chain_id integer NOT NULL,
  contract text NOT NULL,
  number bigint NOT NULL,
  hash text NOT NULL,
  PRIMARY KEY (chain_id, contract, number)
);

-- status: seen (stored, not yet in the ledger) → pending (pending ledger transfer) → posted (final), or
-- removed (a reorg took it away; voided, or reversed if it had been posted). `generation` counts how often
-- the event came back after a removal; the ledger ids include it so a voided transfer is never reused.
CREATE TABLE evm_watch_events (
  chain_id integer NOT NULL,
  contract text NOT NULL,
  tx_hash text NOT NULL,
  log_index integer NOT NULL,
  block_number bigint NOT NULL,
  block_hash text NOT NULL,
  event_name text NOT NULL,
  args jsonb NOT NULL,
  status text NOT NULL CHECK (status IN ('seen', 'pending', 'posted', 'removed')),
  generation integer NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (chain_id, contract, tx_hash, log_index)
);
CREATE INDEX evm_watch_events_open ON evm_watch_events (chain_id, contract, status, block_number, log_index)
  WHERE status <> 'posted';

-- The split registry, from SplitCreated: recipients (ascending) and their shares in basis points.
CREATE TABLE evm_splits (
  chain_id integer NOT NULL,
  contract text NOT NULL,
  split_id text NOT NULL,
  recipients jsonb NOT NULL,
  basis_points jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (chain_id, contract, split_id)
);
