-- Events of one created_at (written in one transaction: invoice.payment_received then invoice.paid) are listed in
-- the order they were written, by the outbox's serial id, not by their random public ids; the index the list reads
-- orders them so (http/lists.ts `sequence`).
DROP INDEX outbox_tenant_type_list;
CREATE INDEX outbox_tenant_type_list ON outbox (tenant_id, type, created_at, id);
