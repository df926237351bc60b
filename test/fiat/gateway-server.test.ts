// The webhook route inside the gateway's own server (buildServer: zod compilers, errors, API-key auth and
// Idempotency-Key plugins): public (no API key), its raw-body parser and compilers kept to itself.
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createMemoryStripeWebhookStore,
  createStripeWebhookRoute,
  stripeWebhookPath,
} from "../../adapters/fiat/index.ts";
import { buildBareServer } from "../support/bare-server.ts";
import { signEvent, stripeEvents } from "./stripe-events.ts";
import { createToyLedger } from "./toy-ledger.ts";

const secret = "whsec_gateway";
const ledger = createToyLedger();
let server: FastifyInstance;

beforeAll(async () => {
  // Only the webhook route runs, and the API-key check that refuses before any query.
  const route = createStripeWebhookRoute({
    secrets: [secret],
    toleranceSeconds: 300,
    bodyLimitBytes: 64 * 1024,
    store: createMemoryStripeWebhookStore(),
    applyEvent: ledger.applyEvent,
    currency: "usd",
  });
  server = await buildBareServer([route]);
});

afterAll(async () => {
  await server?.close();
});

const event = stripeEvents.intentSucceeded("evt_gw_1", {
  intentId: "pi_gw_1",
  amount: 700,
  paymentId: "inv_gw_1",
  attemptId: "invoice",
});

describe("the webhook route in the gateway's server", () => {
  it("takes a signed event without an API key or Idempotency-Key, and applies it", async () => {
    const signed = signEvent(event, { secret, timestamp: Math.floor(Date.now() / 1000) });
    const response = await server.inject({
      method: "POST",
      url: stripeWebhookPath,
      payload: signed.payload,
      headers: { "content-type": "application/json", "stripe-signature": signed.header },
    });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ received: true, outcome: "applied" });
    expect(ledger.balance("inv_gw_1")).toBe(700n);
  });

  it("answers 400 signature_invalid in the gateway's error shape", async () => {
    const signed = signEvent(event, { secret: "whsec_other", timestamp: Math.floor(Date.now() / 1000) });
    const response = await server.inject({
      method: "POST",
      url: stripeWebhookPath,
      payload: signed.payload,
      headers: { "content-type": "application/json", "stripe-signature": signed.header },
    });
    expect(response.statusCode).toBe(400);
    expect(response.json()).toEqual({
      error: { code: "signature_invalid", message: "no signature in Stripe-Signature matches this body" },
    });
  });

  it("leaves the other /v1 routes behind the API key", async () => {
    const response = await server.inject({ method: "POST", url: "/v1/payments", payload: {} });
    expect(response.statusCode).toBe(401);
    expect(response.json().error.code).toBe("api_key_missing");
  });
});
