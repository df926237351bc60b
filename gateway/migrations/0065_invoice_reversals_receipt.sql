-- The one receipt a reversal of an invoice takes back (its invoice_receipts key), when it names one: a deposit a reorg
-- removed, or, removed again after it was mined again, the receipt the reversal it then takes back took
-- (settlement/invoices.ts reversalRecordStatement). Null: a reversal of the invoice's money (a dispute, a refund made at
-- the provider). A standing reversal of a receipt is counted, not a dispute: it lowers what is refundable and what
-- the payer of that receipt may get back (payments/refunds.ts holdAndClaim), and a receipt pays the invoice again
-- once what it still holds reaches its amount. Rows recorded before this keep null, taken as they were (nothing
-- refundable until they are withdrawn).
ALTER TABLE invoice_reversals ADD COLUMN receipt text;
