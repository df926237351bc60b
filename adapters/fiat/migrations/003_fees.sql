-- Stripe's fees (gateway/settlement/rail-fees.ts books them):
-- - A parked reversal keeps the fees Stripe took for it (a dispute's fee, from the dispute's balance transactions),
--   booked with the reversal once its PaymentIntent is credited: a JSON array of {id, amount} (amount a decimal
--   string of minor units, negative for a fee given back); rows parked before carry none.
-- - An intent whose charge's balance transaction was set (charge.updated) before the intent was credited keeps that
--   as fee_pending: its fee is booked right after the credit.
-- - An intent not credited yet keeps the fees of its reversals undone meanwhile (a dispute won, or withdrawn, before
--   the payment's success arrived) as pending_fees (the same form as a parked reversal's): Stripe took them all the
--   same, and they are booked right after the credit.
ALTER TABLE fiat_parked_reversals ADD COLUMN fees json NOT NULL DEFAULT '[]';
ALTER TABLE fiat_stripe_intents ADD COLUMN fee_pending boolean NOT NULL DEFAULT false;
ALTER TABLE fiat_stripe_intents ADD COLUMN pending_fees json NOT NULL DEFAULT '[]';
