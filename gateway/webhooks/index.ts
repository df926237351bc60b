// Outgoing events: the tenants' webhook endpoints, and the signature receivers check. Delivery, per (event,
// endpoint), is in delivery.ts.
import { randomBytes } from "node:crypto";
import type { Sql } from "../db/index.ts";
import { newId } from "../ids/index.ts";

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

/**
 * For receivers (and tests): checks a Switchyard-Signature header against the raw body, within a tolerance; any
 * `v1=` that matches will do (during a secret's rotation a delivery carries one per secret).
 */
export { verifyLegacySignature as verifyDelivery } from "./signing.ts";
