-- Fan-out reads the outbox through a cursor instead of marking each event (webhooks/delivery.ts fanOutEvents).
-- Marking cost every event an UPDATE that could not stay on its page's heap-only chain (fanned_out_at was in the
-- predicate of outbox_to_fan_out): a second row version and an entry in each of the outbox's indexes, for every
-- payment. Now each event carries the transaction that wrote it (xact, a 64-bit id that never wraps), and fan-out
-- takes events in (xact, id) order past a cursor, only from transactions older than every one still running
-- (pg_snapshot_xmin): no such event can appear later below the cursor, so none is skipped, and none is read twice.
ALTER TABLE outbox ADD COLUMN xact xid8;
ALTER TABLE outbox ALTER COLUMN xact SET DEFAULT pg_current_xact_id();
-- Events not fanned out yet by the marks are the cursor's first; the marked ones stay out of its range (null).
UPDATE outbox SET xact = pg_current_xact_id() WHERE fanned_out_at IS NULL;
CREATE INDEX outbox_fan_out_order ON outbox (xact, id);
DROP INDEX outbox_to_fan_out;

CREATE TABLE outbox_fan_out (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  -- The last event fanned out: its transaction and id.
  xact xid8 NOT NULL,
  id bigint NOT NULL
);
INSERT INTO outbox_fan_out (xact, id) VALUES ('0', 0);
