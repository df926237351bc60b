-- The rail's pass takes one kept fee at a time, of the kinds Stripe has not refused this pass (delivery.ts
-- bookParkedFees): a key refused for refunds (403), it takes only payouts' fees. The index fiat_parked_fees_due
-- (rail, next_try_at) read them in order, each refund's due fee skipped one by one: with many of them due, every take
-- of a payout's fee read past all of them. This one reads one kind's in order. fiat_parked_fees_due stays: the take of
-- every kind (every take until a kind is refused) reads it in order, where this one would have to sort each kind's due fees together.
-- A plain build, in the migration's transaction: the table holds only the fees Stripe refused to tell.
CREATE INDEX fiat_parked_fees_due_by_kind ON fiat_parked_fees (rail, kind, next_try_at) WHERE gave_up_at IS NULL;
