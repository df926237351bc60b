-- migrate: outside a transaction
-- Accounts by timestamp: an imported event's bounds (the latest account, the accounts at an imported transfer's
-- timestamps) and queryAccounts walk it. Built concurrently (gateway/db outsideTransaction): a batch updates the
-- balances of the accounts it moves, and a plain CREATE INDEX would hold every ledger write until it is built.
DROP INDEX CONCURRENTLY IF EXISTS ledger_accounts_timestamp;
CREATE INDEX CONCURRENTLY ledger_accounts_timestamp ON ledger_accounts (timestamp);
