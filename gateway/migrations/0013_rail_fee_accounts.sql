-- Fees a rail really pays are booked: each rail gets a fee account per asset (what tenants were charged for fees,
-- less what the rail paid), and an EVM rail a clearing account in its chain's native token (the gas its wallet
-- holds), opened from the operator's capital on that rail.
ALTER TABLE accounts DROP CONSTRAINT accounts_kind_check;
ALTER TABLE accounts ADD CONSTRAINT accounts_kind_check CHECK (kind IN ('customer', 'merchant', 'clearing', 'fee', 'payable', 'capital'));
CREATE UNIQUE INDEX accounts_rail_fee ON accounts (rail, asset) WHERE kind = 'fee' AND tenant_id IS NULL;
CREATE UNIQUE INDEX accounts_capital ON accounts (rail, asset) WHERE kind = 'capital';
