-- An index of the outbox's first delivery loop, read by nothing since delivery moved to webhook_deliveries (0020):
-- every event still paid for its entry (an event is written with every payment, so on the hot path). What reads
-- the outbox now uses the fan-out's index, the primary key and the list indexes (0019). outbox_undelivered went in
-- 0004 already; dropped here too in case a database kept it.
DROP INDEX IF EXISTS outbox_undelivered;
DROP INDEX IF EXISTS outbox_due;
