// POST /v1/webhooks/stripe (the fiat rail's route, mounted by the rail-routes plugin) through fastify.inject:
// signatures checked on the raw body before anything is touched, events applied once and in a safe order, the
// raw-body parser scoped to the plugin. The top-up
// flow runs against stripe-mock: the intent the rail created is credited only when its success arrives.
import Fastify, { type FastifyInstance } from "fastify";
import { serializerCompiler, validatorCompiler } from "fastify-type-provider-zod";
import { afterEach, beforeEach, describe, expect, inject, it } from "vitest";
import {
  createFiatRail,
  createMemoryStripeObjectStore,
  createMemoryStripeWebhookStore,
  createStripeClient,
  createStripeWebhookRoute,
  defaultFiatFeeSchedule,
  type StripeWebhookStore,
  stripeWebhookPath,
} from "../../adapters/fiat/index.ts";
import { assets } from "../../core/index.ts";
import { railRoutesPlugin } from "../../gateway/http/index.ts";
import { signEvent, stripeEvents } from "./stripe-events.ts";
import { createToyLedger, type ToyLedger } from "./toy-ledger.ts";

const secret = "whsec_test_current";
const previousSecret = "whsec_test_previous";
const now = 1_800_000_000;
const topUp = {
  intentId: "pi_topup9",
  amount: 1_000,
  paymentId: "pay_9",
  attemptId: "att_9",
  reference: "cust_9",
};

let app: FastifyInstance;
let ledger: ToyLedger;
let store: StripeWebhookStore;
let clock = now;

beforeEach(async () => {
  ledger = createToyLedger();
  store = createMemoryStripeWebhookStore();
  clock = now;
  app = Fastify({ logger: false });
  // As the server sets them (server.ts): the plugin's own route, the wallets' /pay/{rail}/authorizations, is zod's.
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  const route = createStripeWebhookRoute({
    secrets: [secret, previousSecret],
    toleranceSeconds: 300,
    bodyLimitBytes: 64 * 1024,
    store,
    applyEvent: ledger.applyEvent,
    currency: "usd",
    nowSeconds: () => clock,
  });
  await app.register(railRoutesPlugin, { routes: [route] });
  // A sibling route outside the plugin: it must still get parsed JSON.
  app.post("/echo", async (request) => ({ body: request.body }));
  await app.ready();
});

afterEach(async () => {
  await app.close();
});

function post(payload: string, header: string | undefined, contentType = "application/json; charset=utf-8") {
  return app.inject({
    method: "POST",
    url: stripeWebhookPath,
    payload,
    headers: { "content-type": contentType, ...(header === undefined ? {} : { "stripe-signature": header }) },
  });
}

function deliver(event: unknown, params: { secret?: string; timestamp?: number } = {}) {
  const signed = signEvent(event, { secret: params.secret ?? secret, timestamp: params.timestamp ?? now });
  return post(signed.payload, signed.header);
}

describe("POST /v1/webhooks/stripe: signatures", () => {
  it("answers 400 signature_invalid to a bad signature and touches nothing", async () => {
    const event = stripeEvents.intentSucceeded("evt_1", topUp);
    const response = await deliver(event, { secret: "whsec_attacker" });
    expect(response.statusCode).toBe(400);
    expect(response.json()).toEqual({
      error: { code: "signature_invalid", message: "no signature in Stripe-Signature matches this body" },
    });
    expect(ledger.calls).toHaveLength(0);
    expect(await store.isApplied("evt_1")).toBe(false);
  });

  it("answers 400 signature_missing without the header", async () => {
    const response = await post(JSON.stringify(stripeEvents.intentSucceeded("evt_1", topUp)), undefined);
    expect(response.statusCode).toBe(400);
    expect(response.json().error.code).toBe("signature_missing");
    expect(ledger.calls).toHaveLength(0);
  });

  it("answers 400 timestamp_outside_tolerance to an old (replayed) delivery and touches nothing", async () => {
    const event = stripeEvents.intentSucceeded("evt_1", topUp);
    const signed = signEvent(event, { secret, timestamp: now });
    clock = now + 301; // the same, correctly signed request, replayed five minutes later
    const response = await post(signed.payload, signed.header);
    expect(response.statusCode).toBe(400);
    expect(response.json().error.code).toBe("timestamp_outside_tolerance");
    expect(ledger.calls).toHaveLength(0);
    expect(await store.isApplied("evt_1")).toBe(false);
  });

  it("accepts events signed with the previous secret during a rotation", async () => {
    const response = await deliver(stripeEvents.intentSucceeded("evt_1", topUp), { secret: previousSecret });
    expect(response.statusCode).toBe(200);
    expect(ledger.balance("cust_9")).toBe(1_000n);
  });

  it("verifies the bytes as sent, not a re-serialization", async () => {
    const event = stripeEvents.intentSucceeded("evt_1", topUp);
    const payload = JSON.stringify(event, null, 3); // unusual spacing: only the raw bytes match the signature
    const signed = signEvent(event, { secret, timestamp: now, payload });
    expect((await post(payload, signed.header)).statusCode).toBe(200);
    const tampered = payload.replace('"amount_received": 1000', '"amount_received": 9000');
    expect(tampered).not.toBe(payload);
    const response = await post(tampered, signed.header);
    expect(response.statusCode).toBe(400);
    expect(ledger.balance("cust_9")).toBe(1_000n);
  });

  it("answers 400 payload_invalid to a signed body that is not a Stripe event", async () => {
    const signed = signEvent(null, { secret, timestamp: now, payload: '{"hello":"world"}' });
    const response = await post(signed.payload, signed.header);
    expect(response.statusCode).toBe(400);
    expect(response.json().error.code).toBe("payload_invalid");
    const notJson = signEvent(null, { secret, timestamp: now, payload: "{not json" });
    expect((await post(notJson.payload, notJson.header)).json().error.code).toBe("payload_invalid");
    expect(ledger.calls).toHaveLength(0);
  });

  it("keeps its raw-body parser to itself: other routes still get parsed JSON", async () => {
    const response = await app.inject({ method: "POST", url: "/echo", payload: { a: 1 } });
    expect(response.json()).toEqual({ body: { a: 1 } });
  });
});

