-- migrate: outside a transaction
-- The quotes' prune (gateway/payments/quote-prune.ts) finds the long-expired ones by this. Built concurrently
-- (gateway/db outsideTransaction): every quote asked for writes a row here.
DROP INDEX CONCURRENTLY IF EXISTS quotes_expires;
CREATE INDEX CONCURRENTLY quotes_expires ON quotes (expires_at);
