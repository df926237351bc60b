-- The operator's capital a rail reported moved (a Stripe payout of the platform's balance to the operator's bank) that
-- the rail's clearing account did not hold when it was delivered: the operator's own funds put on the rail were never
-- booked, or payouts in flight held them. Before, the event was refused for the provider to deliver again, and Stripe
-- stops after 3 days: the payout was then never booked. Kept here instead, one row per rail and reference, and booked
-- (settlement/reconciliation.ts applyParkedRailCapital) once the clearing account holds it: right after the operator
-- books capital on the rail, and by a periodic pass; the row goes once the ledger has the booking, whose id is derived
-- from the rail and the reference, so a row tried by several processes at once books once. `amount` is in minor units
-- of `asset`, `description` the one the booking carries.
CREATE TABLE rail_capital_parked (
  rail text NOT NULL,
  reference text NOT NULL,
  asset text NOT NULL,
  direction text NOT NULL CHECK (direction IN ('in', 'out')),
  amount bigint NOT NULL CHECK (amount > 0),
  description text NOT NULL,
  parked_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (rail, reference)
);
