// Refunds of a card invoice through the whole gateway against stripe-mock: POST /v1/refunds refunds the invoice's
// PaymentIntent (a Stripe refund, its id the refund's evidence) and takes the amount from the account once — Stripe's
// own webhook for that refund, delivered after, takes nothing more; a refund Stripe fails later gives the money back
// and frees the amount; never more than was paid; bad input refused before Stripe is asked.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { assets } from "../../core/index.ts";
import { createAccount } from "../../gateway/accounts/index.ts";
import { type App, createApp } from "../../gateway/app.ts";
import { apiClient } from "../support/api.ts";
import { wellFormedInvoice } from "../support/bolt11.ts";
import { testConfig } from "../support/config.ts";
import { deliverStripeEvent, stripeEvents, stripeMockEnv } from "./stripe-events.ts";

const secret = "whsec_gateway_refunds_test";
const customerId = "acct_card_refunds";
let app: App;

beforeAll(async () => {
  app = await createApp(testConfig(stripeMockEnv(secret)));
  await createAccount(
    { sql: app.db, ledger: app.ledger },
    {
      tenantId: app.demo!.tenantId,
      kind: "customer",
      asset: assets.USD,
      name: "card refunds",
      id: customerId,
    },
  );
});
afterAll(async () => {
  await app?.close();
});

const call = (method: "GET" | "POST", url: string, body?: unknown) => apiClient(app)(method, url, body);

const deliver = (event: unknown) => deliverStripeEvent(app, event, { secret });

/** The customer's posted balance in cents, from the ledger. */
async function posted(): Promise<bigint> {
  const [account] = await app.db.query<{ ledger_account_id: bigint }>(
    "SELECT ledger_account_id FROM accounts WHERE id = $1",
    [customerId],
  );
  const [found] = await app.ledger.lookupAccounts([BigInt(account!.ledger_account_id)]);
  return found!.creditsPosted - found!.debitsPosted;
}

async function eventsOf(refundId: string): Promise<string[]> {
  const rows = await app.db.query<{ type: string }>(
    "SELECT type FROM outbox WHERE payload->>'refund_id' = $1 ORDER BY id",
    [refundId],
  );
  return rows.map((row) => row.type);
}