describe("POST /v1/webhooks/stripe: applying events", () => {
  it("applies a duplicated delivery once", async () => {
    const event = stripeEvents.intentSucceeded("evt_1", topUp);
    const first = await deliver(event);
    expect(first.statusCode).toBe(200);
    expect(first.json()).toEqual({ received: true, outcome: "applied" });
    const second = await deliver(event, { timestamp: now + 60 }); // Stripe's retry: new signature, same event
    expect(second.json()).toEqual({ received: true, outcome: "duplicate" });
    expect(ledger.calls).toHaveLength(1);
    expect(ledger.balance("cust_9")).toBe(1_000n);
  });

  it("handles out-of-order events: dispute before success, failure after success", async () => {
    const dispute = stripeEvents.disputeCreated("evt_d", {
      disputeId: "du_9",
      intentId: "pi_topup9",
      amount: 1_000,
    });
    expect((await deliver(dispute)).json()).toEqual({ received: true, outcome: "parked" });
    expect(ledger.balance("cust_9")).toBe(0n);
    expect((await deliver(stripeEvents.intentSucceeded("evt_s", topUp))).json().outcome).toBe("applied");
    expect((await deliver(stripeEvents.intentFailed("evt_f", topUp))).json().outcome).toBe("stale");
    expect(ledger.posted).toEqual(["received:pi_topup9", "dispute:du_9"]);
    expect(ledger.balance("cust_9")).toBe(0n); // disputed: never credited in the end
  });

  it("answers 500 when the settlement fails, so that Stripe retries, and applies the retry", async () => {
    ledger.failNext(1);
    const event = stripeEvents.intentSucceeded("evt_1", topUp);
    const failed = await deliver(event);
    expect(failed.statusCode).toBe(500);
    expect(failed.json().error.code).toBe("event_not_applied");
    expect(ledger.balance("cust_9")).toBe(0n);
    const retried = await deliver(event, { timestamp: now + 120 });
    expect(retried.statusCode).toBe(200);
    expect(ledger.balance("cust_9")).toBe(1_000n);
  });

  it("answers 200 ignored to events it does not handle", async () => {
    const response = await deliver(stripeEvents.other("evt_x", "customer.created"));
    expect(response.json()).toEqual({ received: true, outcome: "ignored", reason: "event_type_not_handled" });
  });
});

describe("top-up by card against stripe-mock", () => {
  it("lands in the customer's balance only after the success webhook", async () => {
    const rail = createFiatRail({
      stripe: createStripeClient({
        apiKey: "sk_test_switchyard",
        host: "127.0.0.1",
        port: inject("stripeMockPort"),
        protocol: "http",
        requestTimeoutMs: 5_000,
        networkRetriesMax: 0,
      }),
      store: createMemoryStripeObjectStore(),
      asset: assets.USD,
      feeSchedule: defaultFiatFeeSchedule,
      liquidity: "balance",
    });
    // The settlement asks the rail for a way to pay invoice inv_card_1 (a top-up of cust_card's account).
    const offer = await rail.receive({
      reference: "inv_card_1",
      amount: 1_000n,
      description: "top-up",
      expirySeconds: 3_600,
    });
    if (offer.status !== "offered") throw new Error(`refused: ${offer.message}`);
    expect(ledger.balance("inv_card_1")).toBe(0n); // the intent exists, no money yet

    // What Stripe sends once the card is charged: the intent with the metadata the rail wrote on it.
    const fields = {
      intentId: offer.railReference,
      amount: 1_000,
      paymentId: "inv_card_1",
      attemptId: "invoice",
      reference: "inv_card_1",
    };
    await deliver(stripeEvents.intentFailed("evt_card_f", fields)); // first card declined
    expect(ledger.balance("inv_card_1")).toBe(0n);
    await deliver(stripeEvents.intentSucceeded("evt_card_s", fields));
    expect(ledger.balance("inv_card_1")).toBe(1_000n);
    expect(ledger.calls.at(-1)).toMatchObject({
      kind: "received",
      reference: "inv_card_1",
      evidence: { rail: "fiat", pspId: offer.railReference },
    });
  });
});
