-- Paywalls (issue #23): a tenant's priced resources. `resource` is a path, exact or ending in `*` (a prefix), one
-- paywall per resource and tenant. The price is the amount in minor units of `price_asset`; offers (scheme and
-- rail), the accounts credited per asset and the split are written and read back whole: json.
CREATE TABLE paywalls (
  id text COLLATE "C" PRIMARY KEY,
  tenant_id text NOT NULL REFERENCES tenants (id),
  resource text COLLATE "C" NOT NULL,
  description text NOT NULL,
  mime_type text NOT NULL,
  price_asset text NOT NULL,
  price_amount bigint NOT NULL CHECK (price_amount > 0),
  offers json NOT NULL,
  accounts json NOT NULL,
  split json NOT NULL,
  token_lifetime_seconds integer NOT NULL,
  token_requests_max integer,
  metadata json NOT NULL,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL
);
CREATE UNIQUE INDEX paywalls_tenant_resource ON paywalls (tenant_id, resource);
CREATE INDEX paywalls_tenant ON paywalls (tenant_id, id);

-- The price of a paywall in a scheme's asset for one window of time, converted at the rate of the first challenge
-- in that window: the paid retry (in this process or another) is checked against the same amount. Old windows
-- are deleted as new ones are written.
CREATE TABLE paywall_rate_locks (
  paywall_id text COLLATE "C" NOT NULL REFERENCES paywalls (id) ON DELETE CASCADE,
  window_start_ms bigint NOT NULL,
  asset text NOT NULL,
  amount bigint NOT NULL CHECK (amount > 0),
  PRIMARY KEY (paywall_id, window_start_ms, asset)
);
