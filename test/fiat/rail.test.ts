// The fiat rail against stripe-mock: PaymentIntents, Connect transfers, refunds, balance, health, and
// Stripe's errors translated into the rail's failure codes. stripe-mock keeps no state and does not
// replay idempotency keys, so "same payment and attempt → same intent" is the rail's own record by key;
// the key Stripe would replay on is checked on the wire.
import { beforeEach, describe, expect, inject, it } from "vitest";
import {
  createFiatRail,
  createMemoryStripeObjectStore,
  createMemoryStripeWebhookStore,
  createStripeClient,
  defaultFiatFeeSchedule,
  type FiatRail,
  idempotencyKeys,
  type StripeObjectStore,
  translateStripeError,
} from "../../adapters/fiat/index.ts";
import type { OutgoingAttempt, RailEvent } from "../../core/index.ts";
import { assets } from "../../core/index.ts";
import { freePort } from "../../scripts/lib/free-port.ts";
import { startCuttingProxy } from "./cutting-proxy.ts";
import { signEvent, stripeEvents } from "./stripe-events.ts";

const port = inject("stripeMockPort");

type Sent = { method: string; path: string; idempotencyKey: string | undefined };

function makeRail(
  options: { apiKey?: string; port?: number; store?: StripeObjectStore; webhookSecret?: string } = {},
) {
  const stripe = createStripeClient({
    apiKey: options.apiKey ?? "sk_test_switchyard",
    host: "127.0.0.1",
    port: options.port ?? port,
    protocol: "http",
    requestTimeoutMs: 5_000,
    networkRetriesMax: 0,
  });
  const sent: Sent[] = [];
  stripe.on("request", (event: { method: string; path: string; idempotency_key?: string }) =>
    sent.push({ method: event.method, path: event.path, idempotencyKey: event.idempotency_key }),
  );
  const store = options.store ?? createMemoryStripeObjectStore();
  const rail = createFiatRail({
    stripe,
    store,
    asset: assets.USD,
    feeSchedule: defaultFiatFeeSchedule,
    liquidity: "balance",
    snapshotRefreshMs: 60_000,
    ...(options.webhookSecret === undefined
      ? {}
      : {
          webhooks: {
            secrets: [options.webhookSecret],
            toleranceSeconds: 300,
            bodyLimitBytes: 1_000_000,
            store: createMemoryStripeWebhookStore(),
          },
        }),
  });
  return { rail, sent, store };
}

/** Every POST the rails sent went to `path` under `key`, more than once: the answer lost, then asked again. */
function expectEveryPostKeyed(sent: readonly Sent[], path: string, key: string) {
  const posts = sent.filter((request) => request.method === "POST");
  expect(posts.length).toBeGreaterThanOrEqual(2);
  for (const post of posts) expect(post).toEqual({ method: "POST", path, idempotencyKey: key });
}

const payout = (overrides: Partial<OutgoingAttempt> = {}): OutgoingAttempt => ({
  id: "att_out_1",
  paymentId: "pay_out_1",
  tenantId: "ten_test",
  amount: 10_000n,
  destination: { kind: "stripe_account", accountId: "acct_1Merchant" },
  feeMax: 1_000n,
  ...overrides,
});

