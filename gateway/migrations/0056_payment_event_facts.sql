-- A payment's event tells what happened, not only which payment: its `data.object` gains the payment's facts at its
-- end — status, asset, amount (minor units, as text), source account, and the rail that carried it or the code it
-- failed with (a refund's event carries its own facts the same way). The outbox keeps storing only the payment's id
-- (payments/store.ts paymentEventSql): the facts are joined here, at read, from the payment's row, which no longer
-- changes once the payment has ended — so the hot path writes no more bytes per payment, and events written before
-- this migration tell the same. A payment event whose payment is not found shows its stored payload alone.
CREATE OR REPLACE VIEW events AS
  SELECT o.public_id AS id, o.tenant_id, o.type,
    CASE WHEN p.id IS NULL THEN o.payload
         ELSE o.payload || jsonb_strip_nulls(jsonb_build_object('status', p.status, 'asset', p.asset,
           'amount', p.amount::text, 'source_account', p.source_account_id, 'rail', p.rail,
           'failure_code', p.failure_code))
    END AS payload,
    o.created_at, o.id AS seq
  FROM outbox o
  LEFT JOIN payments p ON o.type IN ('payment.succeeded', 'payment.failed')
    AND p.id = o.payload->>'payment_id' AND p.tenant_id = o.tenant_id;
