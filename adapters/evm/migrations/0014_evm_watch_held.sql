-- An event whose sink call keeps failing is held (held_seen: its `seen` failed; held_pending: its `final`), so that
-- the events behind it go on; held ones are tried again a while later (watcher-poll.ts). Before, it was retried at
-- the head of every poll, and every later event of the contract — every tenant's deposits — waited behind it.
ALTER TABLE evm_watch_events DROP CONSTRAINT evm_watch_events_status_check;
ALTER TABLE evm_watch_events ADD CONSTRAINT evm_watch_events_status_check
  CHECK (status IN ('seen', 'pending', 'posted', 'removed', 'held_seen', 'held_pending'));
