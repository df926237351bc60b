-- A reversal's legs are written with its record (settlement/invoices.ts reversalRecordStatement). When the record
-- is there already as given back (a withdrawal came first), the statement calls this, so that the legs are rolled
-- back with it: nothing is taken that stands unrecorded, not even until the give-back.
CREATE FUNCTION reversal_withdrawn() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'invoices: the reversal was withdrawn before it was applied' USING ERRCODE = 'SYR03';
END
$$;
