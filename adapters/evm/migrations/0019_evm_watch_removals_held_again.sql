-- How often a removal was held again by a sink call that found, once it returned, its event removed meanwhile (another
-- watcher took the lease while the call ran, and a reorg removed the event: watcher-poll.ts handled). The call may have
-- written its effect after that watcher applied the removal and found nothing to undo (a deposit's credit written after
-- its reversal found no receipt), so the removal is applied once more after it. A watcher that applied a removal forgets
-- it only if it was not held again since it was read; before, its DELETE could drop one held again meanwhile.
ALTER TABLE evm_watch_removals_held ADD COLUMN held_again integer NOT NULL DEFAULT 0;