describe("refunds of a card invoice", () => {
  let invoiceId: string;
  let intentId: string;

  it("has a paid invoice of 25.00 to refund", async () => {
    const created = await call("POST", "/v1/invoices", {
      account: customerId,
      amount: "25.00",
      asset: "USD",
      description: "an order",
    });
    expect(created.status).toBe(201);
    invoiceId = created.body.id;
    intentId = created.body.instructions.payment_intent;
    // Not paid yet: nothing to refund.
    const early = await call("POST", "/v1/refunds", { invoice: invoiceId });
    expect(early.status).toBe(409);
    expect(early.body.error.code).toBe("invoice_not_paid");
    const paid = stripeEvents.intentSucceeded("evt_refunds_paid", {
      intentId,
      amount: 2500,
      paymentId: invoiceId,
      attemptId: "invoice",
      reference: invoiceId,
    });
    expect((await deliver(paid)).status).toBe(200);
    expect(await posted()).toBe(2500n);
  });

  let refundId: string;
  let stripeRefundId: string;

  it("refunds part of it through Stripe, taking it from the account once", async () => {
    const response = await call("POST", "/v1/refunds", {
      invoice: invoiceId,
      amount: "10.00",
      reason: "requested_by_customer",
    });
    expect(response.status).toBe(201);
    expect(response.body).toMatchObject({
      object: "refund",
      status: "succeeded",
      amount: "10.00",
      asset: "USD",
      invoice: invoiceId,
      payment: null,
      account: customerId,
      rail: "fiat",
      rail_reference: expect.stringMatching(/^re_/),
      evidence: { rail: "fiat", psp_id: expect.stringMatching(/^re_/) },
      fee: "0.00",
    });
    refundId = response.body.id;
    stripeRefundId = response.body.rail_reference;
    expect(await posted()).toBe(1500n);
    expect(await eventsOf(refundId)).toEqual(["refund.created", "refund.succeeded"]);

    // Stripe's record of it carries our refund's id.
    const [recorded] = await app.db.query<{ object_id: string; amount: bigint }>(
      "SELECT object_id, amount FROM fiat_stripe_objects WHERE idempotency_key = $1",
      [`switchyard:re:${refundId}`],
    );
    expect(recorded).toMatchObject({ object_id: stripeRefundId });

    // The ledger's post names the Stripe refund and ours.
    const [post] = await app.db.query<{ evidence: { reference: string; detail: Record<string, string> } }>(
      "SELECT evidence FROM ledger_transfers WHERE code = 30 AND evidence->>'reference' = $1",
      [stripeRefundId],
    );
    expect(post?.evidence.detail.refund).toBe(refundId);
  });

  it("takes nothing more when Stripe's webhook for that refund arrives", async () => {
    const created = stripeEvents.refundCreated("evt_refunds_created", {
      refundId: stripeRefundId,
      intentId,
      amount: 1000,
    });
    expect((await deliver(created)).status).toBe(200);
    expect((await deliver(created)).status).toBe(200);
    expect(await posted()).toBe(1500n);
    const invoice = await call("GET", `/v1/invoices/${invoiceId}`);
    expect(invoice.body.status).toBe("paid");
    const reversals = await app.db.query("SELECT 1 FROM outbox WHERE type = 'invoice.reversed'");
    expect(reversals).toEqual([]);
  });

  it("never refunds more than was paid", async () => {
    const transfers = await app.db.query("SELECT count(*) FROM ledger_transfers");
    const objects = await app.db.query("SELECT count(*) FROM fiat_stripe_objects");
    const over = await call("POST", "/v1/refunds", { invoice: invoiceId, amount: "15.01" });
    expect(over.status).toBe(409);
    expect(over.body.error.code).toBe("refund_exceeds_remaining");
    const destination = await call("POST", "/v1/refunds", {
      invoice: invoiceId,
      destination: { type: "bolt11", invoice: wellFormedInvoice() },
    });
    expect(destination.status).toBe(400);
    expect(destination.body.error).toMatchObject({ code: "parameter_invalid", param: "destination" });
    expect(await app.db.query("SELECT count(*) FROM ledger_transfers")).toEqual(transfers);
    expect(await app.db.query("SELECT count(*) FROM fiat_stripe_objects")).toEqual(objects);
    expect(await posted()).toBe(1500n);
  });

  it("gives the money back when Stripe fails the refund later, and the amount can be refunded again", async () => {
    const failed = stripeEvents.refundFailed("evt_refunds_failed", {
      refundId: stripeRefundId,
      intentId,
      amount: 1000,
    });
    expect((await deliver(failed)).status).toBe(200);
    expect(await posted()).toBe(2500n);
    const read = await call("GET", `/v1/refunds/${refundId}`);
    expect(read.body).toMatchObject({ status: "failed", failure: { code: "rejected" } });
    expect(await eventsOf(refundId)).toEqual(["refund.created", "refund.succeeded", "refund.failed"]);
    // Delivered again: nothing more.
    expect((await deliver(failed)).status).toBe(200);
    expect(await posted()).toBe(2500n);

    // All of it is refundable again: without an amount, the rest (25.00).
    const all = await call("POST", "/v1/refunds", { invoice: invoiceId });
    expect(all.status).toBe(201);
    expect(all.body).toMatchObject({ status: "succeeded", amount: "25.00" });
    expect(await posted()).toBe(0n);
    const more = await call("POST", "/v1/refunds", { invoice: invoiceId, amount: "0.01" });
    expect(more.status).toBe(409);
    expect(more.body.error.code).toBe("refund_exceeds_remaining");

    const list = await call("GET", `/v1/refunds?invoice=${invoiceId}`);
    expect(list.body.data.map((r: { id: string; status: string }) => r.status)).toEqual([
      "succeeded",
      "failed",
    ]);
  });
});

