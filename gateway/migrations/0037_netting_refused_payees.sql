-- A payee the rail refuses (a token's blacklist) no longer holds back the batch it is in. Before, the batch was
-- refused whole, every payout went back in the queue, and the next batch (30 s later) held the same payee: no payee
-- of it was ever paid. Now the rail says which payees a batch was refused for: the batch keeps them
-- (refused_payees: payee, code, message), their payouts stay with it, marked refused, and the other payouts go back
-- in the queue to leave at once. A refused payout's payment fails and its accrual goes back to the payer, with
-- returned_at set in the same transaction; a flush finishes what a stopped process left refused and not returned.
ALTER TABLE netting_batches ADD COLUMN refused_payees jsonb;
ALTER TABLE netted_payouts ADD COLUMN refusal_code text;
ALTER TABLE netted_payouts ADD COLUMN refusal_message text;
ALTER TABLE netted_payouts ADD COLUMN returned_at timestamptz;
ALTER TABLE netted_payouts ADD CONSTRAINT netted_payouts_refusal CHECK (
  (refusal_code IS NULL) = (refusal_message IS NULL)
  AND (returned_at IS NULL OR refusal_code IS NOT NULL)
  AND (refusal_code IS NULL OR batch_id IS NOT NULL));
CREATE INDEX netted_payouts_to_return ON netted_payouts (rail) WHERE refusal_code IS NOT NULL AND returned_at IS NULL;

-- A refused payout is returned only while its payment is processing: the return's statement calls this otherwise,
-- so that the transfer back to the payer is rolled back with it (a payment that ended otherwise is not paid twice).
CREATE FUNCTION netting_refused_payment_not_processing() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'netting: the refused payout''s payment is no longer processing' USING ERRCODE = 'SYN02';
END
$$;
