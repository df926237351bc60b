-- L402 tokens (gateway/l402): one row per macaroon minted in a 402 challenge. The row is keyed by
-- sha256(identifier) as Aperture keys its root keys, so any gateway process on this database verifies any token;
-- deleting the row revokes the token. The invoice is the gateway's own (settlement/invoices.ts, Lightning rail):
-- a token serves only once that invoice is paid, i.e. booked in the ledger with its evidence.
-- Requests are counted here, with one conditional UPDATE per served request, so that two processes never serve
-- more than `requests_max`; a request whose handler failed gives its count back.
CREATE TABLE l402_tokens (
  key_id text PRIMARY KEY CHECK (key_id ~ '^[0-9a-f]{64}$'),
  tenant_id text NOT NULL REFERENCES tenants (id),
  -- The 32-byte root key the macaroon's HMAC chain starts from, hex.
  root_key text NOT NULL CHECK (root_key ~ '^[0-9a-f]{64}$'),
  payment_hash text NOT NULL CHECK (payment_hash ~ '^[0-9a-f]{64}$'),
  invoice_id text NOT NULL REFERENCES invoices (id),
  paywall_id text NOT NULL,
  service text NOT NULL,
  -- Null: any number of requests until valid_until (Aperture's tokens); every request is still counted.
  requests_max integer CHECK (requests_max > 0),
  requests_used integer NOT NULL DEFAULT 0 CHECK (requests_used >= 0 AND (requests_max IS NULL OR requests_used <= requests_max)),
  valid_until timestamptz NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
-- Expired tokens, for pruning.
CREATE INDEX l402_tokens_valid_until ON l402_tokens (valid_until);
