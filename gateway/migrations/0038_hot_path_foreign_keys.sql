-- The foreign keys checked on every payment's rows, dropped: each was a lookup of the row it points to, locked FOR
-- KEY SHARE, per row inserted — five per internal payment (its tenant three times, its source account, its attempt's
-- payment), a third of the time PostgreSQL spent on the payment's statement (issue #19, measured with auto_explain:
-- 2.2 of 6.9 ms for a batch of 39), and every batch of one tenant sharing a lock on the same tenants row (a
-- MultiXact per row once two batches overlap). What they guarded cannot happen here: no statement deletes a tenant, an
-- account or a payment, and these rows are written only by the gateway, for the tenant it authenticated, from an
-- account it found in that tenant (payments), in the statement that writes the payment itself (attempts of an
-- internal payment) or for a payment it read (any other attempt).
ALTER TABLE payments DROP CONSTRAINT IF EXISTS payments_tenant_id_fkey;
ALTER TABLE payments DROP CONSTRAINT IF EXISTS payments_source_account_id_fkey;
ALTER TABLE attempts DROP CONSTRAINT IF EXISTS attempts_payment_id_fkey;
ALTER TABLE outbox DROP CONSTRAINT IF EXISTS outbox_tenant_id_fkey;
ALTER TABLE idempotency_keys DROP CONSTRAINT IF EXISTS idempotency_keys_tenant_id_fkey;
