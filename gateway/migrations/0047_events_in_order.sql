-- migrate: outside a transaction
-- Events of one created_at (written in one transaction: invoice.payment_received then invoice.paid) are listed in
-- the order they were written, by the outbox's serial id, not by their random public ids; the index the list reads
-- orders them so (http/lists.ts `sequence`).
-- Built concurrently (gateway/db outsideTransaction) under another name, then put in the old one's place: every
-- payment writes an outbox row, and a plain CREATE INDEX would hold those writes until it was built. Run again from
-- its start after a failure part-way, it builds the index again.
DROP INDEX CONCURRENTLY IF EXISTS outbox_tenant_type_list_by_id;
CREATE INDEX CONCURRENTLY outbox_tenant_type_list_by_id ON outbox (tenant_id, type, created_at, id);
DROP INDEX CONCURRENTLY IF EXISTS outbox_tenant_type_list;
ALTER INDEX outbox_tenant_type_list_by_id RENAME TO outbox_tenant_type_list;
