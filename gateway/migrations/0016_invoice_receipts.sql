-- Money in that comes as several receipts (a second transfer to a USDC deposit address, a late one, a top-up of an
-- under-payment): one row per receipt, keyed by the rail's name for it, so that a redelivered receipt is counted
-- once. The invoice keeps the running total (received_amount) and who paid first (payer: where a refund goes).
ALTER TABLE invoices ADD COLUMN payer text;

CREATE TABLE invoice_receipts (
  invoice_id text NOT NULL REFERENCES invoices (id),
  key text NOT NULL,
  amount bigint NOT NULL CHECK (amount > 0),
  payer text,
  -- arrived after the invoice's expiry (credited all the same)
  late boolean NOT NULL,
  evidence jsonb NOT NULL,
  received_at timestamptz NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (invoice_id, key)
);
