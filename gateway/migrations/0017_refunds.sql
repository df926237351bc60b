-- Money given back: to whoever paid an invoice (on the rail it came in by), or from the receiving account of an
-- internal payment to its payer. Exactly one of invoice_id and payment_id. The refund's ledger hold
-- (hold_transfer_id) is made before the row is written; its post or void is written with the status that ends it.
CREATE TABLE refunds (
  id text PRIMARY KEY,
  tenant_id text NOT NULL REFERENCES tenants (id),
  invoice_id text REFERENCES invoices (id),
  payment_id text REFERENCES payments (id),
  -- the tenant's account the money leaves
  account_id text NOT NULL REFERENCES accounts (id),
  asset text NOT NULL,
  amount bigint NOT NULL CHECK (amount > 0),
  rail text NOT NULL,
  status text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
  reason text CHECK (reason IN ('duplicate', 'fraudulent', 'requested_by_customer')),
  metadata jsonb NOT NULL DEFAULT '{}',
  -- where the rail pays it (a BOLT11 invoice the payer gave, the address that paid); null: back the way it came
  destination jsonb,
  hold_transfer_id numeric(39, 0) NOT NULL UNIQUE,
  -- the rail's name for the refund (a Stripe refund id, a payment hash, a tx hash) and its proof
  rail_reference text,
  evidence jsonb,
  -- what the rail paid to move it, in the rail's asset (a routing fee), booked to the rail's fee account
  fee bigint,
  failure_code text,
  failure_message text,
  idempotency_key text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CHECK ((invoice_id IS NULL) <> (payment_id IS NULL))
);
CREATE UNIQUE INDEX refunds_idempotency ON refunds (tenant_id, idempotency_key);
CREATE INDEX refunds_tenant_created ON refunds (tenant_id, created_at DESC, id);
CREATE INDEX refunds_invoice ON refunds (invoice_id) WHERE invoice_id IS NOT NULL;
CREATE INDEX refunds_payment ON refunds (payment_id) WHERE payment_id IS NOT NULL;
CREATE INDEX refunds_pending ON refunds (status) WHERE status = 'pending';

-- What was paid into an invoice or by a payment, and how much of it refunds that stand (pending or succeeded) have
-- given back. One row per refunded invoice or payment: a refund claims its amount with one conditional UPDATE of the
-- row, so two refunds racing for the last of it cannot both pass; a failed refund gives its amount back.
CREATE TABLE refundable (
  target_id text PRIMARY KEY,
  paid bigint NOT NULL CHECK (paid > 0),
  refunded bigint NOT NULL DEFAULT 0 CHECK (refunded >= 0 AND refunded <= paid)
);

-- A refund is written in one transaction with its ledger hold. When what is left is less than its amount, or its
-- Idempotency-Key is another refund's, the insert calls one of these, so that the hold is rolled back with it.
CREATE FUNCTION refund_exceeds_remaining() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'refunds: less is left to refund than the amount' USING ERRCODE = 'SYR01';
END
$$;

CREATE FUNCTION refund_key_taken() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'refunds: the Idempotency-Key is taken by another refund' USING ERRCODE = 'SYR02';
END
$$;
