-- The SHA-256 of the request a payment was made by under its Idempotency-Key (method, URL, body: the digest its
-- idempotency record carries), kept on the payment itself. The record goes after 24 hours (the prune), or at once
-- when its answer was a server error; the payment keeps its key for good. A request under that key afterwards is the
-- payment's again only with the same digest, else it is refused 409 idempotency_key_reused, as while the record
-- lived. Null for a payment made without a key, or before this column and past its record's 24 hours (such a key
-- answers its payment, as before); a payment whose record is still there takes its digest from it now (the record
-- and the payment were written in one statement, with the same digest and time).
ALTER TABLE payments ADD COLUMN request_sha256 bytea;
UPDATE payments p SET request_sha256 = k.request_sha256
  FROM idempotency_keys k
  WHERE k.tenant_id = p.tenant_id AND k.key = p.idempotency_key AND p.request_sha256 IS NULL
    -- The record written with the payment, not a later request's claim of the key (after the prune).
    AND k.created_at <= p.created_at + interval '1 minute';
