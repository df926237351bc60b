// A payout to a connected account is a Connect transfer; the platform may reverse it at Stripe, whole or in part, and
// the money is back on the platform's balance. Before, transfer.reversed was ignored: the ledger still said the payee
// was paid, the fiat clearing account held less than Stripe did, and the tenant was told nothing. Each reversal is now
// booked once by its TransferReversal id — the clearing account takes it in again and the payer's account gets it
// back — shown on the payment's attempt and told as `payment.reversed`. Against stripe-mock (which keeps no transfers:
// the events are Stripe's as it sends them), on two gateway processes sharing one PostgreSQL database and on one on
// PGlite, each event delivered twice through the real webhook route (to each process), and the reversals told again
// under other event ids.
import { afterAll, beforeAll, describe, expect, inject, it, onTestFinished } from "vitest";
import { assets } from "../../core/index.ts";
import { createAccount } from "../../gateway/accounts/index.ts";
import { type App, createApp } from "../../gateway/app.ts";
import { derivedLedgerId } from "../../gateway/ids/index.ts";
import { transferCodes } from "../../gateway/ledger/index.ts";
import { apiClient } from "../support/api.ts";
import { testConfig } from "../support/config.ts";
import { createTestDatabase } from "../support/postgres.ts";
import { paidCardInvoice } from "./card-invoice.ts";
import { startCuttingProxy } from "./cutting-proxy.ts";
import { deliverStripeEvent, stripeEvents, stripeMockEnv, twoStripeMockGateways } from "./stripe-events.ts";

const secret = "whsec_payout_reversals_test";

/** The processes of the describe that runs: the first is asked, every one is delivered each event. */
let apps: App[] = [];
const a = (): App => apps[0]!;

const call = (method: "GET" | "POST", url: string, body?: unknown) => apiClient(a())(method, url, body);

/** `event` delivered twice: to each process (the second finds it applied by the first), or twice to the one. */
async function deliverTwice(event: unknown): Promise<unknown[]> {
  const answers = [];
  for (const app of apps.length === 1 ? [a(), a()] : apps) {
    const answer = await deliverStripeEvent(app, event, { secret });
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    answers.push(answer.body);
  }
  return answers;
}

/** The fiat rail's USD clearing account: debits less credits, what the ledger says sits on Stripe. */
async function clearing(): Promise<bigint> {
  const [row] = await a().db.query<{ ledger_account_id: bigint }>(
    "SELECT ledger_account_id FROM accounts WHERE kind = 'clearing' AND rail = 'fiat' AND asset = 'USD'",
  );
  if (row === undefined) return 0n;
  const [account] = await a().ledger.lookupAccounts([BigInt(row.ledger_account_id)]);
  return account!.debitsPosted - account!.creditsPosted;
}

async function available(accountId: string): Promise<string> {
  const response = await call("GET", `/v1/accounts/${accountId}/balance`);
  expect(response.status).toBe(200);
  return response.body.available;
}

/** The payment's `payment.reversed` events as the tenant reads them, oldest first. */
async function reversedEvents(paymentId: string) {
  const rows = await a().db.query<{ payload: Record<string, string> }>(
    `SELECT payload FROM events WHERE type = 'payment.reversed' AND payload->>'payment_id' = $1 ORDER BY seq`,
    [paymentId],
  );
  return rows.map((row) => row.payload);
}

/**
 * A customer account topped up with 25.00 by card, and a payout of `amount` from it to a connected account: the
 * Connect transfer stripe-mock made (fee 0), and what Stripe holds for the platform after both, in cents.
 */
async function paidOut(name: string, amount: string) {
  const before = await clearing();
  const { accountId } = await paidCardInvoice(a(), name, secret);
  const paid = await call("POST", "/v1/payments", {
    amount,
    asset: "USD",
    source: { account: accountId },
    destination: { type: "stripe_account", account: "acct_1Merchant" },
  });
  expect(paid.status, JSON.stringify(paid.body)).toBe(201);
  expect(paid.body).toMatchObject({ status: "succeeded", rail: "fiat" });
  const [attempt] = paid.body.attempts;
  const cents = Number(amount.replace(".", ""));
  const stripeBalance = before + 2500n - BigInt(cents);
  expect(await clearing()).toBe(stripeBalance);
  const paymentId: string = paid.body.id;
  // The transfer as Stripe's events name it: its id, amount and the metadata the rail wrote on it.
  const transfer = {
    transferId: attempt.evidence.psp_id as string,
    amount: cents,
    attemptId: attempt.id,
    paymentId,
  };
  return { accountId, paymentId, attemptId: attempt.id as string, transfer, stripeBalance };
}

