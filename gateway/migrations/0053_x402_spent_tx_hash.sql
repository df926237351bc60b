-- The transaction that spent an authorization, when it was not the row's own (tx_hash): a copy of the payer's signed
-- transfer that someone submitted first, which paid the hot wallet while ours reverted (x402/spends.ts). A retried
-- settle and a request owed at a paywall answer with it, the transaction that moved the money; tx_hash stays ours,
-- whose gas the gateway paid and booked.
ALTER TABLE x402_authorizations ADD COLUMN spent_tx_hash text;
