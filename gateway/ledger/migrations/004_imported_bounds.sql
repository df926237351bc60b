-- An imported event (TigerBeetle's `imported`) is checked against the latest transfer's timestamp. Transfers have no
-- index by timestamp (a third index would cost every batch), so it is kept on the clock row, which every batch updates
-- anyway. Seeded from each account's latest transfer (one probe of ledger_transfers_debit per account, where a scan of
-- every transfer would hold the clock, and so every ledger write, for as long as it takes).
ALTER TABLE ledger_clock ADD COLUMN transfer_timestamp_max bigint NOT NULL DEFAULT 0;
UPDATE ledger_clock SET transfer_timestamp_max = coalesce((
  SELECT max(t.timestamp) FROM ledger_accounts a
    CROSS JOIN LATERAL (SELECT timestamp FROM ledger_transfers
                         WHERE debit_account_id = a.id ORDER BY timestamp DESC LIMIT 1) t), 0);
