-- When a recovery pass last looked at a payment stranded between two attempts and left it so (its rail failing each
-- time, or its accrual waiting for a process with netting): the next pass takes those it has not looked at first, as
-- it does open attempts (migration 0049). Listed by age alone, a batch of the oldest such payments, any tenant's,
-- filled every pass, and none behind them was recovered.
ALTER TABLE payments ADD COLUMN recovery_tried_at timestamptz;
