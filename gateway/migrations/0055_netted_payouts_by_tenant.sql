-- migrate: outside a transaction
-- The waiting payouts by tenant (0054): a flush visits each tenant with payouts waiting once (a loose index scan) and
-- reads its oldest. Built concurrently (gateway/db outsideTransaction): every netted payout accrues a row here.
DROP INDEX CONCURRENTLY IF EXISTS netted_payouts_accrued_by_tenant;
CREATE INDEX CONCURRENTLY netted_payouts_accrued_by_tenant ON netted_payouts (rail, tenant_id, created_at)
  WHERE batch_id IS NULL;
