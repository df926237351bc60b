-- A quote freezes a routing decision (rates, amounts per rail, fee caps) until it expires.
CREATE TABLE quotes (
  id text PRIMARY KEY,
  tenant_id text NOT NULL REFERENCES tenants (id),
  quote jsonb NOT NULL,
  expires_at timestamptz NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX quotes_tenant ON quotes (tenant_id, id);
ALTER TABLE payments ADD COLUMN quote_id text REFERENCES quotes (id);
