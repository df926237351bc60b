// Refunds of a card invoice through the whole gateway against stripe-mock: POST /v1/refunds refunds the invoice's
// PaymentIntent (a Stripe refund, its id the refund's evidence) and takes the amount from the account once — Stripe's
// own webhook for that refund, delivered after, takes nothing more; a refund Stripe fails later gives the money back
// and frees the amount; a refund made in Stripe's dashboard counts as refunded (the rest refundable, never more; a
// dispute still refuses); never more than was paid; bad input refused before Stripe is asked.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type App, createApp } from "../../gateway/app.ts";
import { apiClient } from "../support/api.ts";
import { wellFormedInvoice } from "../support/bolt11.ts";
import { testConfig } from "../support/config.ts";
import { type CardInvoice, openCardInvoice, paidCardInvoice, payCardInvoice } from "./card-invoice.ts";
import { deliverStripeEvent, stripeEvents, stripeMockEnv } from "./stripe-events.ts";

const secret = "whsec_gateway_refunds_test";
let app: App;

beforeAll(async () => {
  app = await createApp(testConfig(stripeMockEnv(secret)));
});
afterAll(async () => {
  await app?.close();
});

const call = (method: "GET" | "POST", url: string, body?: unknown) => apiClient(app)(method, url, body);

const deliver = (event: unknown) => deliverStripeEvent(app, event, { secret });

