// Webhook endpoints: where a tenant's events are delivered, which event types each takes, and the secrets that
// sign its deliveries. A secret is shown when it is made (creation, rotation); only the delivery reads it again
// (deliveryTargets), and a replay of the answer that showed it while it is still the endpoint's (deliveryTarget,
// gateway/http/resources/webhook-endpoints.ts). A rotation keeps the secret before signing too until it expires, so a
// receiver can move to the new one without losing a delivery. A tenant has at most webhookEndpointsPerTenantMax.
import type { Db, Sql } from "../db/index.ts";
import { newId } from "../ids/index.ts";
import { webhookDeliveryGiveUpAfterMs } from "./delivery.ts";
import { newWebhookSecret } from "./signing.ts";

/** How many endpoints one tenant may have. */
export const webhookEndpointsPerTenantMax = 16;
/** A rotation's overlap: the secret before signs this long unless the request says otherwise. */
export const secretOverlapDefaultSeconds = 86_400;
/** The longest overlap a rotation may ask. */
export const secretOverlapMaxSeconds = 7 * 86_400;
/** "*": every event type. */
export const allEventTypes = "*";

/**
 * Every event type the gateway writes to the outbox: what an endpoint may name besides "*" (a type it never sends,
 * a misspelling, is refused rather than taken and never delivered). event-types.test.ts finds each one the code
 * writes in this list.
 */
export const eventTypes = [
  "payment.succeeded",
  "payment.failed",
  "payment.reversed",
  "invoice.payment_received",
  "invoice.paid",
  "invoice.reversed",
  "invoice.reinstated",
  "refund.created",
  "refund.succeeded",
  "refund.failed",
  "webhook_endpoint.disabled",
] as const;

export type WebhookErrorCode =
  | "webhook_endpoint_not_found"
  | "event_not_found"
  | "webhook_endpoint_limit_reached";
export const webhookErrorStatus: Record<WebhookErrorCode, number> = {
  webhook_endpoint_not_found: 404,
  event_not_found: 404,
  webhook_endpoint_limit_reached: 409,
};

export type WebhookEndpoint = {
  id: string;
  tenantId: string;
  url: string;
  description: string | null;
  enabled: boolean;
  /** Event types, or ["*"]. */
  enabledEvents: string[];
  /** Until when the secret before a rotation still signs, or null when only the current one does. */
  previousSecretExpiresAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
};

type EndpointRow = {
  id: string;
  tenant_id: string;
  url: string;
  description: string | null;
  enabled: boolean;
  enabled_events: unknown;
  previous_secret_expires_at: Date | null;
  created_at: Date;
  updated_at: Date;
};

const endpointColumns = `id, tenant_id, url, description, enabled, enabled_events, created_at, updated_at,
  CASE WHEN previous_secret_expires_at > now() THEN previous_secret_expires_at END AS previous_secret_expires_at`;

function parsedJson(value: unknown): unknown {
  return typeof value === "string" ? JSON.parse(value) : value;
}

