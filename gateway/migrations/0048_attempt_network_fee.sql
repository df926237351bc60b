-- What an attempt paid in another asset than its rail's (an EVM payout's gas, in ETH's minor unit), beside its fee in
-- the rail's asset: the API showed such an attempt's fee as 0 while its gas was booked and charged to the payer.
ALTER TABLE attempts ADD COLUMN network_fee bigint, ADD COLUMN network_fee_asset text,
  ADD CONSTRAINT attempts_network_fee_whole CHECK ((network_fee IS NULL) = (network_fee_asset IS NULL));

-- The view of every attempt (migration 0042) says it too: the table's, and none for an internal payment's made one.
CREATE OR REPLACE VIEW payment_attempts AS
SELECT id, payment_id, seq, rail, status, amount, fee_max, fee, reserve_transfer_id, own_transfer_id, evidence,
       failure_code, failure_message, created_at, updated_at, network_fee, network_fee_asset
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
       NULL::text AS network_fee_asset
FROM payments p
LEFT JOIN route_decisions d ON d.digest = p.decision_digest
CROSS JOIN LATERAL (SELECT COALESCE(p.decision::jsonb, d.decision::jsonb) -> 'candidates' -> 0 AS candidate) AS first
WHERE p.ledger_link IS NULL
  AND p.status <> 'processing'
  AND first.candidate IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.payment_id = p.id);
