-- What of a refund is a discount (payments/refunds-store.ts heldSql): of a refund claimed while its invoice was paid,
-- what it gave back beyond the excess over the amount the invoice then held. That part is a price the merchant agreed
-- down, not money the payer still owes: a payer who pays the amount again after a reorg took the receipt has paid.
-- The rest of every refund not failed (all of one claimed while the invoice was not paid: the payer got it back before
-- anything was settled) counts against what the invoice holds. Each refund keeps its own (given back when it fails:
-- payments/refunds-store.ts failedStatement), and the invoice's `refundable` row their sum.
--
-- 0 is a refund counted whole, as before this: the code before it claims every refund so, and its failure lowers
-- `refunded` alone, which the reader makes up for (heldSql takes the least of the row's sum and the refunds' own), so
-- no writer of either version leaves an invoice paid short (but for a statement during which such a failure of a
-- discounted refund commits, while both versions run). Refunds claimed before this are not backfilled (what the
-- invoice held when each was claimed is not kept): counted whole, one that was a discount may leave an invoice whose
-- receipt a reorg takes unpaid by a receipt of its amount (its payer asked for the rest), never paid short. No CHECK:
-- the code before this, still running while this is deployed, writes neither column. A constant default writes no row.
ALTER TABLE refunds ADD COLUMN discounted bigint NOT NULL DEFAULT 0;
ALTER TABLE refundable ADD COLUMN discounted bigint NOT NULL DEFAULT 0;
