-- Every attempt of every payment, in SQL: the attempts table and the attempts it has no row for.
--
-- An internal payment written in a batch (payments/internal.ts) has no attempts row: its one attempt says nothing
-- the final payment and its decision's first candidate do not, and the API makes it again from them when it reads the
-- payment (payments/store.ts internalAttemptOf). Someone reading the tables saw no attempt for those payments. The
-- view makes each such attempt as the API does, column for column, and passes the rows of the table through, so
-- `SELECT … FROM payment_attempts WHERE payment_id = $1` answers what GET /v1/payments/{id} lists; a made attempt's
-- times are its payment's (the batch wrote the payment final, at once). A query naming a payment reaches both halves
-- through their indexes (the attempts' (payment_id, seq), the payments' primary key).
-- A later migration that changes the type of a column the view names, or drops one, drops the view and makes it again
-- (PostgreSQL refuses the change while the view depends on it).

-- The 128 bits a public id's 26 characters spell (Crockford's base 32, as ids/index.ts ownLedgerId reads them): the id
-- of an internal payment's transfer, which is also its attempt's reservation.
CREATE FUNCTION switchyard_own_ledger_id(public_id text) RETURNS numeric
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
  SELECT sum((strpos('0123456789abcdefghjkmnpqrstvwxyz', substr(s.t, i, 1)) - 1)::numeric
             * power(32::numeric, length(s.t) - i))
  FROM (SELECT substr(public_id, strpos(public_id, '_') + 1) AS t) AS s,
       generate_series(1, length(s.t)) AS i
$$;

CREATE VIEW payment_attempts AS
SELECT id, payment_id, seq, rail, status, amount, fee_max, fee, reserve_transfer_id, own_transfer_id, evidence,
       failure_code, failure_message, created_at, updated_at
FROM attempts
UNION ALL
-- As getPayment makes it: a payment with its own ledger link (ledger_link null), ended, with a decision and no row.
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
       p.updated_at
FROM payments p
LEFT JOIN route_decisions d ON d.digest = p.decision_digest
CROSS JOIN LATERAL (SELECT COALESCE(p.decision::jsonb, d.decision::jsonb) -> 'candidates' -> 0 AS candidate) AS first
WHERE p.ledger_link IS NULL
  AND p.status <> 'processing'
  AND first.candidate IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.payment_id = p.id);
