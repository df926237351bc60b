// Outgoing events: the tenants' webhook endpoints, and the signature receivers check. Delivery, per (event,
// endpoint), is in delivery.ts.
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

/**
 * For receivers (and tests): checks a Switchyard-Signature header against the raw body, within a tolerance; any
 * `v1=` that matches will do (during a secret's rotation a delivery carries one per secret).
 */
export { verifyLegacySignature as verifyDelivery } from "./signing.ts";