describe("fiat rail: PaymentIntents (money in)", () => {
  let rail: FiatRail;
  let sent: Sent[];
  beforeEach(() => {
    ({ rail, sent } = makeRail());
  });

  it("creates a PaymentIntent with an idempotency key derived from the payment and the attempt", async () => {
    const result = await rail.createPaymentIntent({
      amount: 2_500n,
      paymentId: "pay_topup_1",
      attemptId: "att_1",
      reference: "cust_42",
    });
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.intent.intentId).toMatch(/^pi_/);
    expect(result.intent.amount).toBe(2_500n);
    expect(result.intent.clientSecret).toMatch(/_secret_/);
    expect(result.intent.created).toBe(true);
    expect(result.intent.idempotencyKey).toBe("switchyard:pi:pay_topup_1:att_1");
    expect(sent).toEqual([
      { method: "POST", path: "/v1/payment_intents", idempotencyKey: "switchyard:pi:pay_topup_1:att_1" },
    ]);
  });

  it("returns the same intent for the same payment and attempt, without creating a second", async () => {
    const params = { amount: 2_500n, paymentId: "pay_topup_2", attemptId: "att_1", reference: "cust_42" };
    const first = await rail.createPaymentIntent(params);
    const second = await rail.createPaymentIntent(params);
    expect(first.ok && second.ok).toBe(true);
    if (!first.ok || !second.ok) return;
    expect(second.intent.intentId).toBe(first.intent.intentId);
    expect(second.intent.created).toBe(false);
    expect(sent.filter((s) => s.method === "POST")).toHaveLength(1);
    expect(sent[1]).toMatchObject({ method: "GET", path: `/v1/payment_intents/${first.intent.intentId}` });
  });

  it("settles concurrent retries of one attempt on one intent", async () => {
    const params = { amount: 700n, paymentId: "pay_topup_3", attemptId: "att_1", reference: "cust_7" };
    const results = await Promise.all([1, 2, 3].map(() => rail.createPaymentIntent(params)));
    const ids = new Set(results.map((r) => (r.ok ? r.intent.intentId : "failed")));
    expect(ids.size).toBe(1);
    expect([...ids][0]).toMatch(/^pi_/);
    // Every request carried the same key: real Stripe would have created one intent.
    const posts = sent.filter((s) => s.method === "POST");
    expect(new Set(posts.map((s) => s.idempotencyKey))).toEqual(new Set(["switchyard:pi:pay_topup_3:att_1"]));
    // The calls that lost the race read the winner's intent back, client secret included.
    expect(results.every((r) => r.ok && r.intent.clientSecret !== null)).toBe(true);
    expect(results.filter((r) => r.ok && r.intent.created)).toHaveLength(1);
  });

  it("sends the same key from two gateway processes, and a new key for a new attempt", async () => {
    const other = makeRail();
    await rail.createPaymentIntent({ amount: 900n, paymentId: "pay_4", attemptId: "att_1", reference: "c" });
    await other.rail.createPaymentIntent({
      amount: 900n,
      paymentId: "pay_4",
      attemptId: "att_1",
      reference: "c",
    });
    await rail.createPaymentIntent({ amount: 900n, paymentId: "pay_4", attemptId: "att_2", reference: "c" });
    expect(sent.map((s) => s.idempotencyKey)).toEqual([
      idempotencyKeys.paymentIntent("pay_4", "att_1"),
      "switchyard:pi:pay_4:att_2",
    ]);
    expect(other.sent.map((s) => s.idempotencyKey)).toEqual(["switchyard:pi:pay_4:att_1"]);
  });

  it("refuses a reused attempt with another amount", async () => {
    await rail.createPaymentIntent({ amount: 900n, paymentId: "pay_5", attemptId: "att_1", reference: "c" });
    const again = await rail.createPaymentIntent({
      amount: 901n,
      paymentId: "pay_5",
      attemptId: "att_1",
      reference: "c",
    });
    expect(again).toMatchObject({ ok: false, failure: { code: "rejected", retryElsewhere: false } });
  });

  it("refuses amounts below the minimum charge and bad ids without calling Stripe", async () => {
    expect(
      await rail.createPaymentIntent({ amount: 5n, paymentId: "p", attemptId: "a", reference: "c" }),
    ).toMatchObject({
      ok: false,
      failure: { code: "below_minimum" },
    });
    expect(
      await rail.createPaymentIntent({ amount: 500n, paymentId: "p p", attemptId: "a", reference: "c" }),
    ).toMatchObject({ ok: false, failure: { code: "invalid_id" } });
    expect(sent).toHaveLength(0);
  });
});

