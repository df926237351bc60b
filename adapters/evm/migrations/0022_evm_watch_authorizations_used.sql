-- migrate: outside a transaction
-- The AuthorizationUsed events of a payer and nonce, looked up by both (authorizations.ts bindTransfer, before an
-- authorization's binding is taken over from an invoice refused before sending: in the binding's transaction, holding
-- that invoice's row FOR UPDATE, at each retry). Without it the look read every event ever stored for the token.
-- Bytewise, as 0012's (db/bytewise.ts); the look names the same collation.
-- Built concurrently (gateway/db outsideTransaction): the watcher writes a row here for each event it reads, and a
-- plain CREATE INDEX would hold its writes, so the deposits of the version still serving, until it is built.
DROP INDEX CONCURRENTLY IF EXISTS evm_watch_events_authorization_used;
CREATE INDEX CONCURRENTLY evm_watch_events_authorization_used ON evm_watch_events
  (chain_id, contract, (lower(args->>'nonce') COLLATE "C"), (lower(args->>'authorizer') COLLATE "C"))
  WHERE event_name = 'AuthorizationUsed';
