-- Each time money that came in for an invoice was taken back (a dispute, a refund), and whether it was given back
-- since (a dispute won, a refund that failed). One row per reversal key, so every reversal has its own event and
-- a redelivered one none; an invoice is 'reversed' while one of its reversals stands.
CREATE TABLE invoice_reversals (
  invoice_id text NOT NULL REFERENCES invoices (id),
  key text NOT NULL,
  -- what the reversal took from the account (at most what it held); 0 for one withdrawn before it was applied
  amount bigint NOT NULL CHECK (amount >= 0),
  reversed_at timestamptz NOT NULL DEFAULT now(),
  reinstated_at timestamptz,
  PRIMARY KEY (invoice_id, key)
);
