-- A payment is written in one transaction with its first reservation. When its Idempotency-Key is already taken,
-- the insert calls this, so that the whole transaction (the reservation with it) is rolled back.
CREATE FUNCTION payment_key_taken() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'payments: the Idempotency-Key is taken by another payment' USING ERRCODE = 'SYP01';
END
$$;
