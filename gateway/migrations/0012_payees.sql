-- Whom a tenant pays, and the ways each can be paid (an EVM address, a Lightning node or address, a Stripe
-- connected account, one of the tenant's accounts). The methods and metadata are written and read back whole,
-- never searched inside: json, as a payment's documents. Ids sort by creation time (newest first is id DESC),
-- and created_at is the time in the id; the "C" collation keeps that order whatever the database's locale.
CREATE TABLE payees (
  id text COLLATE "C" PRIMARY KEY,
  tenant_id text NOT NULL REFERENCES tenants (id),
  name text NOT NULL,
  methods json NOT NULL,
  metadata json NOT NULL,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL
);
CREATE INDEX payees_tenant ON payees (tenant_id, id);
