-- The documents a payment carries (its destination, policy and routing decision) and an idempotency record's answer
-- are written once and read back whole, never searched inside: json keeps their text as sent (validated only),
-- where jsonb parsed each into a tree on every insert — the largest part of a payment's cost to write.
ALTER TABLE payments ALTER COLUMN destination TYPE json USING destination::json;
ALTER TABLE payments ALTER COLUMN policy TYPE json USING policy::json;
ALTER TABLE payments ALTER COLUMN decision TYPE json USING decision::json;
ALTER TABLE idempotency_keys ALTER COLUMN response_body TYPE json USING response_body::json;
-- A payment row with its decision passes 2 kB, where PostgreSQL would compress it (TOAST) on every insert: keep rows
-- up to a page inline and uncompressed.
ALTER TABLE payments SET (toast_tuple_target = 8160);
ALTER TABLE idempotency_keys SET (toast_tuple_target = 8160);