describe("fiat rail: receive, money in for invoices (the Rail contract's receive)", () => {
  it("offers one PaymentIntent per invoice, the same one when asked again", async () => {
    const { rail, sent } = makeRail();
    const request = {
      reference: "inv_01JTOPUP",
      amount: 2_000n,
      description: "top-up",
      expirySeconds: 3_600,
    };
    const offer = await rail.receive(request);
    expect(rail).toMatchObject({ id: "fiat", asset: { code: "USD" } });
    if (offer.status !== "offered") throw new Error(`refused: ${offer.message}`);
    expect(offer).toEqual({
      status: "offered",
      railReference: expect.stringMatching(/^pi_/),
      expiresAtMs: null,
      instructions: {
        method: "stripe_payment_intent",
        payment_intent: offer.railReference,
        client_secret: expect.stringContaining("_secret_"),
      },
    });
    expect(await rail.receive(request)).toEqual(offer);
    expect(sent.filter((s) => s.method === "POST")).toEqual([
      { method: "POST", path: "/v1/payment_intents", idempotencyKey: "switchyard:pi:inv_01JTOPUP:invoice" },
    ]);
  });

  it("refuses, creating nothing, when there is nothing to pay (below the minimum charge, above the maximum)", async () => {
    const { rail, sent } = makeRail();
    expect(
      await rail.receive({ reference: "inv_small", amount: 5n, description: "", expirySeconds: 60 }),
    ).toMatchObject({ status: "refused", code: "rejected" });
    expect(
      await rail.receive({
        reference: "inv_big",
        amount: defaultFiatFeeSchedule.amountMax + 1n,
        description: "",
        expirySeconds: 60,
      }),
    ).toMatchObject({ status: "refused", code: "amount_too_large" });
    expect(sent.filter((s) => s.method === "POST")).toEqual([]);
  });
});

