-- A reversal of a receipt (a deposit a reorg removed) leaves a paid invoice paid when what it still holds covers its
-- amount, and reads that from the row as its statement's snapshot saw it (settlement/invoices.ts
-- reversalRecordStatement). When another writer changed the row after those reads (another reversal of one of its
-- receipts, a receipt), the statement calls this, so that its legs and record are rolled back and the reversal is
-- computed again from reads that see the row as it stands: two reorgs at once each left an over-paid invoice paid on
-- the other's receipt, which neither counted.
CREATE FUNCTION invoice_moved() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'invoices: the invoice moved under the reversal''s reads' USING ERRCODE = 'SYR07';
END
$$;
