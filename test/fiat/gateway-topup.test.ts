// A card top-up through the whole gateway against stripe-mock: the invoice makes a PaymentIntent, and the
// customer's ledger balance moves only when Stripe's signed success webhook arrives — once, however often
// it is delivered; a bad signature changes nothing; a dispute takes the money back and a won one gives it back;
// each partial refund is announced, and a failed one is given back.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type App, createApp } from "../../gateway/app.ts";
import { apiClient } from "../support/api.ts";
import { testConfig } from "../support/config.ts";
import { type CardInvoice, openCardInvoice, paidCardInvoice } from "./card-invoice.ts";
import { deliverStripeEvent, stripeEvents, stripeMockEnv } from "./stripe-events.ts";

const secret = "whsec_gateway_topup_test";
let app: App;

beforeAll(async () => {
  app = await createApp(testConfig(stripeMockEnv(secret)));
});
afterAll(async () => {
  await app?.close();
});

const deliver = (event: unknown, options: { secret?: string; timestamp?: number } = {}) =>
  deliverStripeEvent(app, event, { ...options, secret: options.secret ?? secret });

async function available(accountId: string): Promise<string> {
  const response = await call("GET", `/v1/accounts/${accountId}/balance`);
  expect(response.status).toBe(200);
  return response.body.available;
}

const call = (method: "GET" | "POST", url: string, body?: unknown) => apiClient(app)(method, url, body);

