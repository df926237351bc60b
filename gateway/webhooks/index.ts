// Outgoing events: the tenants' webhook endpoints, and the signature receivers check. Delivery, per (event,
// endpoint), is in delivery.ts.
import { randomBytes, timingSafeEqual } from "node:crypto";
import type { Sql } from "../db/index.ts";
import { newId } from "../ids/index.ts";
import { signDelivery } from "./delivery.ts";

export {
  attemptDelivery,
  backoffMs,
  type ClaimedDelivery,
  claimDeliveries,
  type DeliveryDeps,
  type DeliveryPass,
  type DeliveryRequest,
  type DeliveryResponse,
  deliverOutbox,
  fanOutEvents,
  fetchSend,
  type Send,
  signatureHeader,
  signDelivery,
  startWebhookDelivery,
  type WebhookDelivery,
  type WebhookLimits,
  webhookDeliveryGiveUpAfterMs,
  webhookEndpointDisableAfterMs,
  webhookLimitsDefault,
} from "./delivery.ts";

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
