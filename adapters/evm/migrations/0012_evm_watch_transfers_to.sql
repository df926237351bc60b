-- The transfers a deposit address received, looked up by the address (authorizations.ts paidToAddressQuery, before
-- an authorization for the invoice is submitted: reached by the anonymous /pay route). Without it the look read
-- every event ever stored for the token, one request at a time.
-- Bytewise, as every text the gateway keys on (db/bytewise.ts: an expression's collation is the database's default
-- otherwise, which no column conversion reaches); the look names the same collation.
CREATE INDEX evm_watch_events_transfer_to ON evm_watch_events (chain_id, contract, (lower(args->>'to') COLLATE "C"))
  WHERE event_name = 'Transfer';
