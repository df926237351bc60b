-- Money in: what a tenant asked to receive into one of its accounts, on which rail, and what came of it.
CREATE TABLE invoices (
  id text PRIMARY KEY,
  tenant_id text NOT NULL REFERENCES tenants (id),
  account_id text NOT NULL REFERENCES accounts (id),
  asset text NOT NULL,
  amount bigint NOT NULL CHECK (amount > 0),
  rail text NOT NULL,
  status text NOT NULL CHECK (status IN ('open', 'paid', 'reversed')),
  description text NOT NULL,
  rail_reference text,
  instructions jsonb NOT NULL DEFAULT '{}',
  received_amount bigint,
  evidence jsonb,
  expires_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  paid_at timestamptz
);
CREATE INDEX invoices_tenant ON invoices (tenant_id, created_at DESC, id);
