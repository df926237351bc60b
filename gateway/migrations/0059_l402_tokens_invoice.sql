-- migrate: outside a transaction
-- The L402 tokens' prune (gateway/l402/tokens.ts) deletes an unpaid challenge's invoice with its token: the foreign
-- key looks for each deleted invoice's tokens by this, else in the whole table. Built concurrently (gateway/db
-- outsideTransaction): every challenge writes a row here.
DROP INDEX CONCURRENTLY IF EXISTS l402_tokens_invoice;
CREATE INDEX CONCURRENTLY l402_tokens_invoice ON l402_tokens (invoice_id);
