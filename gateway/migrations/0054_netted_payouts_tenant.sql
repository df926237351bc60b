-- Netting reads the payouts waiting for a batch a fair share per tenant (payments/batch-payouts.ts accruedWindow), so
-- that one tenant's backlog of accrued payouts (dust to many addresses, say) no longer fills the whole window and keeps
-- every other tenant's payouts from being read. A payout keeps its payment's tenant from now on. Those accrued before
-- have none and are not given one here (an UPDATE of every waiting row would hold the table, every accrual with it,
-- while it ran): they are read as one share of their own, oldest first, as all of them were before.
-- COLLATE "C" from the start: on a database whose default collation is another, db/bytewise.ts would otherwise change
-- it after the migrations, rebuilding 0055's index in a transaction that holds the table.
ALTER TABLE netted_payouts ADD COLUMN tenant_id text COLLATE "C";
