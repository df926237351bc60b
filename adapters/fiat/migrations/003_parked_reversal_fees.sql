-- A parked reversal keeps the fees Stripe took for it (a dispute's fee, from the dispute's balance transactions):
-- booked with the reversal once its PaymentIntent is credited. A JSON array of {id, amount} (amount as a decimal
-- string: minor units, negative for a fee given back); rows parked before carry none.
ALTER TABLE fiat_parked_reversals ADD COLUMN fees json NOT NULL DEFAULT '[]';
