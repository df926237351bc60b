-- Lists (gateway/http/lists.ts) read a tenant's objects newest first by (created_at, id), a keyset: one index
-- in that order per collection, read backwards. payments' and invoices' indexes sorted id the other way round
-- from created_at, which that order cannot use past created_at: replaced.
DROP INDEX payments_tenant_created;
CREATE INDEX payments_tenant_list ON payments (tenant_id, created_at, id);
DROP INDEX invoices_tenant;
CREATE INDEX invoices_tenant_list ON invoices (tenant_id, created_at, id);
CREATE INDEX quotes_tenant_list ON quotes (tenant_id, created_at, id);
CREATE INDEX webhook_endpoints_tenant_list ON webhook_endpoints (tenant_id, created_at, id);
CREATE INDEX payees_tenant_list ON payees (tenant_id, created_at, id);
CREATE INDEX accounts_tenant_list ON accounts (tenant_id, created_at, id);

-- An account's metadata, as a payee's: written and read back whole, never searched inside.
ALTER TABLE accounts ADD COLUMN metadata json NOT NULL DEFAULT '{}';

-- The ledger id gateway/ids derivedLedgerId(id, purpose) gives: the first 16 bytes of
-- SHA-256(purpose, NUL, id) as a uuid (0 would be 1; SHA-256 does not give it). Payments and invoices tag their
-- transfers' user_data_128 with it, so an account's transactions find what they belong to through these indexes.
CREATE FUNCTION switchyard_derived_ledger_id(purpose text, id text) RETURNS uuid
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
  SELECT encode(substring(sha256(convert_to(purpose, 'UTF8') || '\x00'::bytea || convert_to(id, 'UTF8')) FROM 1 FOR 16), 'hex')::uuid
$$;
CREATE INDEX payments_ledger_link ON payments ((switchyard_derived_ledger_id('payment', id)));
CREATE INDEX invoices_ledger_link ON invoices ((switchyard_derived_ledger_id('invoice', id)));
