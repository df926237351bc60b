-- Money a payout's provider took back from the payee after the payout was made, and gave back to the platform's
-- balance: a Stripe transfer reversal, whole or in part (transfer.reversed). Before, nothing booked it: the ledger
-- still said the payee was paid, and the rail's clearing account held less than Stripe did. One row per reversal, by
-- the provider's id for it (a TransferReversal's), written with its ledger legs (settlement/payout-reversals.ts), so a
-- reversal delivered again books nothing twice. `amount` is in the rail's asset, `returned` what went back to the
-- payer's account, in the payment's asset (the same but for a payout that crossed assets).
CREATE TABLE payout_reversals (
  attempt_id text NOT NULL REFERENCES attempts (id),
  key text NOT NULL,
  amount bigint NOT NULL CHECK (amount > 0),
  returned bigint NOT NULL CHECK (returned >= 0),
  recorded_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (attempt_id, key)
);

-- What of an attempt was taken back so far, as Stripe's Transfer says `amount_reversed`: never more than it paid.
ALTER TABLE attempts ADD COLUMN amount_reversed bigint NOT NULL DEFAULT 0,
  ADD CONSTRAINT attempts_amount_reversed_within CHECK (amount_reversed >= 0 AND amount_reversed <= amount);

-- The view of every attempt (migrations 0042, 0048) says it too: the table's, and 0 for an internal payment's made one.
CREATE OR REPLACE VIEW payment_attempts AS
SELECT id, payment_id, seq, rail, status, amount, fee_max, fee, reserve_transfer_id, own_transfer_id, evidence,
       failure_code, failure_message, created_at, updated_at, network_fee, network_fee_asset, amount_reversed
FROM attempts
UNION ALL
SELECT 'att_' || substr(p.id, strpos(p.id, '_') + 1) AS id,
       p.id AS payment_id,
       0 AS seq,
       first.candidate ->> 'rail' AS rail,
       p.status,
       COALESCE(first.candidate -> 'amount' ->> '$bigint', first.candidate ->> 'amount')::bigint AS amount,
       COALESCE(first.candidate -> 'feeMax' ->> '$bigint', first.candidate ->> 'feeMax')::bigint AS fee_max,
       CASE WHEN p.status = 'succeeded' THEN 0::bigint END AS fee,
       switchyard_own_ledger_id(p.id)::numeric(39, 0) AS reserve_transfer_id,
       true AS own_transfer_id,
       CASE WHEN p.status = 'succeeded' THEN '{"rail": "internal"}'::jsonb END AS evidence,
       p.failure_code,
       p.failure_message,
       p.created_at,
       p.updated_at,
       NULL::bigint AS network_fee,
       NULL::text AS network_fee_asset,
       0::bigint AS amount_reversed
FROM payments p
LEFT JOIN route_decisions d ON d.digest = p.decision_digest
CROSS JOIN LATERAL (SELECT COALESCE(p.decision::jsonb, d.decision::jsonb) -> 'candidates' -> 0 AS candidate) AS first
WHERE p.ledger_link IS NULL
  AND p.status <> 'processing'
  AND first.candidate IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.payment_id = p.id);

-- A reversal's legs are computed from what the attempt had given back before it (a payout across assets gives the
-- payer its share of the whole, rounded down once); when another reversal of the same payout was recorded since, the
-- statement calls this, so that the legs are rolled back with it and computed again.
CREATE FUNCTION payout_reversal_moved() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'payments: another reversal of the payout was recorded first' USING ERRCODE = 'SYR05';
END
$$;
