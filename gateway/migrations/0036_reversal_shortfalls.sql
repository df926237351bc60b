-- What a reversal of an invoice's money could not take from an account (the invoice's, or a payee's of its split)
-- because the account held less than its leg: the rail took it all the same (Stripe takes a dispute's whole amount),
-- so until it is collected the rail's clearing account says the rail holds this much more than it does. One row per
-- reversal and account, written with the reversal's record (settlement/invoices.ts reversalRecordStatement).
-- `collected` grows as money given back to the account later (a refund of the invoice that failed, another reversal
-- given back) settles it before the rest reaches the account; `closed_at` is set when the reversal itself is given
-- back (a dispute won: the rail gives back its whole amount, so nothing of it is owed any more).
CREATE TABLE reversal_shortfalls (
  invoice_id text NOT NULL,
  reversal_key text NOT NULL,
  account_id text NOT NULL REFERENCES accounts (id),
  amount bigint NOT NULL CHECK (amount > 0),
  collected bigint NOT NULL DEFAULT 0 CHECK (collected >= 0 AND collected <= amount),
  recorded_at timestamptz NOT NULL DEFAULT now(),
  closed_at timestamptz,
  PRIMARY KEY (invoice_id, reversal_key, account_id),
  FOREIGN KEY (invoice_id, reversal_key) REFERENCES invoice_reversals (invoice_id, key)
);
CREATE INDEX reversal_shortfalls_outstanding ON reversal_shortfalls (invoice_id)
  WHERE closed_at IS NULL AND collected < amount;

-- Each collection of a shortfall: from what `source` gave back to the account (a refund's id; a reversal's key for the
-- look of its give-back that gives back its legs, key/<transfer id> of the first collection a later look gives back),
-- the ledger transfer that took it (the account into the rail's clearing account). Written in the transaction of that
-- transfer and of the give-back it comes from; given back with its reversal.
CREATE TABLE reversal_shortfall_collections (
  invoice_id text NOT NULL,
  reversal_key text NOT NULL,
  account_id text NOT NULL,
  source text NOT NULL,
  amount bigint NOT NULL CHECK (amount > 0),
  transfer_id numeric(39, 0) NOT NULL UNIQUE,
  collected_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (invoice_id, reversal_key, account_id, source),
  FOREIGN KEY (invoice_id, reversal_key, account_id) REFERENCES reversal_shortfalls (invoice_id, reversal_key, account_id)
);

-- A collection is computed from the shortfalls it read; when they moved before it was written (another collection, a
-- reversal recorded or given back), its statement calls this, so that the give-back and the collection are rolled
-- back together and computed again.
CREATE FUNCTION shortfall_collection_moved() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'invoices: the shortfalls moved under their collection' USING ERRCODE = 'SYR04';
END
$$;
