// A dispute that arrives while a refund of the same card payment stands takes only what the account still holds; the
// rest is its shortfall, which Stripe took all the same. When the refund then fails, what it gives back settles that
// shortfall first and only the rest reaches the account, so that the rail's clearing account says what Stripe holds.
// Found by the re-fuzz (T6, Stripe delivering out of order): the whole refund went back to the account, which ended
// above what Stripe held. Two gateway processes on one PostgreSQL database, against stripe-mock, the webhooks through
// the real route.
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { assets } from "../../core/index.ts";
import { createAccount } from "../../gateway/accounts/index.ts";
import { type App, createApp } from "../../gateway/app.ts";
import { apiClient } from "../support/api.ts";
import { testConfig } from "../support/config.ts";
import { createTestDatabase } from "../support/postgres.ts";
import { deliverStripeEvent, stripeEvents, stripeMockEnv } from "./stripe-events.ts";

const secret = "whsec_reversal_shortfall_test";
let a: App;
let b: App;

beforeAll(async () => {
  const env = {
    ...stripeMockEnv(secret),
    DATABASE_URL: await createTestDatabase(inject("postgresUrl"), "fiat_shortfall"),
  };
  a = await createApp(testConfig(env));
  b = await createApp(testConfig(env));
});
afterAll(async () => {
  await a?.close();
  await b?.close();
});

const deliver = (app: App, event: unknown) => deliverStripeEvent(app, event, { secret });

const call = (method: "GET" | "POST", url: string, body?: unknown) => apiClient(a)(method, url, body);

/** A ledger account's balance: credits less debits (a tenant's), or debits less credits (`debit-normal`). */
async function balanceOf(ledgerAccountId: bigint, normal: "credit" | "debit"): Promise<bigint> {
  const [found] = await a.ledger.lookupAccounts([ledgerAccountId]);
  const credit = found!.creditsPosted - found!.debitsPosted;
  return normal === "credit" ? credit : -credit;
}

async function ledgerAccountOf(where: string, params: unknown[]): Promise<bigint> {
  const [row] = await a.db.query<{ ledger_account_id: bigint }>(
    `SELECT ledger_account_id FROM accounts WHERE ${where}`,
    params,
  );
  return BigInt(row!.ledger_account_id);
}

/** What the rail's clearing account says Stripe holds, in cents. */
async function clearing(): Promise<bigint> {
  const id = await ledgerAccountOf("kind = 'clearing' AND rail = 'fiat' AND asset = 'USD'", []);
  return await balanceOf(id, "debit");
}

type Shortfall = { reversal_key: string; account_id: string; amount: bigint; collected: bigint };

async function shortfallsOf(invoiceId: string): Promise<Shortfall[]> {
  return await a.db.query<Shortfall>(
    `SELECT reversal_key, account_id, amount, collected FROM reversal_shortfalls WHERE invoice_id = $1
     ORDER BY reversal_key, account_id`,
    [invoiceId],
  );
}

/**
 * The invoice's events that move its account's balance after the payment, in order, each as
 * `type amount shortfall_collected net` (`-` for a field the event does not carry).
 */
async function balanceEventsOf(invoiceId: string): Promise<string[]> {
  const rows = await a.db.query<{ type: string; payload: Record<string, string | undefined> }>(
    `SELECT type, payload FROM outbox WHERE payload->>'invoice_id' = $1
       AND type IN ('invoice.reversed', 'invoice.reinstated', 'refund.succeeded', 'refund.failed') ORDER BY id`,
    [invoiceId],
  );
  return rows.map(({ type, payload }) =>
    [type, payload.amount, payload.shortfall_collected, payload.net].map((field) => field ?? "-").join(" "),
  );
}