describe.each([
  {
    database: "two processes on PostgreSQL",
    open: () => twoStripeMockGateways(secret, "fiat_payout_reversals"),
  },
  {
    database: "one process on PGlite",
    open: async () => [await createApp(testConfig(stripeMockEnv(secret)))],
  },
])("a payout's Connect transfer reversed by the platform ($database)", ({ open }) => {
  beforeAll(async () => {
    apps = await open();
  });
  afterAll(async () => {
    for (const app of apps) await app.close();
    apps = [];
  });

  it("gives a whole reversal back to the payer once, however often it is told, and the clearing account matches Stripe again", async () => {
    const payout = await paidOut("reversed_whole", "10.00");
    expect(await available(payout.accountId)).toBe("15.00");
    const whole = { reversalId: "trr_whole", amount: 1_000 };
    const reversed = stripeEvents.transferReversed("evt_reversed_whole", {
      ...payout.transfer,
      reversals: [whole],
    });
    await deliverTwice(reversed);
    // Told again under another event: the transfer updated, listing the same reversal.
    const updated = stripeEvents.transferReversed("evt_reversed_whole_updated", {
      ...payout.transfer,
      reversals: [whole],
      updated: { before: 0 },
    });
    await deliverTwice(updated);

    // Before: 15.00, and the clearing account 10.00 below what Stripe holds.
    expect(await available(payout.accountId)).toBe("25.00");
    expect(await clearing()).toBe(payout.stripeBalance + 1000n);
    const payment = await call("GET", `/v1/payments/${payout.paymentId}`);
    expect(payment.body).toMatchObject({
      status: "succeeded",
      attempts: [{ id: payout.attemptId, amount: "10.00", amount_reversed: "10.00" }],
    });
    expect(await reversedEvents(payout.paymentId)).toEqual([
      {
        payment_id: payout.paymentId,
        reversal: "trr_whole",
        asset: "USD",
        amount: "1000",
        source_account: payout.accountId,
        rail: "fiat",
      },
    ]);
    // One ledger transfer, the clearing account into the payer's, with the reversal as its proof.
    const legs = await a().db.query<{ amount: bigint; code: number }>(
      "SELECT amount, code FROM ledger_transfers WHERE evidence->>'reference' = 'trr_whole'",
    );
    expect(legs).toEqual([{ amount: 1000n, code: transferCodes.payments.payoutReversed }]);
  });

  it("adds partial reversals up, each once in whatever order it is told, never past what the transfer paid", async () => {
    const payout = await paidOut("reversed_in_parts", "20.00");
    expect(await available(payout.accountId)).toBe("5.00");
    const first = { reversalId: "trr_part_1", amount: 300 };
    const second = { reversalId: "trr_part_2", amount: 500 };
    // The second reversal's transfer.updated comes first, listing both (newest first), then the first's own event.
    const both = stripeEvents.transferReversed("evt_parts_updated", {
      ...payout.transfer,
      reversals: [second, first],
      updated: { before: 300 },
    });
    await deliverTwice(both);
    await deliverTwice(
      stripeEvents.transferReversed("evt_parts_first", { ...payout.transfer, reversals: [first] }),
    );
    expect(await available(payout.accountId)).toBe("13.00");
    expect(await clearing()).toBe(payout.stripeBalance + 800n);
    const payment = await call("GET", `/v1/payments/${payout.paymentId}`);
    expect(payment.body.attempts[0].amount_reversed).toBe("8.00");
    expect((await reversedEvents(payout.paymentId)).map((event) => [event.reversal, event.amount])).toEqual([
      ["trr_part_2", "500"],
      ["trr_part_1", "300"],
    ]);

    // A reversal that would take back more than the transfer paid (broken data): answered, and booked nowhere.
    const beyond = { reversalId: "trr_part_beyond", amount: 1_300 };
    await deliverTwice(
      stripeEvents.transferReversed("evt_parts_beyond", {
        ...payout.transfer,
        reversals: [beyond, second, first],
        updated: { before: 800 },
      }),
    );
    expect(await available(payout.accountId)).toBe("13.00");
    expect(await clearing()).toBe(payout.stripeBalance + 800n);
    expect(await reversedEvents(payout.paymentId)).toHaveLength(2);
  });

  it("gives a payout paid across assets back through the FX desk: the payer's share of what it paid, the whole in the end", async () => {
    // A USDC account, funded on the ledger, pays 5 USDC to a connected account: the FX desk pays the rail 5.00 USD,
    // and the account pays the desk's spread beside it (and holds the fee the payout may cost while it runs).
    const usdc = await createAccount(
      { sql: a().db, ledger: a().ledger },
      {
        tenantId: a().demo!.tenantId,
        kind: "customer",
        asset: assets.USDC,
        name: "fx",
        id: "acct_reversed_fx",
      },
    );
    const source = await createAccount(
      { sql: a().db, ledger: a().ledger },
      {
        tenantId: null,
        kind: "clearing",
        asset: assets.USDC,
        name: "funding",
        rail: "funding",
        id: "acct_funding",
      },
    );
    await a().ledger.createTransfers([
      {
        id: derivedLedgerId("acct_reversed_fx", "funding"),
        debitAccountId: source.ledgerAccountId,
        creditAccountId: usdc.ledgerAccountId,
        amount: 6_000_000n,
        ledger: assets.USDC.ledger,
        code: transferCodes.payments.funding,
      },
    ]);
    // The fiat clearing account holds what a card paid, so that it has room for the payout.
    await paidCardInvoice(a(), "reversed_fx_room", secret);
    const before = await clearing();
    const paid = await call("POST", "/v1/payments", {
      amount: "5",
      asset: "USDC",
      source: { account: usdc.id },
      destination: { type: "stripe_account", account: "acct_1Merchant" },
    });
    expect(paid.status, JSON.stringify(paid.body)).toBe(201);
    const [attempt] = paid.body.attempts;
    expect(attempt).toMatchObject({ asset: "USD", amount: "5.00" });
    /** What the USDC account holds, in micro-USDC. */
    const held = async () => BigInt((await available(usdc.id)).replace(".", ""));
    const paidOutOf = await held();
    expect(paidOutOf).toBeLessThan(1_000_000n);
    const transfer = {
      transferId: attempt.evidence.psp_id,
      amount: 500,
      attemptId: attempt.id,
      paymentId: paid.body.id,
    };
    const first = { reversalId: "trr_fx_1", amount: 123 };
    await deliverTwice(stripeEvents.transferReversed("evt_fx_1", { ...transfer, reversals: [first] }));
    // 123 of 500 cents: 1.23 USDC of the 5 paid.
    expect(await held()).toBe(paidOutOf + 1_230_000n);
    const rest = { reversalId: "trr_fx_2", amount: 377 };
    await deliverTwice(
      stripeEvents.transferReversed("evt_fx_2", {
        ...transfer,
        reversals: [rest, first],
        updated: { before: 123 },
      }),
    );
    expect(await held()).toBe(paidOutOf + 5_000_000n);
    expect(await clearing()).toBe(before);
    expect((await reversedEvents(paid.body.id)).map((event) => [event.asset, event.amount])).toEqual([
      ["USDC", "1230000"],
      ["USDC", "3770000"],
    ]);
  });

  it("answers a reversal of a transfer the gateway did not make 200, booking nothing", async () => {
    const before = await clearing();
    const foreign = stripeEvents.transferReversed("evt_reversed_foreign", {
      transferId: "tr_not_ours",
      amount: 1_000,
      attemptId: "att_not_ours",
      paymentId: "pay_not_ours",
      reversals: [{ reversalId: "trr_not_ours", amount: 1_000 }],
    });
    const [first] = await deliverTwice(foreign);
    expect(first).toMatchObject({ received: true, outcome: "not_ours" });
    expect(await clearing()).toBe(before);
  });
});

