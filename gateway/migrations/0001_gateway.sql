-- The gateway's own state: tenants and their keys, named accounts over ledger accounts, payments and
-- their attempts, idempotency records and the outbox. Amounts are bigint minor units; ledger ids numeric(39).

CREATE TABLE tenants (
  id text PRIMARY KEY,
  name text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

-- Only a SHA-256 of each secret key is kept; the key itself is shown once, when it is made.
CREATE TABLE api_keys (
  id text PRIMARY KEY,
  tenant_id text NOT NULL REFERENCES tenants (id),
  secret_sha256 bytea NOT NULL UNIQUE,
  hint text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  revoked_at timestamptz
);

-- A named account of a tenant (customer or merchant balance), or of the system (a rail's clearing account).
CREATE TABLE accounts (
  id text PRIMARY KEY,
  tenant_id text REFERENCES tenants (id),
  kind text NOT NULL CHECK (kind IN ('customer', 'merchant', 'clearing', 'fee')),
  asset text NOT NULL,
  ledger_account_id numeric(39, 0) NOT NULL UNIQUE,
  name text NOT NULL,
  rail text,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX accounts_tenant ON accounts (tenant_id, id);
CREATE UNIQUE INDEX accounts_clearing ON accounts (rail, asset) WHERE kind = 'clearing';

CREATE TABLE payments (
  id text PRIMARY KEY,
  tenant_id text NOT NULL REFERENCES tenants (id),
  status text NOT NULL CHECK (status IN ('processing', 'succeeded', 'failed')),
  asset text NOT NULL,
  amount bigint NOT NULL CHECK (amount > 0),
  source_account_id text NOT NULL REFERENCES accounts (id),
  destination jsonb NOT NULL,
  policy jsonb NOT NULL,
  decision jsonb,
  rail text,
  failure_code text,
  failure_message text,
  metadata jsonb NOT NULL DEFAULT '{}',
  -- The caller's Idempotency-Key: a retried request finds this payment instead of making a second one.
  idempotency_key text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX payments_idempotency ON payments (tenant_id, idempotency_key);
CREATE INDEX payments_tenant_created ON payments (tenant_id, created_at DESC, id);
CREATE INDEX payments_processing ON payments (status) WHERE status = 'processing';

CREATE TABLE attempts (
  id text PRIMARY KEY,
  payment_id text NOT NULL REFERENCES payments (id),
  seq integer NOT NULL,
  rail text NOT NULL,
  status text NOT NULL CHECK (status IN ('reserving', 'executing', 'in_flight', 'succeeded', 'failed')),
  amount bigint NOT NULL,
  fee_max bigint NOT NULL,
  fee bigint,
  reserve_transfer_id numeric(39, 0) NOT NULL UNIQUE,
  evidence jsonb,
  failure_code text,
  failure_message text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (payment_id, seq)
);
CREATE INDEX attempts_open ON attempts (status) WHERE status IN ('reserving', 'executing', 'in_flight');

CREATE TABLE idempotency_keys (
  tenant_id text NOT NULL REFERENCES tenants (id),
  key text NOT NULL,
  request_sha256 bytea NOT NULL,
  response_status integer,
  response_body jsonb,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, key)
);

-- Events for the merchant, written in the same transaction as the state change they announce.
CREATE TABLE outbox (
  id bigserial PRIMARY KEY,
  tenant_id text NOT NULL REFERENCES tenants (id),
  type text NOT NULL,
  payload jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  delivered_at timestamptz,
  attempts integer NOT NULL DEFAULT 0
);
CREATE INDEX outbox_undelivered ON outbox (id) WHERE delivered_at IS NULL;
