-- A receipt's credit is written with its record on the invoice, in one transaction (settlement/invoices.ts
-- creditWithShares). When the ledger writes the credit now but the record finds nothing to count it on (the invoice
-- no longer open, or gone: deleted by the L402 prune after the process found it open in its memory), the record calls
-- this, so that the credit is rolled back with it: no money is credited that no invoice counts. Before, the credit
-- committed alone and the receipt was answered as a duplicate.
CREATE FUNCTION receipt_unrecorded() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'invoices: the receipt''s credit found no invoice to count it on' USING ERRCODE = 'SYR06';
END
$$;
