-- migrate: outside a transaction
-- A claim pass reads only what it may claim. Before, it numbered every due delivery of every tenant (a window over
-- all of them) and counted the claimed ones by reading every pending row: with a backlog of millions, say one
-- tenant's endpoint down, every pass read them all. Now it visits each endpoint with pending deliveries once (a loose
-- index scan), takes at most a tenant's in-flight bound of each enabled one's first due, and counts the claimed from
-- an index of claimed rows alone (an attempt clears locked_until, so these are the ones in flight or crashed in
-- flight). webhook_deliveries_due stays: a pass asks it first whether anything is due at all, so that endpoints whose
-- deliveries all wait out their backoff cost an idle pass nothing.
-- Built concurrently (gateway/db outsideTransaction): webhook_deliveries takes a row with each payment's outbox write,
-- and a plain CREATE INDEX would hold those writes, so the payments of the version still serving, until it is built.
DROP INDEX CONCURRENTLY IF EXISTS webhook_deliveries_endpoint_due;
CREATE INDEX CONCURRENTLY webhook_deliveries_endpoint_due ON webhook_deliveries (endpoint_id, next_attempt_at, id)
  WHERE status = 'pending';
DROP INDEX CONCURRENTLY IF EXISTS webhook_deliveries_claimed;
CREATE INDEX CONCURRENTLY webhook_deliveries_claimed ON webhook_deliveries (tenant_id)
  WHERE status = 'pending' AND locked_until IS NOT NULL;
