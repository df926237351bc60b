-- Reversals undone (a refund that failed or was canceled, a dispute whose funds were reinstated), by key. A
-- reversal event that arrives after its undoing (Stripe does not order events) is dropped, never applied.
CREATE TABLE fiat_withdrawn_reversals (
  intent_id text NOT NULL,
  key text NOT NULL,
  withdrawn_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (intent_id, key)
);
