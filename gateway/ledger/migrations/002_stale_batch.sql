-- A batch is written by one statement (transfers, clock, balances, pending set). When the clock no longer carries
-- the token the writer expects, the statement calls this to abort itself, so nothing of it stays.
CREATE FUNCTION ledger_stale_batch() RETURNS integer LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'ledger: another writer committed in between' USING ERRCODE = 'SYL01';
END
$$;
