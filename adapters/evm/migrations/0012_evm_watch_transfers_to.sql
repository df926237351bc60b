-- The transfers a deposit address received, looked up by the address (authorizations.ts paidToAddressQuery, before
-- an authorization for the invoice is submitted: reached by the anonymous /pay route). Without it the look read
-- every event ever stored for the token, one request at a time.
CREATE INDEX evm_watch_events_transfer_to ON evm_watch_events (chain_id, contract, lower(args->>'to'))
  WHERE event_name = 'Transfer';
