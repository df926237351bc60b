-- What of an invoice's refunds not failed counts against what it holds toward its amount (settlement/invoices.ts
-- heldSql): of a refund claimed while the invoice was paid, only what it took of the excess over the amount it held
-- then (what was over-paid); what it took of the amount is a price the merchant agreed down, and a payer who paid
-- the rest again after a reorg took the receipt has paid it. Of a refund claimed while the invoice was not paid, all
-- of it (the payer got it back before anything was settled). Each refund keeps its own part (given back when it
-- fails: payments/refunds-store.ts failedStatement), and the invoice's `refundable` row their sum.
ALTER TABLE refunds ADD COLUMN held_refunded bigint NOT NULL DEFAULT 0 CHECK (held_refunded >= 0 AND held_refunded <= amount);
ALTER TABLE refundable ADD COLUMN held_refunded bigint NOT NULL DEFAULT 0
  CHECK (held_refunded >= 0 AND held_refunded <= refunded);

-- Refunds claimed before this: what the invoice held when each was claimed is not kept, so each is counted from
-- what is known now, never less than it took of the excess then. Claimed before the invoice was first paid (or of
-- one never paid): all of it. Otherwise, in the order they were claimed, each takes of the invoice's excess (what it
-- received over its amount: received_amount never shrinks, so no excess then was larger than this) what the
-- refunds before it left. A discount the invoice's later receipts over-paid is counted as excess: as before this,
-- it lowers what the invoice holds, which keeps it from being paid short, never the other way.
UPDATE refunds f SET held_refunded = counted.part
FROM (
  SELECT r.id,
    CASE WHEN i.paid_at IS NULL OR r.created_at < i.paid_at THEN r.amount
         ELSE least(r.amount, greatest(0, greatest(0, coalesce(i.received_amount, 0) - i.amount)
           - (sum(r.amount) OVER (PARTITION BY r.invoice_id ORDER BY r.created_at, r.id) - r.amount)))
    END AS part
  FROM refunds r JOIN invoices i ON i.id = r.invoice_id
  WHERE r.status <> 'failed') AS counted
WHERE f.id = counted.id;

UPDATE refundable t SET held_refunded = counted.total
FROM (SELECT invoice_id, sum(held_refunded) AS total FROM refunds WHERE status <> 'failed' AND invoice_id IS NOT NULL
      GROUP BY invoice_id) AS counted
WHERE t.target_id = counted.invoice_id;
