-- x402 payments (EIP-3009 TransferWithAuthorization) the gateway took, one row per authorization: the primary key
-- (chain, token, payer, nonce) is the claim, taken by one INSERT before the payment is served or settled, so one
-- authorization pays at most once — also across gateway processes on one database. A claim whose payment was not
-- served, or whose submission was refused before anything was sent, is deleted (the authorization may come again);
-- one that reached the chain stays, with the invoice that books it and its transaction.
CREATE TABLE x402_authorizations (
  chain_id bigint NOT NULL,
  token text NOT NULL,
  payer text NOT NULL,
  nonce text NOT NULL,
  tenant_id text NOT NULL REFERENCES tenants (id),
  account_id text NOT NULL,
  amount numeric(78, 0) NOT NULL,
  status text NOT NULL DEFAULT 'claimed' CHECK (status IN ('claimed', 'submitted', 'settled', 'failed')),
  invoice_id text,
  tx_hash text,
  failure text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (chain_id, token, payer, nonce)
);
CREATE INDEX x402_authorizations_tenant ON x402_authorizations (tenant_id, created_at);
