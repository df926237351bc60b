-- An imported event (TigerBeetle's `imported`) is checked against the latest account's and the latest transfer's
-- timestamps. Transfers have no index by timestamp (a third index would cost every batch), so the latest transfer's
-- timestamp is kept on the clock row, which every batch updates anyway; accounts, written rarely, get the index.
ALTER TABLE ledger_clock ADD COLUMN transfer_timestamp_max bigint NOT NULL DEFAULT 0;
UPDATE ledger_clock SET transfer_timestamp_max = (SELECT coalesce(max(timestamp), 0) FROM ledger_transfers);
CREATE INDEX ledger_accounts_timestamp ON ledger_accounts (timestamp);
