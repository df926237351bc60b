-- A netting batch is sent by one flush at a time: the flush that sends or resumes it holds a lease on it (its token,
-- until when), and only the holder may mark it failed and put its payouts back in the queue. Before, two processes'
-- flushes could send one batch at once; one's refusal (nothing sent) re-queued payouts the other had paid.
ALTER TABLE netting_batches ADD COLUMN lease_token text;
ALTER TABLE netting_batches ADD COLUMN leased_until timestamptz;

-- A payout accrues only while its payment is processing: the accrual's statement calls this otherwise, so that the
-- debit is rolled back with it (recovery accrues a payment its request may have failed meanwhile).
CREATE FUNCTION netting_payment_not_processing() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'netting: the payment is no longer processing' USING ERRCODE = 'SYN01';
END
$$;