describe("a payout's Connect transfer reversed before its creation was heard", () => {
  it("settles the payout still in flight from its transfer's reversal, then books the reversal", async () => {
    // The transfer's answer is lost on the way back: the payout stays in flight, its transfer unknown to the gateway.
    const proxy = await startCuttingProxy(
      inject("stripeMockPort"),
      (method, path) => method === "POST" && path === "/v1/transfers",
    );
    const app = await createApp(
      testConfig({
        ...stripeMockEnv(secret),
        STRIPE_API_PORT: String(proxy.port),
        DATABASE_URL: await createTestDatabase(inject("postgresUrl"), "fiat_payout_reversals_in_flight"),
      }),
    );
    onTestFinished(async () => {
      await app.close();
      await proxy.close();
    });
    const { accountId } = await paidCardInvoice(app, "reversed_in_flight", secret);
    const paid = await apiClient(app)("POST", "/v1/payments", {
      amount: "10.00",
      asset: "USD",
      source: { account: accountId },
      destination: { type: "stripe_account", account: "acct_1Merchant" },
    });
    expect(paid.status, JSON.stringify(paid.body)).toBe(202);
    const paymentId: string = paid.body.id;
    const attemptId: string = paid.body.attempts[0].id;
    const partial = { reversalId: "trr_in_flight", amount: 400 };
    const reversed = stripeEvents.transferReversed("evt_reversed_in_flight", {
      transferId: "tr_in_flight",
      amount: 1_000,
      attemptId,
      paymentId,
      reversals: [partial],
    });
    const answer = await deliverStripeEvent(app, reversed, { secret });
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    const payment = await apiClient(app)("GET", `/v1/payments/${paymentId}`);
    expect(payment.body).toMatchObject({
      status: "succeeded",
      attempts: [{ evidence: { rail: "fiat", psp_id: "tr_in_flight" }, amount_reversed: "4.00" }],
    });
    // 25.00 in, 10.00 out, 4.00 back.
    const balance = await apiClient(app)("GET", `/v1/accounts/${accountId}/balance`);
    expect(balance.body.available).toBe("19.00");
  });
});
