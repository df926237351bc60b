-- Netting: payouts too small to be worth their own transaction accrue, and leave in batches.
ALTER TABLE accounts DROP CONSTRAINT accounts_kind_check;
ALTER TABLE accounts ADD CONSTRAINT accounts_kind_check CHECK (kind IN ('customer', 'merchant', 'clearing', 'fee', 'payable'));
CREATE UNIQUE INDEX accounts_payable ON accounts (rail, asset) WHERE kind = 'payable';

CREATE TABLE netting_batches (
  id text PRIMARY KEY,
  rail text NOT NULL,
  ref text NOT NULL UNIQUE,
  payees jsonb NOT NULL,
  total bigint NOT NULL,
  status text NOT NULL CHECK (status IN ('sending', 'succeeded', 'failed')),
  evidence jsonb,
  failure_message text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE netted_payouts (
  payment_id text PRIMARY KEY REFERENCES payments (id),
  rail text NOT NULL,
  payee text NOT NULL,
  amount bigint NOT NULL CHECK (amount > 0),
  accrue_transfer_id numeric(39, 0) NOT NULL UNIQUE,
  batch_id text REFERENCES netting_batches (id),
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX netted_payouts_accrued ON netted_payouts (rail, created_at) WHERE batch_id IS NULL;
