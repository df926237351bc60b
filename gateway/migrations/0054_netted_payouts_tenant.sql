-- Netting reads the payouts waiting for a batch a fair share per tenant (payments/batch-payouts.ts accruedWindow), so
-- that one tenant's backlog of accrued payouts (dust to many addresses, say) no longer fills the whole window and keeps
-- every other tenant's payouts from being read. The payout keeps its payment's tenant; those waiting now get theirs
-- (a payout already batched is never read by a flush again). A payout accrued by a process of the version before has
-- none: it is read in a share of its own.
ALTER TABLE netted_payouts ADD COLUMN tenant_id text;
UPDATE netted_payouts n SET tenant_id = p.tenant_id FROM payments p WHERE p.id = n.payment_id AND n.batch_id IS NULL;
