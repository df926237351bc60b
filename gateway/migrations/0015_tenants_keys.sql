-- Tenants the operator manages (active or suspended, with metadata), and API keys with a name, scopes, the mode of
-- money they move (test or live), the API version they are pinned to, and an expiry (the end of a rolled key's
-- overlap). The operator's one credential, stored hashed. The development demo key's secret, kept so the demo key
-- survives a restart with its database: only ever a test key's (checked here), never a live one's.

ALTER TABLE tenants ADD COLUMN status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended'));
ALTER TABLE tenants ADD COLUMN metadata jsonb NOT NULL DEFAULT '{}';
ALTER TABLE tenants ADD COLUMN suspended_at timestamptz;
CREATE INDEX tenants_created ON tenants (created_at DESC, id);

ALTER TABLE api_keys ADD COLUMN name text;
-- A key made before this migration: its mode is in its hint (the secret's first 8 characters, sk_test_ / sk_live_).
ALTER TABLE api_keys ADD COLUMN mode text;
UPDATE api_keys SET mode = CASE WHEN hint LIKE 'sk\_live\_%' THEN 'live' ELSE 'test' END;
ALTER TABLE api_keys ALTER COLUMN mode SET NOT NULL;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_mode CHECK (mode IN ('test', 'live'));
-- Keys made before this migration have every scope and the first dated version; new keys name theirs.
ALTER TABLE api_keys ADD COLUMN scopes text[] NOT NULL DEFAULT '{read,payments,invoices,accounts,webhooks,keys}';
ALTER TABLE api_keys ALTER COLUMN scopes DROP DEFAULT;
ALTER TABLE api_keys ADD COLUMN api_version text NOT NULL DEFAULT '2026-11-23';
ALTER TABLE api_keys ALTER COLUMN api_version DROP DEFAULT;
ALTER TABLE api_keys ADD COLUMN expires_at timestamptz;
-- The key a roll made in this one's place; set once.
ALTER TABLE api_keys ADD COLUMN rolled_to text REFERENCES api_keys (id);
ALTER TABLE api_keys ADD COLUMN demo_secret text;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_demo_test_only
  CHECK (demo_secret IS NULL OR (mode = 'test' AND demo_secret LIKE 'sk\_test\_%'));
CREATE UNIQUE INDEX api_keys_demo ON api_keys (tenant_id) WHERE demo_secret IS NOT NULL AND revoked_at IS NULL;
CREATE INDEX api_keys_tenant_created ON api_keys (tenant_id, created_at DESC, id);

-- Every earlier development start made a demo key and left it valid: they are revoked here, and the demo key is
-- made once from now on (its secret in demo_secret).
UPDATE api_keys SET revoked_at = now() WHERE tenant_id = 'ten_demo' AND revoked_at IS NULL;

-- The operator's credential: one row. `configured` when OPERATOR_KEY set it, `generated` when made at a first start.
CREATE TABLE operator_credentials (
  id text PRIMARY KEY CHECK (id = 'operator'),
  secret_sha256 bytea NOT NULL,
  hint text NOT NULL,
  source text NOT NULL CHECK (source IN ('generated', 'configured')),
  created_at timestamptz NOT NULL DEFAULT now()
);
