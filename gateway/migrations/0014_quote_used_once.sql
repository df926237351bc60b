-- A quote pays one payment: a second payment naming it (under another Idempotency-Key) is refused, even when two
-- race. Replays of the first payment's key are answered from its idempotency record and never insert again.
CREATE UNIQUE INDEX payments_quote_once ON payments (quote_id) WHERE quote_id IS NOT NULL;
