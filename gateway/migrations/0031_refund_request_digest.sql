-- The SHA-256 of the request a refund was made by under its Idempotency-Key (the digest its idempotency record
-- carries), kept on the refund, as 0030 keeps a payment's: the record goes after 24 hours, the key stays with its
-- refund. A request under the key afterwards is answered the refund only with the same digest, else refused 409
-- idempotency_key_reused. Null for a refund made without a key, or before this column and past its record's 24 hours;
-- a refund whose record is still there takes its digest from it now.
ALTER TABLE refunds ADD COLUMN request_sha256 bytea;
UPDATE refunds r SET request_sha256 = k.request_sha256
  FROM idempotency_keys k
  WHERE k.tenant_id = r.tenant_id AND k.key = r.idempotency_key AND r.request_sha256 IS NULL
    -- The claim the refund's own request made before it, not a later request's claim of the key (past 24 hours).
    AND k.created_at <= r.created_at;
