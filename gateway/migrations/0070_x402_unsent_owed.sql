-- An x402 payment whose settlement the EVM rail refused before sending it (the payer short of funds, the node out of
-- reach), at a paywall: its claim is given back (x402_authorizations keeps no row of it), but its invoice stays bound
-- to the payer's nonce (adapters/evm authorizations.ts bindTransfer), and the deposit watcher credits the invoice if
-- whoever holds the authorization mines it. The paywall the payer was answered 402 at: the same payment sent again
-- there once that invoice is paid from the authorization's own transfer is served once (x402/scheme.ts
-- servedAsUnsentOwed), taken by clearing `owed` (one caller of many at once), as an owed request's owed_paywall is
-- (0046); and only while its invoice is the one the rail binds to the payer and nonce (evm_deposits). One row per
-- invoice: the same payment refused again books another invoice, which takes the binding over, and another row (the
-- first is served no more). `marked_block`: the chain's latest block as the row was written, null when the node could
-- not say (the refusal's cause may be the node out of reach): the search for the authorization's transfer, mined and
-- not credited yet, starts there (less the chain's confirmations), not at a fixed lookback from the latest.
CREATE TABLE x402_unsent_owed (
  invoice_id text PRIMARY KEY,
  chain_id bigint NOT NULL,
  token text NOT NULL,
  payer text NOT NULL,
  nonce text NOT NULL,
  paywall_id text NOT NULL,
  tenant_id text NOT NULL REFERENCES tenants (id),
  amount numeric(78, 0) NOT NULL,
  marked_block bigint,
  owed boolean NOT NULL DEFAULT true,
  created_at timestamptz NOT NULL DEFAULT now()
);
-- The same payment sent again looks its rows up by its authorization.
CREATE INDEX x402_unsent_owed_authorization ON x402_unsent_owed (chain_id, token, payer, nonce);