export function endpointOf(row: EndpointRow): WebhookEndpoint {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    url: row.url,
    description: row.description,
    enabled: row.enabled,
    enabledEvents: parsedJson(row.enabled_events) as string[],
    previousSecretExpiresAt: row.previous_secret_expires_at,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

export type EndpointCreated =
  | { ok: true; endpoint: WebhookEndpoint; secret: string }
  | { ok: false; refusal: "webhook_endpoint_limit_reached" };

/**
 * A new endpoint and its secret, unless the tenant has webhookEndpointsPerTenantMax already. The tenant's row is
 * locked while counting, so concurrent creations cannot pass the cap together.
 */
export async function createWebhookEndpoint(
  db: Db,
  params: { tenantId: string; url: string; description: string | null; enabledEvents: readonly string[] },
): Promise<EndpointCreated> {
  const secret = newWebhookSecret();
  return await db.transaction(async (tx): Promise<EndpointCreated> => {
    await tx.query("SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE", [params.tenantId]);
    if (!(await hasRoomForWebhookEndpoint(tx, params.tenantId)))
      return { ok: false, refusal: "webhook_endpoint_limit_reached" };
    const [row] = await tx.query<EndpointRow>(
      `INSERT INTO webhook_endpoints (id, tenant_id, url, secret, description, enabled_events)
       VALUES ($1, $2, $3, $4, $5, $6::jsonb) RETURNING ${endpointColumns}`,
      [
        newId("we"),
        params.tenantId,
        params.url,
        secret,
        params.description,
        JSON.stringify(params.enabledEvents),
      ],
    );
    return { ok: true, endpoint: endpointOf(row!), secret };
  });
}

/**
 * Whether the tenant may have one more endpoint now: a refusal found before anything slower is asked (the URL's
 * lookup). createWebhookEndpoint counts again under the tenant's lock, which is what decides.
 */
export async function hasRoomForWebhookEndpoint(sql: Sql, tenantId: string): Promise<boolean> {
  const [counted] = await sql.query<{ count: number }>(
    "SELECT count(*)::int AS count FROM webhook_endpoints WHERE tenant_id = $1",
    [tenantId],
  );
  return (counted?.count ?? 0) < webhookEndpointsPerTenantMax;
}

export async function getWebhookEndpoint(
  sql: Sql,
  params: { tenantId: string; id: string },
): Promise<WebhookEndpoint | null> {
  const [row] = await sql.query<EndpointRow>(
    `SELECT ${endpointColumns} FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2`,
    [params.tenantId, params.id],
  );
  return row === undefined ? null : endpointOf(row);
}

/**
 * Each field given replaced; null when the tenant has no such endpoint. Enabled again, an endpoint's deliveries left
 * pending while it was disabled and now past their retries (giveUpAfterMs from their fan-out) are given up, as their
 * next attempt would have done after sending them: an endpoint off for a month gets no burst of month-old events,
 * only what it would still be retried. Those within their retries go on where they were, and so does one the tenant
 * asked to be sent again (its redelivery: POST …/retry) while the endpoint was disabled.
 */
export async function updateWebhookEndpoint(
  sql: Sql,
  params: {
    tenantId: string;
    id: string;
    url?: string;
    description?: string | null;
    enabled?: boolean;
    enabledEvents?: readonly string[];
  },
): Promise<WebhookEndpoint | null> {
  const [row] = await sql.query<EndpointRow>(
    // Enabled or disabled by hand, the endpoint's failing time starts over (null): time spent disabled is not
    // failing, and re-enabled it gets a whole disableAfterMs before delivery disables it again.
    `WITH updated AS (
       UPDATE webhook_endpoints e SET url = COALESCE($3, url),
         description = CASE WHEN $4::boolean THEN $5 ELSE description END,
         failing_since = CASE WHEN $6::boolean IS DISTINCT FROM e.enabled AND $6::boolean IS NOT NULL THEN NULL
                              ELSE failing_since END,
         enabled = COALESCE($6, e.enabled), enabled_events = COALESCE($7::jsonb, enabled_events), updated_at = now()
       FROM (SELECT enabled FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2) before
       WHERE e.tenant_id = $1 AND e.id = $2
       RETURNING e.*, before.enabled AS was_enabled
     ), given_up AS (
       UPDATE webhook_deliveries d SET status = 'failed', completed_at = now(), locked_until = NULL
       FROM updated
       WHERE updated.enabled AND NOT updated.was_enabled AND d.endpoint_id = updated.id AND d.status = 'pending'
         AND NOT d.redeliver AND d.created_at <= now() - make_interval(secs => $8::double precision / 1000)
     )
     SELECT ${endpointColumns} FROM updated`,
    [
      params.tenantId,
      params.id,
      params.url ?? null,
      params.description !== undefined,
      params.description ?? null,
      params.enabled ?? null,
      params.enabledEvents === undefined ? null : JSON.stringify(params.enabledEvents),
      webhookDeliveryGiveUpAfterMs,
    ],
  );
  return row === undefined ? null : endpointOf(row);
}

/** Deleted: no delivery is made to it from now on. False when the tenant has no such endpoint. */
export async function deleteWebhookEndpoint(
  sql: Sql,
  params: { tenantId: string; id: string },
): Promise<boolean> {
  const rows = await sql.query(
    "DELETE FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2 RETURNING id",
    [params.tenantId, params.id],
  );
  return rows.length === 1;
}

/**
 * A new secret; the one before keeps signing for `overlapSeconds` (0: not at all). A rotation during another's
 * overlap drops the oldest secret: two at most sign. Null when the tenant has no such endpoint.
 */
export async function rotateWebhookSecret(
  sql: Sql,
  params: { tenantId: string; id: string; overlapSeconds: number },
): Promise<{ endpoint: WebhookEndpoint; secret: string } | null> {
  const secret = newWebhookSecret();
  const [row] = await sql.query<EndpointRow>(
    `UPDATE webhook_endpoints SET previous_secret = CASE WHEN $4::int > 0 THEN secret END,
       previous_secret_expires_at = CASE WHEN $4::int > 0 THEN now() + make_interval(secs => $4::int) END,
       secret = $3, updated_at = now()
     WHERE tenant_id = $1 AND id = $2 RETURNING ${endpointColumns}`,
    [params.tenantId, params.id, secret, params.overlapSeconds],
  );
  return row === undefined ? null : { endpoint: endpointOf(row), secret };
}

/** Where one delivery goes: the endpoint and its secrets in force, newest first (signedHeaders takes them). */
export type DeliveryTarget = { endpointId: string; url: string; secrets: string[] };

type TargetRow = { id: string; url: string; secret: string; previous_secret: string | null };

const targetColumns = `id, url, secret,
  CASE WHEN previous_secret_expires_at > now() THEN previous_secret END AS previous_secret`;

function targetOf(row: TargetRow): DeliveryTarget {
  return {
    endpointId: row.id,
    url: row.url,
    secrets: row.previous_secret === null ? [row.secret] : [row.secret, row.previous_secret],
  };
}

/** The tenant's enabled endpoints that take events of `type`, oldest first. */
export async function deliveryTargets(
  sql: Sql,
  params: { tenantId: string; type: string },
): Promise<DeliveryTarget[]> {
  const rows = await sql.query<TargetRow>(
    `SELECT ${targetColumns} FROM webhook_endpoints
     WHERE tenant_id = $1 AND enabled AND (enabled_events ? '*' OR enabled_events ? $2)
     ORDER BY created_at, id`,
    [params.tenantId, params.type],
  );
  return rows.map(targetOf);
}

/**
 * One endpoint of the tenant's as a delivery target (a redelivery, say, or its secret for a replayed answer), enabled or
 * not; null if none.
 */
export async function deliveryTarget(
  sql: Sql,
  params: { tenantId: string; endpointId: string },
): Promise<DeliveryTarget | null> {
  const [row] = await sql.query<TargetRow>(
    `SELECT ${targetColumns} FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2`,
    [params.tenantId, params.endpointId],
  );
  return row === undefined ? null : targetOf(row);
}