/** The customer account's posted balance in cents, from the ledger. */
async function posted(accountId: string): Promise<bigint> {
  const [account] = await app.db.query<{ ledger_account_id: bigint }>(
    "SELECT ledger_account_id FROM accounts WHERE id = $1",
    [accountId],
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

// Each test refunds a paid invoice of 25.00 into a customer account of its own, so that it passes in any order.
describe("refunds of a card invoice", () => {
  /** A paid invoice of 25.00 (its own account) and the answer to a refund of 10.00 of it through Stripe. */
  async function partlyRefunded(name: string) {
    const invoice = await paidCardInvoice(app, name, secret);
    const response = await call("POST", "/v1/refunds", {
      invoice: invoice.invoiceId,
      amount: "10.00",
      reason: "requested_by_customer",
    });
    expect(response.status, JSON.stringify(response.body)).toBe(201);
    const refundId: string = response.body.id;
    const stripeRefundId: string = response.body.rail_reference;
    return { ...invoice, response, refundId, stripeRefundId };
  }

  it("has a paid invoice of 25.00 to refund", async () => {
    const invoice = await openCardInvoice(app, "refunds_early");
    // Not paid yet: nothing to refund.
    const early = await call("POST", "/v1/refunds", { invoice: invoice.invoiceId });
    expect(early.status).toBe(409);
    expect(early.body.error.code).toBe("invoice_not_paid");
    await payCardInvoice(app, invoice, secret);
    expect(await posted(invoice.accountId)).toBe(2500n);
  });

  it("refunds part of it through Stripe, taking it from the account once", async () => {
    const { accountId, invoiceId, response, refundId, stripeRefundId } = await partlyRefunded("refunds_part");
    expect(response.status).toBe(201);
    expect(response.body).toMatchObject({
      object: "refund",
      status: "succeeded",
      amount: "10.00",
      asset: "USD",
      invoice: invoiceId,
      payment: null,
      account: accountId,
      rail: "fiat",
      rail_reference: expect.stringMatching(/^re_/),
      evidence: { rail: "fiat", psp_id: expect.stringMatching(/^re_/) },
      fee: "0.00",
    });
    expect(await posted(accountId)).toBe(1500n);
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

  /** Stripe's refund.created for the refund of 10.00 that the API made (the webhook Stripe sends after it). */
  const refundAnnounced = (eventId: string, refunded: { stripeRefundId: string; intentId: string }) =>
    stripeEvents.refundCreated(eventId, {
      refundId: refunded.stripeRefundId,
      intentId: refunded.intentId,
      amount: 1000,
    });

  it("takes nothing more when Stripe's webhook for that refund arrives", async () => {
    // Neither the refund nor its webhook reverses an invoice (other tests' reversals may be there before).
    const reversals = () => app.db.query("SELECT payload FROM outbox WHERE type = 'invoice.reversed'");
    const reversalsBefore = await reversals();
    const refunded = await partlyRefunded("refunds_announced");
    const created = refundAnnounced("evt_refunds_created", refunded);
    expect((await deliver(created)).status).toBe(200);
    expect((await deliver(created)).status).toBe(200);
    expect(await posted(refunded.accountId)).toBe(1500n);
    const invoice = await call("GET", `/v1/invoices/${refunded.invoiceId}`);
    expect(invoice.body.status).toBe("paid");
    expect(await reversals()).toEqual(reversalsBefore);
  });

  it("never refunds more than was paid", async () => {
    const { accountId, invoiceId } = await partlyRefunded("refunds_over");
    const transfers = await app.db.query("SELECT count(*) FROM ledger_transfers");
    const objects = await app.db.query("SELECT count(*) FROM fiat_stripe_objects");
    const refunds = await app.db.query("SELECT count(*) FROM refunds");
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
    // Nor is a refund recorded for either: what is left to refund is still 15.00.
    expect(await app.db.query("SELECT count(*) FROM refunds")).toEqual(refunds);
    expect(await posted(accountId)).toBe(1500n);
  });

  it("refunds the rest of an invoice refunded in part from Stripe's dashboard, and never more", async () => {
    const { accountId, invoiceId, intentId } = await paidCardInvoice(app, "refunds_dashboard_first", secret);
    // 10.00 refunded from Stripe's dashboard, not through the API: its webhook takes it from the account.
    const dashboard = stripeEvents.refundCreated("evt_refunds_dashboard_first", {
      refundId: "re_dashboard_first",
      intentId,
      amount: 1000,
    });
    expect((await deliver(dashboard)).status).toBe(200);
    expect(await posted(accountId)).toBe(1500n);
    // Before: refused 409 invoice_not_paid, the dashboard's refund taken for a dispute; 15.00 is left to refund.
    const over = await call("POST", "/v1/refunds", { invoice: invoiceId, amount: "15.01" });
    expect(over.status).toBe(409);
    expect(over.body.error.code).toBe("refund_exceeds_remaining");
    const rest = await call("POST", "/v1/refunds", { invoice: invoiceId });
    expect(rest.status, JSON.stringify(rest.body)).toBe(201);
    expect(rest.body).toMatchObject({ status: "succeeded", amount: "15.00" });
    expect(await posted(accountId)).toBe(0n);
    // Its own webhook takes nothing more; nothing is left to refund.
    const announced = stripeEvents.refundCreated("evt_refunds_dashboard_first_rest", {
      refundId: rest.body.rail_reference,
      intentId,
      amount: 1500,
    });
    expect((await deliver(announced)).status).toBe(200);
    expect(await posted(accountId)).toBe(0n);
    const more = await call("POST", "/v1/refunds", { invoice: invoiceId, amount: "0.01" });
    expect(more.status).toBe(409);
    expect(more.body.error.code).toBe("refund_exceeds_remaining");
  });

  it("takes the rest refunded from Stripe's dashboard after an API refund once, and refunds nothing more", async () => {
    const refunded = await partlyRefunded("refunds_dashboard_after");
    const { accountId, invoiceId, intentId } = refunded;
    expect((await deliver(refundAnnounced("evt_refunds_dashboard_after_api", refunded))).status).toBe(200);
    const dashboard = stripeEvents.refundCreated("evt_refunds_dashboard_after", {
      refundId: "re_dashboard_after",
      intentId,
      amount: 1500,
    });
    expect((await deliver(dashboard)).status).toBe(200);
    expect((await deliver(dashboard)).status).toBe(200);
    expect(await posted(accountId)).toBe(0n);
    const more = await call("POST", "/v1/refunds", { invoice: invoiceId, amount: "0.01" });
    expect(more.status).toBe(409);
    expect(more.body.error.code).toBe("refund_exceeds_remaining");
    expect(await posted(accountId)).toBe(0n);
  });

  it("still refuses to refund an invoice whose payment is disputed (409 invoice_not_paid)", async () => {
    const { accountId, invoiceId, intentId } = await paidCardInvoice(app, "refunds_disputed", secret);
    const dispute = stripeEvents.disputeCreated("evt_refunds_disputed", {
      disputeId: "dp_refunds_disputed",
      intentId,
      amount: 1000,
    });
    expect((await deliver(dispute)).status).toBe(200);
    expect(await posted(accountId)).toBe(1500n);
    const refused = await call("POST", "/v1/refunds", { invoice: invoiceId, amount: "1.00" });
    expect(refused.status).toBe(409);
    expect(refused.body.error.code).toBe("invoice_not_paid");
    expect(await posted(accountId)).toBe(1500n);
  });

  it("gives the money back when Stripe fails the refund later, and the amount can be refunded again", async () => {
    const refunded = await partlyRefunded("refunds_failed");
    const { accountId, invoiceId, intentId, refundId, stripeRefundId } = refunded;
    // Stripe announced the refund first, as it does.
    expect((await deliver(refundAnnounced("evt_refunds_failed_created", refunded))).status).toBe(200);
    const failed = stripeEvents.refundFailed("evt_refunds_failed", {
      refundId: stripeRefundId,
      intentId,
      amount: 1000,
    });
    expect((await deliver(failed)).status).toBe(200);
    expect(await posted(accountId)).toBe(2500n);
    const read = await call("GET", `/v1/refunds/${refundId}`);
    expect(read.body).toMatchObject({ status: "failed", failure: { code: "rejected" } });
    expect(await eventsOf(refundId)).toEqual(["refund.created", "refund.succeeded", "refund.failed"]);
    // Delivered again: nothing more.
    expect((await deliver(failed)).status).toBe(200);
    expect(await posted(accountId)).toBe(2500n);

    // All of it is refundable again: without an amount, the rest (25.00).
    const all = await call("POST", "/v1/refunds", { invoice: invoiceId });
    expect(all.status).toBe(201);
    expect(all.body).toMatchObject({ status: "succeeded", amount: "25.00" });
    expect(await posted(accountId)).toBe(0n);
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

// Each test has an invoice of 25.00 into a customer account of its own, so that it passes in any order.
describe("money in that is not the invoice's", () => {
  const status = async (invoiceId: string) =>
    (await app.db.query<{ status: string }>("SELECT status FROM invoices WHERE id = $1", [invoiceId]))[0]!
      .status;

  /**
   * Stripe's events of money that names the invoice but is not its own (their ids `evt_<tag>_…`): a connected
   * account's PaymentIntent, another PaymentIntent of the platform's (`otherIntentId`), the invoice's own with nothing
   * received, and a dispute (`dp_<tag>`) of that other PaymentIntent.
   */
  function foreignMoney(tag: string, { invoiceId, intentId }: CardInvoice) {
    const naming = { paymentId: invoiceId, attemptId: "invoice", reference: invoiceId };
    const otherIntentId = `pi_not_offered_${tag}`;
    return {
      otherIntentId,
      connected: {
        ...stripeEvents.intentSucceeded(`evt_${tag}_connected`, { ...naming, intentId, amount: 100 }),
        account: "acct_1Connected",
      },
      other: stripeEvents.intentSucceeded(`evt_${tag}_other`, {
        ...naming,
        intentId: otherIntentId,
        amount: 100,
      }),
      empty: stripeEvents.intentSucceeded(`evt_${tag}_empty`, { ...naming, intentId, amount: 0 }),
      dispute: stripeEvents.disputeCreated(`evt_${tag}_dispute`, {
        disputeId: `dp_${tag}`,
        intentId: otherIntentId,
        amount: 100,
      }),
    };
  }

  it("is not credited: a connected account's PaymentIntent, another PaymentIntent naming the invoice, nothing received", async () => {
    const invoice = await openCardInvoice(app, "foreign_refused");
    const { accountId, invoiceId } = invoice;
    const foreign = foreignMoney("foreign", invoice);
    const before = await posted(accountId);
    // A connected account's own PaymentIntent, whose creator copied the invoice's metadata.
    expect((await deliver(foreign.connected)).body).toMatchObject({
      outcome: "ignored",
      reason: "connected_account",
    });
    // Another PaymentIntent of the platform's naming the invoice. Before: it paid the invoice with 1.00, and the
    // invoice's own 25.00 was then taken for a duplicate and never credited.
    expect((await deliver(foreign.other)).body).toMatchObject({ outcome: "not_ours" });
    // The invoice's own PaymentIntent, with nothing received.
    expect((await deliver(foreign.empty)).body).toMatchObject({
      outcome: "ignored",
      reason: "object_invalid",
    });
    expect(await status(invoiceId)).toBe("open");
    expect(await posted(accountId)).toBe(before);
    // A dispute of the other PaymentIntent takes nothing from the invoice's account.
    expect((await deliver(foreign.dispute)).status).toBe(200);
    expect(await posted(accountId)).toBe(before);
  });

  it("leaves the invoice to its own PaymentIntent, credited in full", async () => {
    // After the money that is not its own, as the test above delivers it.
    const invoice = await openCardInvoice(app, "foreign_then_own");
    const { accountId, invoiceId } = invoice;
    const foreign = foreignMoney("foreign_then_own", invoice);
    for (const event of [foreign.connected, foreign.other, foreign.empty, foreign.dispute])
      expect((await deliver(event)).status).toBe(200);
    const before = await posted(accountId);
    const paid = stripeEvents.intentSucceeded("evt_foreign_own", invoice.intent);
    expect((await deliver(paid)).body).toMatchObject({ outcome: "applied" });
    expect(await status(invoiceId)).toBe("paid");
    expect(await posted(accountId)).toBe(before + 2500n);
    // The other PaymentIntent's dispute, delivered again, still takes nothing.
    const again = stripeEvents.disputeCreated("evt_foreign_dispute_2", {
      disputeId: "dp_foreign_2",
      intentId: foreign.otherIntentId,
      amount: 100,
    });
    expect((await deliver(again)).status).toBe(200);
    expect(await posted(accountId)).toBe(before + 2500n);
  });

  it("applies a dispute while a refund of the invoice awaits Stripe's answer: only a refund's reversal waits for it", async () => {
    const { accountId, invoiceId, intentId } = await paidCardInvoice(
      app,
      "dispute_while_refund_pending",
      secret,
    );
    // A refund whose Stripe answer has not come yet (pending, no Stripe refund id): a reversal that may be its
    // webhook waits for the answer. Before, a dispute waited too: refused (event_not_applied) until the refund was
    // answered, for a day or more if Stripe kept failing, past Stripe's retries.
    await app.db.query(
      `INSERT INTO refunds (id, tenant_id, invoice_id, account_id, asset, amount, rail, status, hold_transfer_id)
       VALUES ('rfd_awaiting_answer', $1, $2, $3, 'USD', 100, 'fiat', 'pending', 987654321)`,
      [app.demo!.tenantId, invoiceId, accountId],
    );
    try {
      const before = await posted(accountId);
      const dispute = stripeEvents.disputeCreated("evt_dispute_while_refund_pending", {
        disputeId: "dp_while_refund_pending",
        intentId,
        amount: 300,
      });
      const answer = await deliver(dispute);
      expect(answer).toMatchObject({ status: 200, body: { outcome: "applied" } });
      expect(await posted(accountId)).toBe(before - 300n);
    } finally {
      await app.db.query("DELETE FROM refunds WHERE id = 'rfd_awaiting_answer'");
    }
  });
});
