-- Whether the sink's `final` may have been called for an event: set (watcher-poll.ts) before the calls are made, so it
-- holds through a crash between the call and the status's move to posted, and through a call that applied its effect
-- and then failed. A reorg's removal of such an event is handed to the sink as possibly final (was_final), and the sink
-- checks what its `final` wrote before undoing it. Before, only `posted` counted: a deposit credited whose row had not
-- yet moved (held_pending, or the crash) was removed as never final, and its credit stood with no transfer on chain.
-- Cleared when the same log is mined again (a new generation). Events waiting to be final when this is applied may have
-- had their `final` called (held_pending certainly has): they are marked, as marking one too many only makes its sink
-- look at what it wrote.
ALTER TABLE evm_watch_events ADD COLUMN final_called boolean NOT NULL DEFAULT false;
UPDATE evm_watch_events SET final_called = true WHERE status IN ('pending', 'held_pending');
-- So too the removals held now: each was recorded final only if posted (0015), the rule this replaces.
UPDATE evm_watch_removals_held SET was_final = true;
