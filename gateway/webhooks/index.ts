// Outgoing events. A state change and its event commit in one transaction (the outbox); this delivers them:
// each due event is claimed for a while (so that several gateway processes share the work without sending
// one event twice at once), POSTed to each of the tenant's endpoints with an HMAC-SHA256 signature over
// "<timestamp>.<body>", and marked delivered on 2xx from all of them — or retried later with exponential
// backoff, until deliveryAttemptsMax. Receivers dedupe on the event id: a delivery may repeat, never vanish.
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { Db, Sql } from "../db/index.ts";
import { newId } from "../ids/index.ts";

export type WebhookLimits = {
  batchEventsMax: number;
  deliveryTimeoutMs: number;
  deliveryAttemptsMax: number;
  claimMs: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
};

export const webhookLimitsDefault: WebhookLimits = {
  batchEventsMax: 100,
  deliveryTimeoutMs: 10_000,
  deliveryAttemptsMax: 16,
  claimMs: 60_000,
  backoffBaseMs: 1_000,
  backoffMaxMs: 3_600_000,
};

export const signatureHeader = "switchyard-signature";

export type WebhookEndpoint = { id: string; url: string; secret: string };

export async function createWebhookEndpoint(
  sql: Sql,
  params: { tenantId: string; url: string },
): Promise<WebhookEndpoint> {
  const endpoint = {
    id: newId("we"),
    url: params.url,
    secret: `whsec_${randomBytes(24).toString("base64url")}`,
  };
  await sql.query("INSERT INTO webhook_endpoints (id, tenant_id, url, secret) VALUES ($1, $2, $3, $4)", [
    endpoint.id,
    params.tenantId,
    endpoint.url,
    endpoint.secret,
  ]);
  return endpoint;
}

/** `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`: what a receiver checks before trusting a delivery. */
export function signDelivery(secret: string, body: string, timestampSeconds: number): string {
  const mac = createHmac("sha256", secret).update(`${timestampSeconds}.${body}`).digest("hex");
  return `t=${timestampSeconds},v1=${mac}`;
}

/** For receivers (and tests): checks a signature header against the raw body, within a tolerance. */
export function verifyDelivery(params: {
  secret: string;
  body: string;
  header: string;
  nowSeconds: number;
  toleranceSeconds: number;
}): boolean {
  const parts = new Map(params.header.split(",").map((part) => part.split("=", 2) as [string, string]));
  const timestamp = Number(parts.get("t"));
  const signature = parts.get("v1");
  if (
    !Number.isInteger(timestamp) ||
    signature === undefined ||
    Math.abs(params.nowSeconds - timestamp) > params.toleranceSeconds
  )
    return false;
  const expected = Buffer.from(signDelivery(params.secret, params.body, timestamp).split("v1=")[1]!, "hex");
  const given = Buffer.from(signature, "hex");
  return given.length === expected.length && timingSafeEqual(given, expected);
}

type OutboxRow = {
  id: bigint;
  tenant_id: string;
  type: string;
  payload: unknown;
  created_at: Date;
  attempts: number;
};

export type DeliveryPass = { claimed: number; delivered: number; retried: number; gaveUp: number };

/** One pass: claims due events, delivers them, records the outcome. Returns what it did. */
export async function deliverOutbox(deps: {
  db: Db;
  limits: WebhookLimits;
  nowMs: () => number;
}): Promise<DeliveryPass> {
  const { db, limits } = deps;
  const claimed = await db.query<OutboxRow>(
    `UPDATE outbox SET locked_until = now() + make_interval(secs => $2::double precision / 1000)
     WHERE id IN (
       SELECT id FROM outbox
       WHERE delivered_at IS NULL AND gave_up_at IS NULL AND next_attempt_at <= now()
         AND (locked_until IS NULL OR locked_until < now())
       ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
     RETURNING id, tenant_id, type, payload, created_at, attempts`,
    [limits.batchEventsMax, limits.claimMs],
  );
  const pass: DeliveryPass = { claimed: claimed.length, delivered: 0, retried: 0, gaveUp: 0 };
  for (const event of claimed.sort((a, b) => (a.id < b.id ? -1 : 1))) {
    const endpoints = await db.query<WebhookEndpoint>(
      "SELECT id, url, secret FROM webhook_endpoints WHERE tenant_id = $1 ORDER BY id",
      [event.tenant_id],
    );
    const body = JSON.stringify({
      id: `evt_${event.id}`,
      object: "event",
      type: event.type,
      created_at: event.created_at.toISOString(),
      data: event.payload,
    });
    const errors: string[] = [];
    for (const endpoint of endpoints) {
      const error = await post(endpoint, body, deps.nowMs(), limits.deliveryTimeoutMs);
      if (error !== null) errors.push(`${endpoint.id}: ${error}`);
    }
    if (errors.length === 0) {
      await db.query(
        "UPDATE outbox SET delivered_at = now(), locked_until = NULL, attempts = attempts + 1 WHERE id = $1",
        [event.id],
      );
      pass.delivered += 1;
      continue;
    }
    const attempts = event.attempts + 1;
    if (attempts >= limits.deliveryAttemptsMax) {
      await db.query(
        "UPDATE outbox SET gave_up_at = now(), locked_until = NULL, attempts = $2, last_error = $3 WHERE id = $1",
        [event.id, attempts, errors.join("; ")],
      );
      pass.gaveUp += 1;
      continue;
    }
    const backoffMs = Math.min(limits.backoffMaxMs, limits.backoffBaseMs * 2 ** (attempts - 1));
    await db.query(
      `UPDATE outbox SET attempts = $2, last_error = $3, locked_until = NULL,
         next_attempt_at = now() + make_interval(secs => $4::double precision / 1000) WHERE id = $1`,
      [event.id, attempts, errors.join("; ").slice(0, 1_000), backoffMs],
    );
    pass.retried += 1;
  }
  return pass;
}

async function post(
  endpoint: WebhookEndpoint,
  body: string,
  nowMs: number,
  timeoutMs: number,
): Promise<string | null> {
  try {
    const response = await fetch(endpoint.url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        [signatureHeader]: signDelivery(endpoint.secret, body, Math.floor(nowMs / 1000)),
      },
      body,
      signal: AbortSignal.timeout(timeoutMs),
      redirect: "manual",
    });
    await response.body?.cancel();
    return response.ok ? null : `HTTP ${response.status}`;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}
