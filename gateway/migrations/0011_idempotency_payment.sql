-- An idempotency record written with its payment, in the payment's own transaction, keeps the answer's status and the
-- payment's id instead of the answer's text: the payment is final there, so its answer is read back from it when the
-- key is repeated (which is rare), instead of a second copy of the payment written with every payment (which is not).
ALTER TABLE idempotency_keys ADD COLUMN payment_id text;
