// POST /v1/webhooks/stripe, the fiat rail's contribution to the server: Stripe's events, verified on the exact
// bytes Stripe signed before anything is parsed, then applied once (receiver.ts: dedup by event id, safe order).
// Framework-free (core's RailRoute): the server mounts it outside the API's authentication.
import type { RailRoute, RailRouteReply, RailRouteRequest } from "../../core/index.ts";
import { parseStripeEvent } from "./events.ts";
import { type ApplyFiatEvent, createStripeEventReceiver, type ReceiveOutcome } from "./receiver.ts";
import { type SignatureError, verifyStripeSignature } from "./signature.ts";
import type { StripeWebhookStore } from "./store.ts";

export const stripeWebhookPath = "/v1/webhooks/stripe";

/**
 * The body limit Stripe's events need: most are a few kB, but a Dispute carries the merchant's text evidence (up to
 * 150,000 characters in all, each up to 6 bytes once JSON-escaped), and an event refused 413 is never applied (a won
 * dispute's money never given back). The signature is checked before anything is parsed.
 */
export const stripeWebhookBodyLimitBytes = 1024 * 1024;

export type StripeWebhookRouteParams = {
  /** Endpoint signing secrets (whsec_…), several during a rotation. */
  readonly secrets: readonly string[];
  /** How far the signed timestamp may be from now (Stripe's default: 300 s). */
  readonly toleranceSeconds: number;
  /** Larger bodies are refused unread (stripeWebhookBodyLimitBytes: what Stripe's events need). */
  readonly bodyLimitBytes: number;
  readonly store: StripeWebhookStore;
  /** Must be idempotent (keys: FiatEvent.key / PSP ids), as events are redelivered. */
  readonly applyEvent: ApplyFiatEvent;
  /** The rail's currency in Stripe's spelling ("usd") and fee schedule (for transfer fees in events). */
  readonly currency: string;
  /** Where a refused or failed delivery is told (never the body or the signature). */
  readonly onRefused?: (fields: Record<string, unknown>) => void;
  readonly nowSeconds?: () => number;
};

export type StripeWebhookErrorCode = SignatureError | "payload_invalid" | "event_not_applied";

const statusOf: Record<StripeWebhookErrorCode, 400 | 500> = {
  signature_missing: 400,
  signature_invalid: 400,
  timestamp_outside_tolerance: 400,
  payload_invalid: 400,
  event_not_applied: 500, // Stripe redelivers on anything but 2xx
};

const messages: Record<StripeWebhookErrorCode, string> = {
  signature_missing: "the Stripe-Signature header is missing",
  signature_invalid: "no signature in Stripe-Signature matches this body",
  timestamp_outside_tolerance: "the signed timestamp is outside the tolerance",
  payload_invalid: "the body is not a Stripe event",
  event_not_applied: "the event could not be applied; it will be retried",
};

const refusal = (code: StripeWebhookErrorCode): RailRouteReply => ({
  status: statusOf[code],
  body: { error: { code, message: messages[code] } },
});

export function createStripeWebhookRoute(params: StripeWebhookRouteParams): RailRoute {
  const receiver = createStripeEventReceiver({
    store: params.store,
    applyEvent: params.applyEvent,
    currency: params.currency,
  });
  const nowSeconds = params.nowSeconds ?? (() => Math.floor(Date.now() / 1000));
  const onRefused = params.onRefused ?? (() => {});

  async function handle(request: RailRouteRequest): Promise<RailRouteReply> {
    const header = request.headers["stripe-signature"];
    const verified = verifyStripeSignature({
      rawBody: request.rawBody,
      header: typeof header === "string" || header === undefined ? header : header.join(","),
      secrets: params.secrets,
      toleranceSeconds: params.toleranceSeconds,
      nowSeconds: nowSeconds(),
    });
    if (!verified.ok) {
      onRefused({ code: verified.error });
      return refusal(verified.error);
    }
    const parsed = parseStripeEvent(request.rawBody);
    if (!parsed.ok) {
      onRefused({ code: parsed.error });
      return refusal(parsed.error);
    }
    let outcome: ReceiveOutcome;
    try {
      outcome = await receiver.receive(parsed.event);
    } catch (error) {
      onRefused({ code: "event_not_applied", err: error, eventId: parsed.event.id, type: parsed.event.type });
      return refusal("event_not_applied");
    }
    return {
      status: 200,
      body: {
        received: true,
        outcome: outcome.status,
        ...(outcome.status === "ignored" ? { reason: outcome.reason } : {}),
      },
    };
  }

  return { method: "POST", path: stripeWebhookPath, bodyLimitBytes: params.bodyLimitBytes, handle };
}
