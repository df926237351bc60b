-- The fiat rail's memory of Stripe: objects it created (by idempotency key), webhook events applied
-- (by event id), PaymentIntents credited, and reversals that arrived before their intent's credit.
CREATE TABLE fiat_stripe_objects (
  idempotency_key text PRIMARY KEY,
  kind text NOT NULL CHECK (kind IN ('payment_intent', 'transfer', 'refund')),
  object_id text NOT NULL,
  payment_id text NOT NULL,
  attempt_id text,
  amount bigint NOT NULL CHECK (amount > 0),
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE fiat_applied_stripe_events (
  event_id text PRIMARY KEY,
  type text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE fiat_stripe_intents (
  intent_id text PRIMARY KEY,
  credited boolean NOT NULL DEFAULT false,
  payment_id text,
  attempt_id text,
  reference text,
  amount bigint CHECK (amount IS NULL OR amount > 0),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CHECK (NOT credited OR (payment_id IS NOT NULL AND attempt_id IS NOT NULL AND reference IS NOT NULL AND amount IS NOT NULL))
);

CREATE TABLE fiat_parked_reversals (
  intent_id text NOT NULL REFERENCES fiat_stripe_intents (intent_id),
  key text NOT NULL,
  reason text NOT NULL CHECK (reason IN ('dispute', 'refund')),
  amount bigint NOT NULL CHECK (amount > 0),
  psp_ids jsonb NOT NULL,
  parked_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (intent_id, key)
);
