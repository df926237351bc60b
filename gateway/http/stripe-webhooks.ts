// POST /v1/webhooks/stripe: Stripe's events, verified on the raw body before anything is parsed, then
// applied once (adapters/fiat receiver: dedup by event id, out-of-order handling). Encapsulated: the raw-body
// JSON parser registered here applies to this plugin's route only. Glue only; the logic is in adapters/fiat.
import type { FastifyPluginAsync } from "fastify";
import { type ZodType, z } from "zod";
import {
  type ApplyFiatEvent,
  createStripeEventReceiver,
  type FiatFeeSchedule,
  parseStripeEvent,
  type ReceiveOutcome,
  type SignatureError,
  type StripeWebhookStore,
  verifyStripeSignature,
} from "../../adapters/fiat/index.ts";

export type StripeWebhooksOptions = {
  /** Endpoint signing secrets (whsec_…), several during a rotation. */
  readonly secrets: readonly string[];
  /** How far the signed timestamp may be from now (Stripe's default: 300 s). */
  readonly toleranceSeconds: number;
  /** Stripe events are a few kB; refuse larger bodies unread. */
  readonly bodyLimitBytes: number;
  readonly store: StripeWebhookStore;
  /** The settlement's entry: must be idempotent (keys: FiatEvent.key / PSP ids), as events are redelivered. */
  readonly applyEvent: ApplyFiatEvent;
  /** The fiat rail's currency in Stripe's spelling ("usd") and fee schedule (for transfer fees in events). */
  readonly currency: string;
  readonly feeSchedule: FiatFeeSchedule;
  readonly nowSeconds?: () => number;
};

export type StripeWebhookErrorCode = SignatureError | "payload_invalid" | "event_not_applied";

export const stripeWebhookPath = "/v1/webhooks/stripe";

const httpStatusOf: Record<StripeWebhookErrorCode, 400 | 500> = {
  signature_missing: 400,
  signature_invalid: 400,
  timestamp_outside_tolerance: 400,
  payload_invalid: 400,
  event_not_applied: 500, // Stripe redelivers on anything but 2xx
};

const errorBody = z.object({ error: z.object({ code: z.string(), message: z.string() }) });

// zod, as everywhere in gateway/http; the compilers are set inside this plugin too, so that it works the
// same under the gateway's server and on a bare Fastify in tests.
const routeSchema = {
  headers: z.object({ "stripe-signature": z.union([z.string(), z.array(z.string())]).optional() }).loose(),
  response: {
    200: z.object({
      received: z.literal(true),
      outcome: z.enum(["applied", "duplicate", "parked", "withdrawn", "stale", "ignored"]),
      reason: z.string().optional(),
    }),
    400: errorBody,
    500: errorBody,
  },
};

const messages: Record<StripeWebhookErrorCode, string> = {
  signature_missing: "the Stripe-Signature header is missing",
  signature_invalid: "no signature in Stripe-Signature matches this body",
  timestamp_outside_tolerance: "the signed timestamp is outside the tolerance",
  payload_invalid: "the body is not a Stripe event",
  event_not_applied: "the event could not be applied; it will be retried",
};

export const stripeWebhooksPlugin: FastifyPluginAsync<StripeWebhooksOptions> = async (app, options) => {
  const receiver = createStripeEventReceiver({
    store: options.store,
    applyEvent: options.applyEvent,
    currency: options.currency,
    feeSchedule: options.feeSchedule,
  });
  const nowSeconds = options.nowSeconds ?? (() => Math.floor(Date.now() / 1000));

  app.setValidatorCompiler(({ schema }) => (data) => {
    const result = (schema as ZodType).safeParse(data);
    return result.success
      ? { value: result.data }
      : {
          error: Object.assign(new Error("the request headers do not match their schema"), {
            statusCode: 400,
          }),
        };
  });
  app.setSerializerCompiler(
    ({ schema }) =>
      (data) =>
        JSON.stringify((schema as ZodType).parse(data)),
  );

  // Scoped to this plugin: keep the exact bytes Stripe signed.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser(
    "application/json",
    { parseAs: "buffer", bodyLimit: options.bodyLimitBytes },
    (_request, body, done) => done(null, body),
  );

  // public: no API key (the signature authenticates Stripe); no tenant, so no Idempotency-Key handling either.
  app.post(stripeWebhookPath, { schema: routeSchema, config: { public: true } }, async (request, reply) => {
    const fail = (code: StripeWebhookErrorCode) => {
      request.log.warn({ code }, "stripe webhook refused");
      return reply.code(httpStatusOf[code]).send({ error: { code, message: messages[code] } });
    };
    const rawBody = request.body;
    if (!Buffer.isBuffer(rawBody)) return fail("payload_invalid");
    const header = request.headers["stripe-signature"];
    const verified = verifyStripeSignature({
      rawBody,
      header: typeof header === "string" ? header : header?.join(","),
      secrets: options.secrets,
      toleranceSeconds: options.toleranceSeconds,
      nowSeconds: nowSeconds(),
    });
    if (!verified.ok) return fail(verified.error);
    const parsed = parseStripeEvent(rawBody);
    if (!parsed.ok) return fail(parsed.error);

    let outcome: ReceiveOutcome;
    try {
      outcome = await receiver.receive(parsed.event);
    } catch (error) {
      request.log.error(
        { err: error, eventId: parsed.event.id, type: parsed.event.type },
        "stripe event not applied",
      );
      return reply
        .code(500)
        .send({ error: { code: "event_not_applied", message: messages.event_not_applied } });
    }
    return reply.code(200).send({
      received: true,
      outcome: outcome.status,
      ...(outcome.status === "ignored" ? { reason: outcome.reason } : {}),
    });
  });
};
