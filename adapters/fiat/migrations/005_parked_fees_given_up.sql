-- A kept fee Stripe has refused to tell for a week since it was kept (store.ts parkedFeeKeptMsMax) is given up by the
-- rail's pass: `gave_up_at` says when (said once in the log, as an error), and the pass asks for it no more. Before, a
-- key that may never read the object (another account's, a restricted key never given the permission) had every
-- refund's fee kept and asked every hour for ever, each try taking from Stripe's rate limit beside the webhook's
-- lookups and the refunds. A fee given up stays here for the operator to see, and, the key given the permission, to
-- have asked again (README "Reconciling a rail"):
--   UPDATE fiat_parked_fees SET gave_up_at = NULL, parked_at = now(), tries = 0, next_try_at = now()
--   WHERE gave_up_at IS NOT NULL;
-- The pass's index holds only those it still asks for.
ALTER TABLE fiat_parked_fees ADD COLUMN gave_up_at timestamptz;
DROP INDEX fiat_parked_fees_due;
CREATE INDEX fiat_parked_fees_due ON fiat_parked_fees (rail, next_try_at) WHERE gave_up_at IS NULL;
