-- A price lock belongs to the paywall's version it was converted from (its updated_at): a process that had not yet
-- read a price change locked the old price for the window, under the key the new price then read, and the old price
-- was charged for the rest of the window (and accepted in the next). The locks are a window's, and go at once.
-- A process of the code before, still running during a deploy, inserts without the version: its rows take
-- '-infinity', a version no paywall has, so they are never read as any price's.
DELETE FROM paywall_rate_locks;
ALTER TABLE paywall_rate_locks ADD COLUMN paywall_updated_at timestamptz NOT NULL DEFAULT '-infinity';
ALTER TABLE paywall_rate_locks DROP CONSTRAINT paywall_rate_locks_pkey;
ALTER TABLE paywall_rate_locks ADD PRIMARY KEY (paywall_id, paywall_updated_at, window_start_ms, asset);
