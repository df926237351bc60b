-- migrate: outside a transaction
-- The L402 tokens' prune (gateway/l402/tokens.ts) reads the expired tokens in batches, each from where the last one
-- stopped, in (valid_until, key_id) order: the tokens of unpaid challenges waiting for their rail's point are the
-- oldest, and a batch that started from the oldest again read every one of them. key_id orders tokens of one
-- valid_until, so that a batch never stops inside them to read them again.
-- Built concurrently (gateway/db outsideTransaction) under another name, then put in the old one's place: every
-- challenge writes a row here. Run again from its start after a failure part-way, it builds the index again.
DROP INDEX CONCURRENTLY IF EXISTS l402_tokens_valid_until_key;
CREATE INDEX CONCURRENTLY l402_tokens_valid_until_key ON l402_tokens (valid_until, key_id);
DROP INDEX CONCURRENTLY IF EXISTS l402_tokens_valid_until;
ALTER INDEX l402_tokens_valid_until_key RENAME TO l402_tokens_valid_until;
