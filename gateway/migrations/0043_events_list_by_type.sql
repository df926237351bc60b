-- The events list without a type is merged from each type's own page (gateway/http/lists.ts mergedOver), read
-- through outbox_tenant_type_list: the index of (tenant_id, created_at, public_id) beside it is not needed. Every
-- event written inserted into both; with many tenants each insert lands inside the index, not at its right edge
-- (bench http, internal-postgres-many at 224 clients: PostgreSQL's CPU 68 against 71-74 µs a payment, WAL 2,437
-- against 2,602-2,712 bytes).
DROP INDEX outbox_tenant_list;
