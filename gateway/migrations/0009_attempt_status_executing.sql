-- The attempt status 'executing' is gone: nothing has written it since attempts stay 'reserving' while their rail
-- runs (see gateway/payments/store.ts, newAttempt). Recovery treated an 'executing' attempt exactly as a
-- 'reserving' one: it asks the ledger whether the attempt's reservation exists (making it if not) and then asks
-- the rail, which reports the first outcome of an attempt id it already executed. So any row left 'executing'
-- becomes 'reserving', keeping its updated_at (recovery takes it when it has been quiet long enough, as before).
-- The CHECK then refuses 'executing', so a process of an earlier version (whose recovery would pay an
-- 'executing' attempt without reserving) cannot write it again; the open-attempts index loses it as well.
UPDATE attempts SET status = 'reserving' WHERE status = 'executing';
ALTER TABLE attempts DROP CONSTRAINT attempts_status_check;
ALTER TABLE attempts ADD CONSTRAINT attempts_status_check CHECK (status IN ('reserving', 'in_flight', 'succeeded', 'failed'));
DROP INDEX attempts_open;
CREATE INDEX attempts_open ON attempts (status) WHERE status IN ('reserving', 'in_flight');
