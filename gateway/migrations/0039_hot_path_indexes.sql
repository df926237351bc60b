-- Cheaper index entries for every payment (issue #19: on PostgreSQL, inserting index entries was two fifths of what
-- the server spent on an internal payment, measured with perf).
--
-- A payment's ledger link (the id its transfers carry in user_data_128, migration 0018) becomes a column the gateway
-- writes, as it computes that id anyway. Indexed as an expression, switchyard_derived_ledger_id ran for every row
-- inserted, and through the SQL function executor at that: convert_to is STABLE, so PostgreSQL does not inline the
-- function into the index expression (3.4 % of the server's time under the HTTP bench, by itself).
ALTER TABLE payments ADD COLUMN ledger_link uuid;
UPDATE payments SET ledger_link = switchyard_derived_ledger_id('payment', id);
ALTER TABLE payments ALTER COLUMN ledger_link SET NOT NULL;
DROP INDEX payments_ledger_link;
CREATE INDEX payments_ledger_link ON payments (ledger_link);

-- The prunes' indexes (events past their retention, idempotency records past their 24 hours) read rows by age, and
-- rows are written in the order of their age: a BRIN index (one summary per 128 pages) serves those reads and costs
-- nearly nothing to insert into, where a B-tree took an entry per row.
DROP INDEX outbox_created;
CREATE INDEX outbox_created ON outbox USING brin (created_at);
DROP INDEX idempotency_keys_created_at;
CREATE INDEX idempotency_keys_created_at ON idempotency_keys USING brin (created_at);