describe("fiat rail: Connect transfers (money out) and refunds", () => {
  let rail: FiatRail;
  let sent: Sent[];
  beforeEach(() => {
    ({ rail, sent } = makeRail());
  });

  it("pays a connected account with a transfer keyed by the attempt id", async () => {
    const outcome = await rail.execute(payout());
    // The fee booked is what Stripe took, from the transfer's balance transaction (stripe-mock's says 0), not
    // the schedule's estimate (30 ¢ + 2.9 %), which only prices the rail for the router.
    expect(outcome).toEqual({
      status: "succeeded",
      evidence: { rail: "fiat", pspId: expect.stringMatching(/^tr_/) },
      fee: 0n,
      feeDetail: { balanceTransaction: expect.stringMatching(/^txn_/) },
    });
    expect(sent).toEqual([
      { method: "POST", path: "/v1/transfers", idempotencyKey: "switchyard:tr:att_out_1" },
    ]);
  });

  it("never pays twice for one attempt: a second execute reports the first outcome", async () => {
    const first = await rail.execute(payout());
    const second = await rail.execute(payout());
    expect(second).toEqual(first);
    // One transfer made; the second execute only reads it back (with its balance transaction).
    expect(sent.filter((request) => request.method === "POST")).toHaveLength(1);
    expect(sent[1]).toMatchObject({ method: "GET", path: expect.stringMatching(/^\/v1\/transfers\/tr_/) });
  });

  it("leaves a transfer whose answer was lost in flight, and asks for it again under the same key", async () => {
    const proxy = await startCuttingProxy(
      port,
      (method, path) => method === "POST" && path === "/v1/transfers",
    );
    try {
      const store = createMemoryStripeObjectStore();
      const cut = makeRail({ port: proxy.port, store });
      // Before: failed rail_unavailable, and the payment's money was given back while the merchant was paid.
      expect(await cut.rail.execute(payout({ id: "att_out_lost" }))).toEqual({
        status: "in_flight",
        reference: "switchyard:tr:att_out_lost",
      });
      const again = makeRail({ store });
      expect(await again.rail.execute(payout({ id: "att_out_lost" }))).toMatchObject({
        status: "succeeded",
        evidence: { rail: "fiat", pspId: expect.stringMatching(/^tr_/) },
      });
      // The same key every time: Stripe answers the transfer it made the first time (stripe-mock, which keeps no
      // keys, makes another).
      expectEveryPostKeyed([...cut.sent, ...again.sent], "/v1/transfers", "switchyard:tr:att_out_lost");
    } finally {
      await proxy.close();
    }
  });

  it("asked again by recovery with nothing recorded, finds the transfer an earlier ask made instead of making another", async () => {
    // Its fee limit is below today's schedule: a transfer made before is reported all the same (a fee_above_max
    // would let another rail pay what was paid here).
    const attempt = payout({ id: "att_out_resumed", paymentId: "pay_out_resumed", feeMax: 0n });
    // Stripe's list of the payment's transfers holds the one the lost ask made (stripe-mock keeps none).
    const listed = {
      object: "list",
      url: "/v1/transfers",
      has_more: false,
      data: [
        {
          id: "tr_made_before",
          object: "transfer",
          amount: 10_000,
          currency: "usd",
          destination: "acct_1Merchant",
          transfer_group: "pay_out_resumed",
          metadata: { switchyard_payment_id: "pay_out_resumed", switchyard_attempt_id: "att_out_resumed" },
          balance_transaction: { id: "txn_made_before", object: "balance_transaction", fee: 0 },
        },
      ],
    };
    const proxy = await startCuttingProxy(
      port,
      () => false,
      (method, path) => (method === "GET" && path.startsWith("/v1/transfers?") ? listed : null),
    );
    try {
      const resumed = makeRail({ port: proxy.port });
      // Before: a second transfer was made under the same key, which Stripe replays only for a day.
      expect(await resumed.rail.execute({ ...attempt, resumed: true })).toEqual({
        status: "succeeded",
        evidence: { rail: "fiat", pspId: "tr_made_before" },
        fee: 0n,
        feeDetail: { balanceTransaction: "txn_made_before" },
      });
      expect(resumed.sent.filter((request) => request.method === "POST")).toEqual([]);
      // Recorded: asked again, it is read back, not looked for.
      expect(await resumed.rail.execute({ ...attempt, resumed: true })).toMatchObject({
        status: "succeeded",
      });
    } finally {
      await proxy.close();
    }
    // Nothing of it at Stripe (stripe-mock lists another attempt's transfer): it is made, under the attempt's key.
    const fresh = makeRail();
    expect(await fresh.rail.execute({ ...payout({ id: "att_out_resumed_2" }), resumed: true })).toMatchObject(
      {
        status: "succeeded",
      },
    );
    expect(fresh.sent.map((request) => `${request.method} ${request.path.split("?")[0]}`)).toEqual([
      "GET /v1/transfers",
      "POST /v1/transfers",
    ]);
  });

  it("books a transfer.created with the fee Stripe took for the transfer, as execute does", async () => {
    const secret = "whsec_rail_transfer_fee";
    const { rail } = makeRail({ webhookSecret: secret });
    const events: RailEvent[] = [];
    rail.onEvent(async (event) => {
      events.push(event);
    });
    const transfer = stripeEvents.transferCreated("evt_rail_transfer_fee", {
      transferId: "tr_rail_fee",
      amount: 10_000,
      attemptId: "att_out_fee",
      paymentId: "pay_out_fee",
    });
    const { payload, header } = signEvent(transfer, { secret, timestamp: Math.floor(Date.now() / 1000) });
    const answer = await rail.routes![0]!.handle({
      headers: { "stripe-signature": header },
      rawBody: Buffer.from(payload),
    });
    expect(answer.status).toBe(200);
    // Before: 320 (the card schedule's 30 ¢ + 2.9 %), while the transfer's balance transaction says 0.
    expect(events).toEqual([
      {
        kind: "attempt_succeeded",
        attemptId: "att_out_fee",
        evidence: { rail: "fiat", pspId: "tr_rail_fee" },
        fee: 0n,
      },
    ]);
  });

  it("refuses destinations it cannot reach, amounts under its minimum and fees above the attempt's maximum", async () => {
    expect(
      await rail.execute(payout({ destination: { kind: "bolt11", invoice: "lnbcrt1..." } })),
    ).toMatchObject({
      status: "failed",
      code: "unreachable_destination",
      retryElsewhere: true,
    });
    expect(await rail.execute(payout({ amount: 5n }))).toMatchObject({ status: "failed", code: "rejected" });
    expect(await rail.execute(payout({ feeMax: 319n }))).toMatchObject({
      status: "failed",
      code: "fee_above_max",
    });
    expect(sent).toHaveLength(0);
  });

  it("refuses a destination that is not a connected account id without calling Stripe", async () => {
    const outcome = await rail.execute(
      payout({ id: "att_bad", destination: { kind: "stripe_account", accountId: "" } }),
    );
    expect(outcome).toMatchObject({
      status: "failed",
      code: "unreachable_destination",
      retryElsewhere: true,
    });
    expect(sent).toHaveLength(0);
  });

  it("translates an error from Stripe's server into rejected, retryable elsewhere (nothing was created)", async () => {
    // stripe-mock validates requests against Stripe's OpenAPI spec: a transfer without destination is a 400.
    const stripe = createStripeClient({
      apiKey: "sk_test_switchyard",
      host: "127.0.0.1",
      port,
      protocol: "http",
      requestTimeoutMs: 5_000,
      networkRetriesMax: 0,
    });
    const error = await stripe.transfers
      .create({ amount: 100, currency: "usd" } as Parameters<typeof stripe.transfers.create>[0])
      .then(
        () => null,
        (thrown: unknown) => thrown,
      );
    expect(error).toMatchObject({ type: "StripeInvalidRequestError", statusCode: 400 });
    expect(translateStripeError(error)).toMatchObject({
      code: "rejected",
      retryElsewhere: true,
      stripeError: "StripeInvalidRequestError",
    });
  });

  it("throws for a refund whose answer was lost, so that it stays pending and is asked again under the same key", async () => {
    const proxy = await startCuttingProxy(
      port,
      (method, path) => method === "POST" && path === "/v1/refunds",
    );
    try {
      const store = createMemoryStripeObjectStore();
      const cut = makeRail({ port: proxy.port, store });
      const asked = { id: "rfd_lost", reference: "inv_lost", railReference: "pi_lost", amount: 500n };
      // Before: failed rail_unavailable, and the amount was free to refund again while Stripe had refunded it.
      await expect(cut.rail.refundReceived!(asked)).rejects.toMatchObject({ name: "FiatRailError" });
      const again = makeRail({ store });
      expect(await again.rail.refundReceived!(asked)).toMatchObject({
        evidence: { rail: "fiat", pspId: expect.stringMatching(/^re_/) },
      });
      expectEveryPostKeyed([...cut.sent, ...again.sent], "/v1/refunds", idempotencyKeys.refund("rfd_lost"));
    } finally {
      await proxy.close();
    }
  });

  it("looks for a refund an earlier ask made before making one: Stripe replays a key's answer for a day only", async () => {
    const listed = {
      object: "list",
      url: "/v1/refunds",
      has_more: false,
      data: [
        {
          id: "re_made_before",
          object: "refund",
          amount: 500,
          currency: "usd",
          payment_intent: "pi_refunded_before",
          status: "succeeded",
          metadata: { switchyard_payment_id: "inv_refunded_before", switchyard_refund_id: "rfd_made_before" },
        },
      ],
    };
    const proxy = await startCuttingProxy(
      port,
      () => false,
      (method, path) => (method === "GET" && path.startsWith("/v1/refunds?") ? listed : null),
    );
    try {
      const { rail, sent } = makeRail({ port: proxy.port });
      const asked = {
        id: "rfd_made_before",
        reference: "inv_refunded_before",
        railReference: "pi_refunded_before",
        amount: 500n,
      };
      // Before: a second refund was asked for (under the same key, which Stripe forgets after a day).
      expect(await rail.refundReceived!(asked)).toEqual({
        status: "succeeded",
        evidence: { rail: "fiat", pspId: "re_made_before" },
        fee: 0n,
      });
      expect(sent.filter((request) => request.method === "POST")).toEqual([]);
    } finally {
      await proxy.close();
    }
  });

  it("refunds a PaymentIntent once per refund id", async () => {
    const first = await rail.refund({
      refundId: "rf_1",
      paymentId: "pay_topup_1",
      paymentIntentId: "pi_123",
      amount: 500n,
    });
    expect(first).toMatchObject({ ok: true, refund: { amount: 500n, created: true } });
    if (!first.ok) return;
    expect(first.refund.stripeRefundId).toMatch(/^re_/);
    const second = await rail.refund({
      refundId: "rf_1",
      paymentId: "pay_topup_1",
      paymentIntentId: "pi_123",
      amount: 500n,
    });
    expect(second).toMatchObject({
      ok: true,
      refund: { stripeRefundId: first.refund.stripeRefundId, created: false },
    });
    // Stripe's refunds of the PaymentIntent looked at first (none of this id), then the one refund made.
    expect(sent.map((request) => `${request.method} ${request.path.split("?")[0]}`)).toEqual([
      "GET /v1/refunds",
      "POST /v1/refunds",
    ]);
    expect(sent[1]!.idempotencyKey).toBe("switchyard:re:rf_1");
  });
});