/** A customer account of its own, and a paid card invoice of 25.00 into it. */
async function paidInvoice(name: string) {
  const accountId = `acct_${name}`;
  await createAccount(
    { sql: a.db, ledger: a.ledger },
    { tenantId: a.demo!.tenantId, kind: "customer", asset: assets.USD, name, id: accountId },
  );
  const created = await call("POST", "/v1/invoices", {
    account: accountId,
    amount: "25.00",
    asset: "USD",
    description: name,
  });
  expect(created.status).toBe(201);
  const invoiceId: string = created.body.id;
  const intentId: string = created.body.instructions.payment_intent;
  const paid = stripeEvents.intentSucceeded(`evt_${name}_paid`, {
    intentId,
    amount: 2500,
    paymentId: invoiceId,
    attemptId: "invoice",
    reference: invoiceId,
  });
  expect((await deliver(a, paid)).status).toBe(200);
  const account = await ledgerAccountOf("id = $1", [accountId]);
  const posted = () => balanceOf(account, "credit");
  expect(await posted()).toBe(2500n);
  return { accountId, invoiceId, intentId, posted };
}

/** A refund through the API (Stripe, here stripe-mock, answers it succeeded); its Stripe refund id. */
async function refund(invoiceId: string, amount: string): Promise<{ id: string; stripeRefundId: string }> {
  const response = await call("POST", "/v1/refunds", { invoice: invoiceId, amount });
  expect(response.status).toBe(201);
  expect(response.body.status).toBe("succeeded");
  return { id: response.body.id, stripeRefundId: response.body.rail_reference };
}

