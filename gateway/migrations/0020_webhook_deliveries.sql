-- Delivery per (event, endpoint). An event in the outbox is fanned out once, to the endpoints that want it at
-- that moment: one webhook_deliveries row each, with its own attempts, backoff, claim and outcome, so that one
-- failing endpoint never makes another receive the event again. Each attempt is kept in the endpoint's log.
-- A delivery and its log go with its event when the event is pruned (retention), or with its endpoint.
ALTER TABLE outbox ADD COLUMN fanned_out_at timestamptz;
-- Events handled by the per-event loop before this migration are not sent again.
UPDATE outbox SET fanned_out_at = coalesce(delivered_at, gave_up_at) WHERE delivered_at IS NOT NULL OR gave_up_at IS NOT NULL;
CREATE INDEX outbox_to_fan_out ON outbox (id) WHERE fanned_out_at IS NULL;

-- An endpoint may already have `enabled` (the endpoints' own migration); delivery disables one that keeps failing.
ALTER TABLE webhook_endpoints ADD COLUMN IF NOT EXISTS enabled boolean NOT NULL DEFAULT true;
-- Since when every attempt to the endpoint has failed (null: its last attempt succeeded, or none was made).
ALTER TABLE webhook_endpoints ADD COLUMN failing_since timestamptz;
ALTER TABLE webhook_endpoints ADD COLUMN disabled_at timestamptz;

CREATE TABLE webhook_deliveries (
  id text PRIMARY KEY,
  tenant_id text NOT NULL REFERENCES tenants (id),
  event_id bigint NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
  endpoint_id text NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
  status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'succeeded', 'failed')),
  attempts integer NOT NULL DEFAULT 0,
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  locked_until timestamptz,
  last_attempt_at timestamptz,
  last_status_code integer,
  last_latency_ms integer,
  last_error text,
  created_at timestamptz NOT NULL DEFAULT now(),
  completed_at timestamptz,
  UNIQUE (event_id, endpoint_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (tenant_id, endpoint_id, created_at, id);

CREATE TABLE webhook_delivery_attempts (
  id bigserial PRIMARY KEY,
  delivery_id text NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
  tenant_id text NOT NULL REFERENCES tenants (id),
  attempted_at timestamptz NOT NULL,
  -- The receiver's HTTP status, or null when none came (timeout, refused connection).
  status_code integer,
  latency_ms integer NOT NULL,
  error text
);
CREATE INDEX webhook_delivery_attempts_delivery ON webhook_delivery_attempts (delivery_id, id);
