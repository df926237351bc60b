-- Stripe's fees for a payout of the platform's balance or a refund that Stripe refused to tell when their event was
-- delivered (a restricted key's 403, a 404: delivery.ts), its money booked and the event answered 200. Before, such a
-- fee was logged and never booked: the fiat clearing account then said the rail held that fee more than Stripe did,
-- with nothing left to ask again. Kept here instead, one row per rail and Stripe object (`object_id`, po_… or re_…:
-- what is asked again), and booked by the rail's pass each minute once Stripe tells it, under the fee ids the object
-- names (events.ts platformPayoutReferences, refundFeeIds: the fee's ledger id derives from its rail and that id,
-- settlement/rail-fees.ts railFeeLedgerId), so a redelivered event and the pass book it once between them:
-- - `kind`: a payout's fee or a refund's; `failure`: what its failure's balance transaction gave back is asked too;
-- - `booking`: what the event's booking linked the fee to, as JSON: a refund's {"invoice", "paymentIntent"} (the
--   invoice it refunds, paid by that PaymentIntent), a payout's {"movements"} (the operator's capital it moved, each
--   {"direction", "amount" (a decimal string of minor units), "reference", "description"});
-- - `tries` and `next_try_at`: each try puts the next off, from a minute to twice the last wait, up to an hour, so that
--   a key that may not read the object is not asked every minute for ever; `revision` counts the row kept again (its
--   event delivered again while Stripe still refused), so that a pass that booked what it read then keeps what came since.
CREATE TABLE fiat_parked_fees (
  rail text NOT NULL,
  object_id text NOT NULL,
  kind text NOT NULL CHECK (kind IN ('payout', 'refund')),
  failure boolean NOT NULL,
  booking json NOT NULL,
  tries integer NOT NULL DEFAULT 0,
  revision integer NOT NULL DEFAULT 0,
  parked_at timestamptz NOT NULL DEFAULT now(),
  next_try_at timestamptz NOT NULL,
  PRIMARY KEY (rail, object_id)
);
CREATE INDEX fiat_parked_fees_due ON fiat_parked_fees (rail, next_try_at);
