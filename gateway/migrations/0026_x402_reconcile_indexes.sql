-- What the x402 reconciler (gateway/x402/reconcile.ts) reads each pass: the rows left 'submitted', oldest first per
-- chain and token (a partial index: settled and failed rows, nearly all of them, are not in it), and every row of
-- one transaction (a batch's payments, to conclude them together and share its gas). Without these each pass
-- scanned the whole table.
CREATE INDEX x402_authorizations_submitted ON x402_authorizations (chain_id, token, updated_at)
  WHERE status = 'submitted';
CREATE INDEX x402_authorizations_tx ON x402_authorizations (chain_id, token, tx_hash)
  WHERE tx_hash IS NOT NULL;
