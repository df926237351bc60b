-- A refund says what it paid in another asset than its rail's too: an on-chain refund's gas (ETH), which the platform
-- pays, as the ledger books it (the refund's fee column is in its rail's asset).
ALTER TABLE refunds ADD COLUMN network_fee bigint, ADD COLUMN network_fee_asset text,
  ADD CONSTRAINT refunds_network_fee_whole CHECK ((network_fee IS NULL) = (network_fee_asset IS NULL));
