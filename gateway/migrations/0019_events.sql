-- Events as the tenant reads them (GET /v1/events) and as deliveries carry them. The outbox stays where a change
-- writes its event, in the change's own transaction (its callers write no id): each row now gets a public id of
-- its own, "evt_" and 32 hex digits of a random UUID (122 random bits), drawn by the database so that every
-- writer, in SQL or through insertOutboxEvent, gets one. The serial id stays the delivery order; it is never shown.
ALTER TABLE outbox ADD COLUMN public_id text NOT NULL DEFAULT ('evt_' || translate(gen_random_uuid()::text, '-', ''));
CREATE UNIQUE INDEX outbox_public_id ON outbox (public_id);
CREATE INDEX outbox_tenant_list ON outbox (tenant_id, created_at, public_id);
CREATE INDEX outbox_tenant_type_list ON outbox (tenant_id, type, created_at, public_id);
-- Events older than the retention are deleted from the oldest (gateway/webhooks/events.ts pruneEvents).
CREATE INDEX outbox_created ON outbox (created_at);

-- The events as a collection of the lists' shape (gateway/http/lists.ts): `id` is the public id.
CREATE VIEW events AS
  SELECT public_id AS id, tenant_id, type, payload, created_at, id AS seq FROM outbox;

-- Webhook endpoints: a description, enabled or not, the event types they take ("*": all), and during a rotation
-- the secret before, which signs too until it expires.
ALTER TABLE webhook_endpoints ADD COLUMN description text;
ALTER TABLE webhook_endpoints ADD COLUMN enabled boolean NOT NULL DEFAULT true;
ALTER TABLE webhook_endpoints ADD COLUMN enabled_events jsonb NOT NULL DEFAULT '["*"]';
ALTER TABLE webhook_endpoints ADD COLUMN previous_secret text;
ALTER TABLE webhook_endpoints ADD COLUMN previous_secret_expires_at timestamptz;
ALTER TABLE webhook_endpoints ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
