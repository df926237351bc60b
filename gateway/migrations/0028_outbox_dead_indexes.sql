-- Two indexes of the outbox's first delivery loop, read by nothing since delivery moved to webhook_deliveries
-- (0020): every event still paid for their entries (an event is written with every payment, so twice per payment on
-- the hot path). What reads the outbox now uses outbox_to_fan_out, the primary key and the list indexes (0019).
DROP INDEX IF EXISTS outbox_undelivered;
DROP INDEX IF EXISTS outbox_due;