// Each test tops up a customer account of its own (25.00 USD, the whole invoice), so that it passes in any order.
describe("a card top-up", () => {
  /** Stripe's dispute `disputeId` of the whole top-up. */
  const wholeDispute = (topUp: CardInvoice, disputeId: string) => ({
    disputeId,
    intentId: topUp.intentId,
    amount: 2500,
  });

  /** The invoice's reversal events in the outbox, oldest first. */
  const reversalEvents = async (invoiceId: string) =>
    await app.db.query<{ type: string; payload: Record<string, string> }>(
      `SELECT type, payload FROM outbox WHERE type IN ('invoice.reversed', 'invoice.reinstated')
         AND payload->>'invoice_id' = $1 ORDER BY id`,
      [invoiceId],
    );

  it("creates an invoice backed by a PaymentIntent, and credits nothing yet", async () => {
    const { created, accountId } = await openCardInvoice(app, "topup_created");
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({
      object: "invoice",
      status: "open",
      rail: "fiat",
      amount: "25.00",
      asset: "USD",
    });
    expect(created.body.instructions.payment_intent).toMatch(/^pi_/);
    expect(await available(accountId)).toBe("0.00");
  });

  it("does not credit on a failed charge", async () => {
    const topUp = await openCardInvoice(app, "topup_failed");
    const failed = stripeEvents.intentFailed("evt_fail_1", topUp.intent);
    expect((await deliver(failed)).status).toBe(200);
    expect(await available(topUp.accountId)).toBe("0.00");
    // The card may still pay it: the failure left the invoice to its PaymentIntent's success.
    const succeeded = stripeEvents.intentSucceeded("evt_ok_after_fail", topUp.intent);
    expect((await deliver(succeeded)).status).toBe(200);
    expect(await available(topUp.accountId)).toBe("25.00");
  });

  it("refuses a bad signature or an old timestamp with 400 and changes nothing", async () => {
    const topUp = await openCardInvoice(app, "topup_refused");
    const succeeded = stripeEvents.intentSucceeded("evt_ok_1", topUp.intent);
    const forged = await deliver(succeeded, { secret: "whsec_someone_else" });
    expect(forged.status).toBe(400);
    expect(forged.body.error.code).toBe("signature_invalid");
    const old = await deliver(succeeded, { timestamp: Math.floor(Date.now() / 1000) - 3_600 });
    expect(old.status).toBe(400);
    expect(old.body.error.code).toBe("timestamp_outside_tolerance");
    expect(await available(topUp.accountId)).toBe("0.00");
    // Nor was the event taken as seen: the same event, signed now with our secret, credits.
    expect((await deliver(succeeded)).status).toBe(200);
    expect(await available(topUp.accountId)).toBe("25.00");
  });

  it("credits the customer once when the success webhook arrives, however often it is delivered", async () => {
    const { accountId, invoiceId, intentId, intent } = await openCardInvoice(app, "topup_credited");
    const succeeded = stripeEvents.intentSucceeded("evt_ok_credited", intent);
    expect((await deliver(succeeded)).status).toBe(200);
    expect(await available(accountId)).toBe("25.00");
    expect((await deliver(succeeded)).status).toBe(200);
    const again = stripeEvents.intentSucceeded("evt_ok_credited_again", intent);
    expect((await deliver(again)).status).toBe(200);
    expect(await available(accountId)).toBe("25.00");
    const invoice = await call("GET", `/v1/invoices/${invoiceId}`);
    expect(invoice.body).toMatchObject({ status: "paid", received_amount: "25.00" });
    const [row] = await app.db.query<{ evidence: { rail: string; reference: string } }>(
      "SELECT evidence FROM ledger_transfers WHERE evidence->>'reference' = $1",
      [intentId],
    );
    expect(row?.evidence.rail).toBe("fiat");
  });

  it("takes the money back on a dispute", async () => {
    const topUp = await paidCardInvoice(app, "topup_disputed", secret);
    expect(await available(topUp.accountId)).toBe("25.00");
    const dispute = stripeEvents.disputeCreated("evt_dispute_1", wholeDispute(topUp, "dp_1"));
    expect((await deliver(dispute)).status).toBe(200);
    expect(await available(topUp.accountId)).toBe("0.00");
    expect((await deliver(dispute)).status).toBe(200);
    expect(await available(topUp.accountId)).toBe("0.00");
    expect((await call("GET", `/v1/invoices/${topUp.invoiceId}`)).body.status).toBe("reversed");
  });

  it("gives the money back when the dispute is won, once", async () => {
    const topUp = await paidCardInvoice(app, "topup_dispute_won", secret);
    const { accountId, invoiceId } = topUp;
    const dispute = wholeDispute(topUp, "dp_won");
    expect((await deliver(stripeEvents.disputeCreated("evt_dispute_to_win", dispute))).status).toBe(200);
    expect(await available(accountId)).toBe("0.00");
    const won = stripeEvents.disputeFundsReinstated("evt_dispute_won", dispute);
    expect((await deliver(won)).status).toBe(200);
    expect(await available(accountId)).toBe("25.00");
    expect((await deliver(won)).status).toBe(200);
    const again = stripeEvents.disputeFundsReinstated("evt_dispute_won_2", dispute);
    expect((await deliver(again)).status).toBe(200);
    expect(await available(accountId)).toBe("25.00");
    expect((await call("GET", `/v1/invoices/${invoiceId}`)).body.status).toBe("paid");
    expect(await reversalEvents(invoiceId)).toEqual([
      {
        type: "invoice.reversed",
        payload: {
          invoice_id: invoiceId,
          reversal: "dispute:dp_won",
          asset: "USD",
          amount: "2500",
          shortfall: "0",
          invoice_status: "reversed",
        },
      },
      {
        type: "invoice.reinstated",
        payload: {
          invoice_id: invoiceId,
          reversal: "dispute:dp_won",
          asset: "USD",
          amount: "2500",
          shortfall_collected: "0",
          net: "2500",
          invoice_status: "paid",
        },
      },
    ]);
  });

  it("gives the money back when the won dispute carries the merchant's evidence, past the API's body limit (it was refused 413 at every delivery)", async () => {
    const topUp = await paidCardInvoice(app, "topup_dispute_evidence", secret);
    const dispute = wholeDispute(topUp, "dp_evidence");
    expect((await deliver(stripeEvents.disputeCreated("evt_dispute_evidence", dispute))).status).toBe(200);
    expect(await available(topUp.accountId)).toBe("0.00");
    const won = stripeEvents.disputeFundsReinstated("evt_dispute_evidence_won", dispute);
    // Stripe allows 150,000 characters of text evidence in all; the Dispute object carries it.
    const object = won.data.object as Record<string, unknown>;
    object.evidence = { uncategorized_text: "é".repeat(150_000) };
    expect(Buffer.byteLength(JSON.stringify(won))).toBeGreaterThan(64 * 1024);
    expect((await deliver(won)).status).toBe(200);
    expect(await available(topUp.accountId)).toBe("25.00");
  });

  it("announces each partial refund, and gives back one that failed", async () => {
    const { accountId, invoiceId, intentId } = await paidCardInvoice(app, "topup_refunded", secret);
    const first = { refundId: "re_part_1", intentId, amount: 500 };
    const second = { refundId: "re_part_2", intentId, amount: 300 };
    expect((await deliver(stripeEvents.refundCreated("evt_part_1", first))).status).toBe(200);
    expect((await deliver(stripeEvents.refundCreated("evt_part_2", second))).status).toBe(200);
    expect(await available(accountId)).toBe("17.00");
    expect((await reversalEvents(invoiceId)).map((event) => event.payload.reversal)).toEqual([
      "refund:re_part_1",
      "refund:re_part_2",
    ]);
    const failed = await deliver(stripeEvents.refundFailed("evt_part_2_failed", second));
    expect(failed.body).toMatchObject({ outcome: "applied" });
    expect(await available(accountId)).toBe("20.00");
    // the first refund still stands
    expect((await call("GET", `/v1/invoices/${invoiceId}`)).body.status).toBe("reversed");
    // the failed refund's creation, redelivered late, takes nothing
    expect((await deliver(stripeEvents.refundCreated("evt_part_2_late", second))).body).toMatchObject({
      outcome: "withdrawn",
    });
    expect(await available(accountId)).toBe("20.00");
    const [given] = await app.db.query<{ amount: bigint }>(
      "SELECT amount FROM ledger_transfers WHERE code = 5 AND evidence->>'reference' = 're_part_2'",
    );
    expect(given?.amount).toBe(300n);
  });
});

describe("the router and the fiat rail", () => {
  const payout = (amount: string) => ({
    amount,
    asset: "USD",
    destination: { type: "stripe_account", account: "acct_1Merchant" },
  });

  it("never picks the card rail below its minimum", async () => {
    const quote = await call("POST", "/v1/quotes", payout("0.05"));
    expect(quote.status).toBe(422);
    expect(quote.body.error.code).toBe("no_route");
    expect(quote.body.error.route.excluded).toContainEqual(
      expect.objectContaining({ rail: "fiat", reason: "below_minimum" }),
    );
  });

  it("prices a payout to a connected account with the rail's fee schedule", async () => {
    const quote = await call("POST", "/v1/quotes", payout("10.00"));
    expect(quote.status).toBe(201);
    expect(quote.body.rail).toBe("fiat");
    // 2.9 % + 30 ¢ of $10.00 = 59 ¢, in USD micro-units
    expect(quote.body.route.candidates[0].cost.provider_usd).toBe("0.590000");
  });
});
