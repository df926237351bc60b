-- A paid x402 request the paywall answered 402 because its payment's settlement was still in flight (its transaction
-- not mined in time): the paywall it is owed at. The same payment, sent again to that paywall once the token says the
-- authorization is spent, is served once (x402/scheme.ts).
ALTER TABLE x402_authorizations ADD COLUMN owed_paywall text;

-- The rows x402 reconciliation looks at for a transaction the send journal holds (a settler that threw once it was
-- signed): left claimed, bound to an invoice, with none recorded.
CREATE INDEX x402_authorizations_claimed_unsent ON x402_authorizations (chain_id, token, updated_at)
  WHERE status = 'claimed' AND tx_hash IS NULL AND invoice_id IS NOT NULL;