describe("fiat rail: balance, snapshot and health", () => {
  it("reads the balance and offers a snapshot with its fee schedule and minimum", async () => {
    const { rail } = makeRail();
    expect(await rail.balance()).toBe(0n); // stripe-mock's fixture balance
    expect(rail.snapshot().available).toBe(false); // not started
    await rail.start();
    const snapshot = rail.snapshot();
    await rail.stop();
    expect(snapshot).toMatchObject({
      rail: "fiat",
      kind: "fiat",
      asset: assets.USD,
      available: true,
      reaches: ["stripe_account"],
      amountMin: 50n,
      feePpm: 29_000n,
      feeFixed: 30n,
      liquidity: 0n,
      networkFeeMicroUsd: 0n,
    });
    expect(snapshot).not.toHaveProperty("unavailable");
    expect(rail.health()).toMatchObject({ healthy: true, lastError: null });
  });

  it("leaves success counts to the router's learning (one count per rail, kept by the payments service)", async () => {
    const { rail } = makeRail();
    await rail.execute(payout({ id: "att_ok" }));
    const { rail: unreachable } = makeRail({ port: await freePort() });
    await unreachable.execute(payout({ id: "att_ko" }));
    for (const snapshot of [rail.snapshot(), unreachable.snapshot()]) {
      expect(snapshot).not.toHaveProperty("successes");
      expect(snapshot).not.toHaveProperty("failures");
    }
  });

  it("is unavailable when Stripe cannot be reached, and lets another rail pay (a connection refused sent nothing)", async () => {
    const { rail } = makeRail({ port: await freePort() });
    expect(rail.snapshot().unavailable).toEqual({
      code: "not_started",
      message: "the fiat rail is not started",
    });
    await rail.start();
    expect(rail.snapshot().available).toBe(false);
    expect(rail.health()).toMatchObject({
      healthy: false,
      lastError: expect.stringContaining("StripeConnectionError"),
    });
    // Why, for the health routes: Stripe's error type, not its message (which may quote a refused key).
    expect(rail.snapshot().unavailable).toEqual({
      code: "provider_unreachable",
      message: "Stripe failed the rail's balance check (StripeConnectionError)",
    });
    expect(await rail.execute(payout())).toMatchObject({
      status: "failed",
      code: "rail_unavailable",
      retryElsewhere: true,
    });
    await expect(rail.balance()).rejects.toMatchObject({ name: "FiatRailError" });
    await rail.stop();
  });

  it("maps refused credentials to rail_unavailable, retryable elsewhere (nothing ran)", async () => {
    const { rail } = makeRail({ apiKey: "not_a_key" });
    expect(await rail.execute(payout())).toMatchObject({
      status: "failed",
      code: "rail_unavailable",
      retryElsewhere: true,
    });
    await rail.start();
    expect(rail.snapshot().available).toBe(false);
    await rail.stop();
  });
});