describe("a dispute while a refund stands, and the refund fails", () => {
  it("settles the dispute's shortfall first: the account gets only the rest, the clearing account says what Stripe holds", async () => {
    const before = await clearing();
    const { accountId, invoiceId, intentId, posted } = await paidInvoice("shortfall_refund_failed");
    const refunded = await refund(invoiceId, "10.00");
    expect(await posted()).toBe(1500n);
    // Stripe takes the whole 25.00 for the dispute; the account holds 15.00 of it.
    const dispute = { disputeId: "dp_shortfall", intentId, amount: 2500 };
    expect((await deliver(a, stripeEvents.disputeCreated("evt_shortfall_dispute", dispute))).status).toBe(
      200,
    );
    expect(await posted()).toBe(0n);
    // 25.00 in, 10.00 refunded, 15.00 taken: the ledger says Stripe holds nothing of the payment, while Stripe is
    // 10.00 short of it. That is the dispute's shortfall, owed by the account.
    expect(await clearing()).toBe(before);

    // Stripe fails the refund: its 10.00 is back at Stripe, which took 25.00 for the dispute: it holds nothing of
    // the payment. Delivered to both processes at once, as refund.failed and as refund.updated: one give-back.
    const failed = { refundId: refunded.stripeRefundId, intentId, amount: 1000 };
    const answers = await Promise.all([
      deliver(a, stripeEvents.refundFailed("evt_shortfall_refund_failed", failed)),
      deliver(b, stripeEvents.refundFailed("evt_shortfall_refund_failed", failed)),
      deliver(b, {
        ...stripeEvents.refundFailed("evt_shortfall_refund_updated", failed),
        type: "refund.updated",
      }),
    ]);
    expect(answers.map((answer) => answer.status)).toEqual([200, 200, 200]);
    expect(await posted()).toBe(0n);
    expect(await clearing()).toBe(before);
    expect((await call("GET", `/v1/refunds/${refunded.id}`)).body.status).toBe("failed");
    // The shortfall is recorded with the dispute, and collected once.
    expect(await shortfallsOf(invoiceId)).toEqual([
      { reversal_key: "dispute:dp_shortfall", account_id: accountId, amount: 1000n, collected: 1000n },
    ]);

    // Redelivered later, to either process: nothing more.
    expect((await deliver(b, stripeEvents.refundFailed("evt_shortfall_refund_failed", failed))).status).toBe(
      200,
    );
    expect(
      (await deliver(a, stripeEvents.refundFailed("evt_shortfall_refund_failed_2", failed))).status,
    ).toBe(200);
    expect(await posted()).toBe(0n);
    expect(await clearing()).toBe(before);
    // The refund's failure no longer says the amount is back on the account: it went to the shortfall.
    expect((await call("GET", `/v1/refunds/${refunded.id}`)).body.failure.message).toContain(
      "less what settles the shortfalls",
    );

    // The dispute won: Stripe gives back all 25.00; so does the ledger — what the dispute took and what it collected.
    const won = stripeEvents.disputeFundsReinstated("evt_shortfall_dispute_won", dispute);
    expect((await deliver(b, won)).status).toBe(200);
    expect((await deliver(a, won)).status).toBe(200);
    expect(await posted()).toBe(2500n);
    expect(await clearing()).toBe(before + 2500n);
    // Mirrored from the events, once each, the balance is the ledger's at every step: 25.00 − 10.00 − 15.00
    // + (10.00 − 10.00 collected) + 25.00 (all the dispute took, and what was collected for it).
    expect(await balanceEventsOf(invoiceId)).toEqual([
      "refund.succeeded 1000 - -",
      "invoice.reversed 1500 - -",
      "refund.failed 1000 1000 0",
      "invoice.reinstated 2500 0 2500",
    ]);
  });

  it("settles it too when the refund was made at Stripe, not through the gateway", async () => {
    const before = await clearing();
    const { accountId, invoiceId, intentId, posted } = await paidInvoice("shortfall_stripe_refund");
    // A refund made in Stripe's dashboard reaches the gateway as a reversal of the invoice of its own.
    const refunded = { refundId: "re_made_at_stripe", intentId, amount: 1000 };
    expect((await deliver(a, stripeEvents.refundCreated("evt_stripe_refund", refunded))).status).toBe(200);
    expect(await posted()).toBe(1500n);
    const dispute = { disputeId: "dp_after_stripe_refund", intentId, amount: 2500 };
    expect((await deliver(b, stripeEvents.disputeCreated("evt_after_stripe_refund", dispute))).status).toBe(
      200,
    );
    expect(await posted()).toBe(0n);

    const failed = stripeEvents.refundFailed("evt_stripe_refund_failed", refunded);
    const answers = await Promise.all([deliver(a, failed), deliver(b, failed)]);
    expect(answers.map((answer) => answer.status)).toEqual([200, 200]);
    expect(await posted()).toBe(0n);
    expect(await clearing()).toBe(before);
    expect(await shortfallsOf(invoiceId)).toEqual([
      {
        reversal_key: "dispute:dp_after_stripe_refund",
        account_id: accountId,
        amount: 1000n,
        collected: 1000n,
      },
    ]);
    expect((await deliver(b, stripeEvents.refundFailed("evt_stripe_refund_failed_2", refunded))).status).toBe(
      200,
    );
    expect(await posted()).toBe(0n);

    const won = stripeEvents.disputeFundsReinstated("evt_after_stripe_refund_won", dispute);
    expect((await deliver(a, won)).status).toBe(200);
    expect(await posted()).toBe(2500n);
    expect(await clearing()).toBe(before + 2500n);
    // The refund made at Stripe is a reversal of its own: its give-back says it collected all it gave back.
    expect(await balanceEventsOf(invoiceId)).toEqual([
      "invoice.reversed 1000 - -",
      "invoice.reversed 1500 - -",
      "invoice.reinstated 1000 1000 0",
      "invoice.reinstated 2500 0 2500",
    ]);
  });

  it("changes nothing when the dispute took all it asked: the failed refund goes back to the account whole", async () => {
    const before = await clearing();
    const { invoiceId, intentId, posted } = await paidInvoice("no_shortfall");
    const refunded = await refund(invoiceId, "10.00");
    // A dispute of what was not refunded: the account holds all of it.
    const dispute = { disputeId: "dp_no_shortfall", intentId, amount: 1500 };
    expect((await deliver(a, stripeEvents.disputeCreated("evt_no_shortfall_dispute", dispute))).status).toBe(
      200,
    );
    expect(await posted()).toBe(0n);
    expect(await shortfallsOf(invoiceId)).toEqual([]);
    const failed = { refundId: refunded.stripeRefundId, intentId, amount: 1000 };
    expect((await deliver(b, stripeEvents.refundFailed("evt_no_shortfall_failed", failed))).status).toBe(200);
    expect((await deliver(a, stripeEvents.refundFailed("evt_no_shortfall_failed", failed))).status).toBe(200);
    expect(await posted()).toBe(1000n);
    expect(await clearing()).toBe(before + 1000n);
    expect(await shortfallsOf(invoiceId)).toEqual([]);
    // Nothing was collected: the event says so, and all of the refund stayed on the account.
    expect(await balanceEventsOf(invoiceId)).toEqual([
      "refund.succeeded 1000 - -",
      "invoice.reversed 1500 - -",
      "refund.failed 1000 0 1000",
    ]);
  });
});
