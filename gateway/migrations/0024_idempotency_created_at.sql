-- The prune of expired idempotency records (gateway/http/idempotency.ts) finds them by age: without an index each
-- pass read the whole table, a day of keys at the rate payments arrive.
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