describe("money in that is not the invoice's", () => {
  let invoiceId: string;
  let intentId: string;
  const status = async () =>
    (await app.db.query<{ status: string }>("SELECT status FROM invoices WHERE id = $1", [invoiceId]))[0]!
      .status;

  it("is not credited: a connected account's PaymentIntent, another PaymentIntent naming the invoice, nothing received", async () => {
    const created = await call("POST", "/v1/invoices", {
      account: customerId,
      amount: "25.00",
      asset: "USD",
    });
    invoiceId = created.body.id;
    intentId = created.body.instructions.payment_intent;
    const before = await posted();
    const naming = { paymentId: invoiceId, attemptId: "invoice", reference: invoiceId };
    // A connected account's own PaymentIntent, whose creator copied the invoice's metadata.
    const connected = {
      ...stripeEvents.intentSucceeded("evt_foreign_connected", { ...naming, intentId, amount: 100 }),
      account: "acct_1Connected",
    };
    expect((await deliver(connected)).body).toMatchObject({
      outcome: "ignored",
      reason: "connected_account",
    });
    // Another PaymentIntent of the platform's naming the invoice. Before: it paid the invoice with 1.00, and the
    // invoice's own 25.00 was then taken for a duplicate and never credited.
    const other = stripeEvents.intentSucceeded("evt_foreign_other", {
      ...naming,
      intentId: "pi_not_offered",
      amount: 100,
    });
    expect((await deliver(other)).body).toMatchObject({ outcome: "not_ours" });
    // The invoice's own PaymentIntent, with nothing received.
    const empty = stripeEvents.intentSucceeded("evt_foreign_empty", { ...naming, intentId, amount: 0 });
    expect((await deliver(empty)).body).toMatchObject({ outcome: "ignored", reason: "object_invalid" });
    expect(await status()).toBe("open");
    expect(await posted()).toBe(before);
    // A dispute of the other PaymentIntent takes nothing from the invoice's account.
    const dispute = stripeEvents.disputeCreated("evt_foreign_dispute", {
      disputeId: "dp_foreign",
      intentId: "pi_not_offered",
      amount: 100,
    });
    expect((await deliver(dispute)).status).toBe(200);
    expect(await posted()).toBe(before);
  });

  it("leaves the invoice to its own PaymentIntent, credited in full", async () => {
    const before = await posted();
    const paid = stripeEvents.intentSucceeded("evt_foreign_own", {
      intentId,
      amount: 2500,
      paymentId: invoiceId,
      attemptId: "invoice",
      reference: invoiceId,
    });
    expect((await deliver(paid)).body).toMatchObject({ outcome: "applied" });
    expect(await status()).toBe("paid");
    expect(await posted()).toBe(before + 2500n);
    // The other PaymentIntent's dispute, delivered again, still takes nothing.
    const again = stripeEvents.disputeCreated("evt_foreign_dispute_2", {
      disputeId: "dp_foreign_2",
      intentId: "pi_not_offered",
      amount: 100,
    });
    expect((await deliver(again)).status).toBe(200);
    expect(await posted()).toBe(before + 2500n);
  });
  it("applies a dispute while a refund of the invoice awaits Stripe's answer: only a refund's reversal waits for it", async () => {
    // A refund whose Stripe answer has not come yet (pending, no Stripe refund id): a reversal that may be its
    // webhook waits for the answer. Before, a dispute waited too: refused (event_not_applied) until the refund was
    // answered, for a day or more if Stripe kept failing, past Stripe's retries.
    await app.db.query(
      `INSERT INTO refunds (id, tenant_id, invoice_id, account_id, asset, amount, rail, status, hold_transfer_id)
       VALUES ('rfd_awaiting_answer', $1, $2, $3, 'USD', 100, 'fiat', 'pending', 987654321)`,
      [app.demo!.tenantId, invoiceId, customerId],
    );
    try {
      const before = await posted();
      const dispute = stripeEvents.disputeCreated("evt_dispute_while_refund_pending", {
        disputeId: "dp_while_refund_pending",
        intentId,
        amount: 300,
      });
      const answer = await deliver(dispute);
      expect(answer).toMatchObject({ status: 200, body: { outcome: "applied" } });
      expect(await posted()).toBe(before - 300n);
    } finally {
      await app.db.query("DELETE FROM refunds WHERE id = 'rfd_awaiting_answer'");
    }
  });
});
