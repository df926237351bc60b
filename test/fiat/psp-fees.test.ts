// Stripe keeps its fees out of the platform's balance: a card payment's processing fee, a dispute's fee, and that fee
// given back when the dispute is won. The ledger books each, once, as the platform's cost funded by the operator: the
// fee from the fiat rail's fee account into its clearing account, linked with the operator's capital put on the rail
// for it, so that the clearing account keeps holding the customers' money (every refund and dispute of it still fits)
// and the capital account says what the operator owes Stripe for fees. Before, no fee was booked. Two gateway
// processes on one PostgreSQL database, against stripe-mock, the webhooks through the real route; a dispute's fees come
// in its own balance transactions, as Stripe sends them. stripe-mock's balance transactions all say fee 0, so a card
// payment's processing fee is given to the settlement as the rail would deliver it.
import { afterAll, beforeAll, describe, expect, inject, it, onTestFinished } from "vitest";
import type { FiatRail } from "../../adapters/fiat/index.ts";
import type { RailEvent } from "../../core/index.ts";
import { type App, createApp } from "../../gateway/app.ts";
import { derivedLedgerId } from "../../gateway/ids/index.ts";
import { transferCodes } from "../../gateway/ledger/index.ts";
import { applyRailEvent } from "../../gateway/settlement/index.ts";
import { railFeeFundingLedgerId, railFeeLedgerId } from "../../gateway/settlement/rail-fees.ts";
import { apiClient } from "../support/api.ts";
import { testConfig } from "../support/config.ts";
import { createTestDatabase } from "../support/postgres.ts";
import { openCardInvoice, payCardInvoice } from "./card-invoice.ts";
import { ProxyAnswer, startCuttingProxy } from "./cutting-proxy.ts";
import { deliverStripeEvent, stripeEvents, stripeMockEnv, twoStripeMockGateways } from "./stripe-events.ts";

const secret = "whsec_psp_fees_test";
let a: App;
let b: App;

beforeAll(async () => {
  [a, b] = await twoStripeMockGateways(secret, "fiat_psp_fees");
});
afterAll(async () => {
  await a?.close();
  await b?.close();
});

const deliver = async (app: App, event: unknown) => {
  const answer = await deliverStripeEvent(app, event, { secret });
  expect(answer.status, JSON.stringify(answer.body)).toBe(200);
};

/** A rail event applied by `app`'s settlement as the fiat rail delivers it. */
const applied = (app: App, event: RailEvent) =>
  applyRailEvent(
    { settlement: app.settlement, payments: app.payments, logger: app.server.log },
    "fiat",
    event,
  );

// The helpers below work on process `a`'s database unless given another process (one on a database of its own).

/** The fiat rail's USD account of `kind`: debits less credits (clearing and fee are debit-normal; capital is not). */
async function railBalance(kind: "clearing" | "fee" | "capital", app: App = a): Promise<bigint> {
  const [row] = await app.db.query<{ ledger_account_id: bigint }>(
    "SELECT ledger_account_id FROM accounts WHERE kind = $1 AND rail = 'fiat' AND asset = 'USD'",
    [kind],
  );
  if (row === undefined) return 0n; // not opened yet: nothing booked on it
  const [account] = await app.ledger.lookupAccounts([BigInt(row.ledger_account_id)]);
  return account!.debitsPosted - account!.creditsPosted;
}

/**
 * A card invoice of 25.00 into an account of its own, made through `app`; `pay` delivers Stripe's
 * payment_intent.succeeded to `payTo` (`app` unless told).
 */
async function cardInvoice(name: string, { app = a, payTo = app }: { app?: App; payTo?: App } = {}) {
  const invoice = await openCardInvoice(app, name);
  return { ...invoice, pay: () => payCardInvoice(payTo, invoice, secret) };
}

describe("Stripe's fees", () => {
  it("leave the customers' money whole: a payment refunded and another disputed after their fees, on Stripe's first money", async () => {
    // The first payments on this database: the clearing account holds nothing else. When a fee was booked against it
    // alone, the refund's hold (insufficient_liquidity: a 500) and the dispute (a webhook refused for ever) no longer
    // fitted. So two processes on a database of their own: the suite's may hold the other tests' money already.
    const [first, second] = await twoStripeMockGateways(secret, "fiat_psp_fees_first_money");
    onTestFinished(async () => {
      await first.close();
      await second.close();
    });
    expect(await railBalance("clearing", first)).toBe(0n);
    const refunded = await cardInvoice("fee_then_refund", { app: first });
    const received: RailEvent = {
      kind: "received",
      reference: refunded.invoiceId,
      amount: 2500n,
      evidence: { rail: "fiat", pspId: refunded.intentId },
      fees: [{ id: "txn_card_fee_then_refund", amount: 103n }],
    };
    expect(await applied(first, received)).toBe("applied");
    // Paid through Stripe's webhook (stripe-mock's fee: 0), so that its dispute finds it credited.
    const disputed = await cardInvoice("fee_then_dispute", { app: first });
    await disputed.pay();
    expect(await railBalance("clearing", first)).toBe(5000n);
    const refund = await apiClient(first)("POST", "/v1/refunds", {
      invoice: refunded.invoiceId,
      amount: "25.00",
    });
    expect(refund.status, JSON.stringify(refund.body)).toBe(201);
    expect(refund.body.status).toBe("succeeded");
    const dispute = { disputeId: "dp_after_fee", intentId: disputed.intentId, amount: 2500 };
    await deliver(
      second,
      stripeEvents.disputeCreated("evt_dispute_after_fee", {
        ...dispute,
        fees: [{ id: "txn_dispute_after_fee", amount: -2500, fee: 1500 }],
      }),
    );
    expect(await railBalance("clearing", first)).toBe(0n);
    expect(await railBalance("fee", first)).toBe(103n + 1500n);
    expect(await railBalance("capital", first)).toBe(-(103n + 1500n));
  });

  it("books a dispute's fee once, funded by the operator, and its return when the dispute is won", async () => {
    const [clearingBefore, feesBefore, capitalBefore] = [
      await railBalance("clearing"),
      await railBalance("fee"),
      await railBalance("capital"),
    ];
    const { invoiceId, intentId, pay } = await cardInvoice("fee_dispute");
    await pay();
    // stripe-mock's balance transaction for the charge says fee 0: the payment costs nothing here.
    expect(await railBalance("clearing")).toBe(clearingBefore + 2500n);
    expect(await railBalance("fee")).toBe(feesBefore);

    // Stripe takes 25.00 and its 15.00 fee. Delivered to both processes, and again under another event id.
    const withdrawn = { id: "txn_fee_dispute_withdrawn", amount: -2500, fee: 1500 };
    const opened = { disputeId: "dp_fee", intentId, amount: 2500, fees: [withdrawn] };
    await Promise.all([
      deliver(a, stripeEvents.disputeCreated("evt_fee_dispute", opened)),
      deliver(b, stripeEvents.disputeCreated("evt_fee_dispute", opened)),
    ]);
    await deliver(b, stripeEvents.disputeCreated("evt_fee_dispute_again", opened));
    expect(await railBalance("clearing")).toBe(clearingBefore);
    expect(await railBalance("fee")).toBe(feesBefore + 1500n);
    expect(await railBalance("capital")).toBe(capitalBefore - 1500n);
    const [booked, funding] = await a.ledger.lookupTransfers([
      railFeeLedgerId("fiat", withdrawn.id),
      railFeeFundingLedgerId("fiat", withdrawn.id),
    ]);
    expect(booked).toMatchObject({ amount: 1500n, code: transferCodes.payments.feePaid });
    expect(funding).toMatchObject({ amount: 1500n, code: transferCodes.payments.capitalIn });

    // Won: Stripe gives back the 25.00 and the fee, and lists the first balance transaction again.
    const reinstated = { id: "txn_fee_dispute_reinstated", amount: 2500, fee: -1500 };
    const won = { ...opened, fees: [withdrawn, reinstated] };
    await deliver(b, stripeEvents.disputeFundsReinstated("evt_fee_dispute_won", won));
    await deliver(a, stripeEvents.disputeFundsReinstated("evt_fee_dispute_won", won));
    expect(await railBalance("clearing")).toBe(clearingBefore + 2500n);
    expect(await railBalance("fee")).toBe(feesBefore);
    expect(await railBalance("capital")).toBe(capitalBefore);
    // The fee's transfers name the invoice, as its receipt does.
    const transfers = await a.ledger.lookupTransfers([
      railFeeLedgerId("fiat", withdrawn.id),
      railFeeLedgerId("fiat", reinstated.id),
    ]);
    const invoiceLink = derivedLedgerId(invoiceId, "invoice");
    expect(transfers.map((transfer) => [transfer.amount, transfer.userData128])).toEqual([
      [1500n, invoiceLink],
      [1500n, invoiceLink],
    ]);
  });

  it("keeps a dispute's fee while the dispute waits for its payment, and books it with the dispute", async () => {
    const [clearingBefore, feesBefore] = [await railBalance("clearing"), await railBalance("fee")];
    const { intentId, pay } = await cardInvoice("fee_dispute_first", { payTo: b });
    // Stripe delivers the dispute before the payment: it is parked (no money of it is credited yet).
    const opened = {
      disputeId: "dp_fee_first",
      intentId,
      amount: 2500,
      fees: [{ id: "txn_fee_first_withdrawn", amount: -2500, fee: 1500 }],
    };
    await deliver(a, stripeEvents.disputeCreated("evt_fee_first_dispute", opened));
    expect(await railBalance("fee")).toBe(feesBefore);
    await pay();
    expect(await railBalance("clearing")).toBe(clearingBefore);
    expect(await railBalance("fee")).toBe(feesBefore + 1500n);
  });

  it("books the fee of a dispute won before its payment was credited, once the payment is", async () => {
    const [clearingBefore, feesBefore] = [await railBalance("clearing"), await railBalance("fee")];
    const { intentId, pay } = await cardInvoice("fee_dispute_won_first");
    // Stripe delivers the dispute's end, then its start, before the payment: both find nothing credited to undo.
    const withdrawn = { id: "txn_won_first_withdrawn", amount: -2500, fee: 1500 };
    const reinstated = { id: "txn_won_first_reinstated", amount: 2500, fee: 0 };
    const dispute = { disputeId: "dp_won_first", intentId, amount: 2500 };
    await deliver(
      a,
      stripeEvents.disputeFundsReinstated("evt_won_first_end", { ...dispute, fees: [withdrawn, reinstated] }),
    );
    await deliver(b, stripeEvents.disputeCreated("evt_won_first_start", { ...dispute, fees: [withdrawn] }));
    expect(await railBalance("fee")).toBe(feesBefore);
    await pay();
    // The money stays (the dispute was won), and Stripe kept its fee.
    expect(await railBalance("clearing")).toBe(clearingBefore + 2500n);
    expect(await railBalance("fee")).toBe(feesBefore + 1500n);
  });

  it("books a card payment's processing fee with its money, once, also when the receipt is delivered again", async () => {
    const [clearingBefore, feesBefore] = [await railBalance("clearing"), await railBalance("fee")];
    const { invoiceId, intentId } = await cardInvoice("fee_card");
    const received: RailEvent = {
      kind: "received",
      reference: invoiceId,
      amount: 2500n,
      evidence: { rail: "fiat", pspId: intentId },
      fees: [{ id: "txn_fee_card", amount: 103n }],
    };
    expect(await applied(a, received)).toBe("applied");
    expect(await applied(b, received)).toBe("applied"); // a duplicate of the receipt: its fee is booked already
    expect(await railBalance("clearing")).toBe(clearingBefore + 2500n);
    expect(await railBalance("fee")).toBe(feesBefore + 103n);
    // Asynchronous capture: the fee comes later, alone, for money received already.
    const later: RailEvent = {
      kind: "fee",
      reference: invoiceId,
      evidence: { rail: "fiat", pspId: intentId },
      fees: [{ id: "txn_fee_card", amount: 103n }],
    };
    expect(await applied(b, later)).toBe("applied");
    expect(await railBalance("fee")).toBe(feesBefore + 103n);
  });

  it("books a fee that comes after its money (asynchronous capture), and none for an invoice not paid so", async () => {
    const [clearingBefore, feesBefore] = [await railBalance("clearing"), await railBalance("fee")];
    const { invoiceId, intentId } = await cardInvoice("fee_card_later");
    const evidence = { rail: "fiat" as const, pspId: intentId };
    const later: RailEvent = {
      kind: "fee",
      reference: invoiceId,
      evidence,
      fees: [{ id: "txn_later", amount: 61n }],
    };
    // Before the money: not ours yet (the rail delivers it only after, see receiver.ts).
    expect(await applied(a, later)).toBe("not_ours");
    expect(await applied(a, { kind: "received", reference: invoiceId, amount: 2500n, evidence })).toBe(
      "applied",
    );
    expect(await railBalance("fee")).toBe(feesBefore);
    expect(await applied(b, later)).toBe("applied");
    expect(await applied(a, later)).toBe("applied");
    expect(await railBalance("clearing")).toBe(clearingBefore + 2500n);
    expect(await railBalance("fee")).toBe(feesBefore + 61n);
    // Another PaymentIntent than the invoice's, or an invoice nobody has: nothing.
    const stranger = { rail: "fiat" as const, pspId: "pi_stranger" };
    expect(await applied(a, { ...later, evidence: stranger, fees: [{ id: "txn_x", amount: 5n }] })).toBe(
      "not_ours",
    );
    expect(await applied(a, { ...later, reference: "inv_nobody", fees: [{ id: "txn_y", amount: 5n }] })).toBe(
      "not_ours",
    );
    expect(await railBalance("fee")).toBe(feesBefore + 61n);
  });

  it("books nothing for money that is not ours", async () => {
    const [clearingBefore, feesBefore] = [await railBalance("clearing"), await railBalance("fee")];
    const stranger: RailEvent = {
      kind: "received",
      reference: "inv_unknown_to_switchyard",
      amount: 2500n,
      evidence: { rail: "fiat", pspId: "pi_stranger" },
      fees: [{ id: "txn_fee_stranger", amount: 103n }],
    };
    expect(await applied(a, stranger)).toBe("not_ours");
    expect(await railBalance("clearing")).toBe(clearingBefore);
    expect(await railBalance("fee")).toBe(feesBefore);
  });
});

// A refund's fee is on its balance transaction: 0 for most cards in the US, more where a refund costs a fee, less than 0
// where Stripe gives part of the payment's processing fee back. No event carries it, so it is read (GET
// /v1/refunds/:id) when a refund's event is delivered; the API's refund has it in Stripe's answer (its balance
// transaction expanded), read with no request more. Before, it was taken for 0.
describe("a Stripe refund's fee", () => {
  /**
   * What Stripe's refunds' balance transactions say, by refund id: its fee, and its failure's when it failed (null:
   * failed, its failure's balance transaction not there yet).
   * stripe-mock's all say 0, so the proxy in front of it answers GET /v1/refunds/:id itself: a refund named here as
   * told, another (one the API made) with `othersFee` when it is set; and while `othersFee` is set, it makes the API's
   * refunds itself (POST /v1/refunds), each a new id, with that fee. One in `untold` is not answered (an outage), one in
   * `refused` is answered with Stripe's refusal. `reads` lists the refunds read (GET /v1/refunds/:id), in order.
   */
  const fees = new Map<string, { fee: number; failureFee?: number | null }>();
  let othersFee: number | null = null;
  const untold = new Set<string>();
  const refused = new Map<string, ProxyAnswer>();
  const reads: string[] = [];
  let made = 0;
  let c: App;
  let d: App;
  let closeProxy: () => Promise<void>;

  const txn = (id: string, amount: number, fee: number, type: string) => ({
    id,
    object: "balance_transaction",
    amount,
    currency: "usd",
    fee,
    fee_details: fee === 0 ? [] : [{ amount: fee, currency: "usd", type: "stripe_fee" }],
    net: amount - fee,
    reporting_category: type,
    type,
  });
  const refundAnswer = (id: string, told: { fee: number; failureFee?: number | null }) => ({
    id,
    object: "refund",
    amount: 1000,
    currency: "usd",
    status: told.failureFee === undefined ? "succeeded" : "failed",
    balance_transaction: txn(`txn_${id}`, -1000, told.fee, "refund"),
    failure_balance_transaction:
      told.failureFee === undefined || told.failureFee === null
        ? null
        : txn(`txn_${id}_back`, 1000, told.failureFee, "refund_failure"),
    metadata: {},
  });
  const refundOf = (url: string) =>
    /^\/v1\/refunds\/(re_[^/]+)$/.exec(new URL(url, "http://stripe").pathname)?.[1];

  beforeAll(async () => {
    const proxy = await startCuttingProxy(
      inject("stripeMockPort"),
      (method, url) => method === "GET" && untold.has(refundOf(url) ?? ""),
      (method, url) => {
        if (
          method === "POST" &&
          new URL(url, "http://stripe").pathname === "/v1/refunds" &&
          othersFee !== null
        ) {
          made += 1;
          return refundAnswer(`re_api_${made}`, { fee: othersFee });
        }
        const id = refundOf(url);
        if (method !== "GET" || id === undefined) return null;
        reads.push(id);
        if (untold.has(id)) return null;
        const told = fees.get(id) ?? (othersFee === null ? undefined : { fee: othersFee });
        return refused.get(id) ?? (told === undefined ? null : refundAnswer(id, told));
      },
    );
    closeProxy = proxy.close;
    const env = {
      ...stripeMockEnv(secret),
      STRIPE_API_PORT: String(proxy.port),
      DATABASE_URL: await createTestDatabase(inject("postgresUrl"), "fiat_refund_fees"),
    };
    c = await createApp(testConfig(env));
    d = await createApp(testConfig(env));
  });
  afterAll(async () => {
    await c?.close();
    await d?.close();
    await closeProxy?.();
  });

  const balances = async () => ({
    clearing: await railBalance("clearing", c),
    fee: await railBalance("fee", c),
    capital: await railBalance("capital", c),
  });
  const refundCreated = (eventId: string, refundId: string, intentId: string) =>
    stripeEvents.refundCreated(eventId, { refundId, intentId, amount: 1000 });
  /** A restricted key that may not read refunds (GET /v1/refunds/:id), until the operator gives it the permission. */
  const keyRefusal = new ProxyAnswer(403, {
    error: {
      type: "invalid_request_error",
      message: "The provided key 'rk_test_***' does not have the required permissions for this endpoint.",
    },
  });
  /**
   * Puts off the tries of the fees the tests before kept (a minute after they were kept, they would be due for the
   * passes a test runs, and asked beside its own).
   */
  const asideKeptFees = () =>
    c.db.query("UPDATE fiat_parked_fees SET next_try_at = now() + interval '1 day'");
  const fiatRail = (app: App) => app.payments.rails.get("fiat") as FiatRail;

  it("books the fee of a refund the API made once, funded by the operator; its webhook books nothing more", async () => {
    const { invoiceId, intentId, pay } = await cardInvoice("refund_fee_api", { app: c });
    await pay();
    const before = await balances();
    othersFee = 40;
    onTestFinished(() => {
      othersFee = null;
    });
    const readBefore = reads.length;
    const refund = await apiClient(c)("POST", "/v1/refunds", { invoice: invoiceId, amount: "10.00" });
    expect(refund.status, JSON.stringify(refund.body)).toBe(201);
    expect(refund.body).toMatchObject({ status: "succeeded", fee: "0.00" });
    const stripeRefundId: string = refund.body.rail_reference;
    // Its fee came with Stripe's answer: the refund was finished without asking Stripe again (which held it back, and
    // its webhook with it, as long as Stripe took to answer).
    expect(reads.slice(readBefore)).toEqual([]);
    // Stripe took 10.00 and its 0.40 fee: the fee from the clearing account into the fee account, funded by the
    // operator's capital, as Stripe's other fees are (booked beside the refund, not before it is finished).
    await expect
      .poll(balances)
      .toEqual({ clearing: before.clearing - 1000n, fee: before.fee + 40n, capital: before.capital - 40n });
    const feeId = `stripe_refund_fee:${stripeRefundId}`;
    const [taken, funded] = await c.ledger.lookupTransfers([
      railFeeLedgerId("fiat", feeId),
      railFeeFundingLedgerId("fiat", feeId),
    ]);
    expect(taken).toMatchObject({
      amount: 40n,
      code: transferCodes.payments.feePaid,
      userData128: derivedLedgerId(invoiceId, "invoice"),
    });
    expect(funded).toMatchObject({ amount: 40n, code: transferCodes.payments.capitalIn });
    // Stripe's refund.created for it, to both processes and again: the fee is booked already.
    const created = refundCreated("evt_refund_fee_api", stripeRefundId, intentId);
    await deliver(d, created);
    await deliver(c, { ...created, id: "evt_refund_fee_api_again" });
    expect(await balances()).toEqual({
      clearing: before.clearing - 1000n,
      fee: before.fee + 40n,
      capital: before.capital - 40n,
    });
  });

  it("books the fee of a refund made in Stripe's dashboard from its webhook, given back when Stripe returns part of the processing fee", async () => {
    const { intentId, pay } = await cardInvoice("refund_fee_dashboard", { app: c });
    await pay();
    const before = await balances();
    // Stripe gives 0.29 of the payment's processing fee back with the refund: a negative fee.
    fees.set("re_fee_dashboard", { fee: -29 });
    const created = refundCreated("evt_refund_fee_dashboard", "re_fee_dashboard", intentId);
    await deliver(c, created);
    await deliver(d, created);
    await deliver(d, { ...created, id: "evt_refund_fee_dashboard_again" });
    expect(await balances()).toEqual({
      clearing: before.clearing - 1000n,
      fee: before.fee - 29n,
      capital: before.capital + 29n,
    });
    const [givenBack] = await c.ledger.lookupTransfers([
      railFeeLedgerId("fiat", "stripe_refund_fee:re_fee_dashboard"),
    ]);
    expect(givenBack).toMatchObject({ amount: 29n, evidence: { detail: { kind: "fee_given_back" } } });
  });

  it("books a failed refund's fee and what its failure gave back of it", async () => {
    const { intentId, pay } = await cardInvoice("refund_fee_failed", { app: c });
    await pay();
    const before = await balances();
    fees.set("re_fee_failed", { fee: 35 });
    await deliver(c, refundCreated("evt_refund_fee_failed_created", "re_fee_failed", intentId));
    expect(await balances()).toEqual({
      clearing: before.clearing - 1000n,
      fee: before.fee + 35n,
      capital: before.capital - 35n,
    });
    fees.set("re_fee_failed", { fee: 35, failureFee: -35 });
    const failed = stripeEvents.refundFailed("evt_refund_fee_failed", {
      refundId: "re_fee_failed",
      intentId,
      amount: 1000,
    });
    await deliver(d, failed);
    await deliver(c, { ...failed, id: "evt_refund_fee_failed_again" });
    expect(await balances()).toEqual(before);
  });

  it("keeps a failed refund's failure fee its event's lookup is not told yet, and books it once Stripe tells it", async () => {
    // The refund failed, and Stripe answers it with its balance transaction but its failure's not there yet. Before, the
    // refund.failed booked its fee and its failure's as 0, and kept nothing when no fee was kept of the refund before:
    // what the failure gave back was never booked.
    const refundId = "re_fee_failure_untold";
    await asideKeptFees();
    const { intentId, pay } = await cardInvoice("refund_fee_failure_untold", { app: c });
    await pay();
    const before = await balances();
    fees.set(refundId, { fee: 35 });
    await deliver(c, refundCreated("evt_refund_fee_failure_untold_created", refundId, intentId));
    const feeTaken = {
      clearing: before.clearing - 1000n,
      fee: before.fee + 35n,
      capital: before.capital - 35n,
    };
    expect(await balances()).toEqual(feeTaken);
    fees.set(refundId, { fee: 35, failureFee: null });
    await deliver(
      d,
      stripeEvents.refundFailed("evt_refund_fee_failure_untold", { refundId, intentId, amount: 1000 }),
    );
    // Its money given back, its fee booked once; what its failure gave back of it waits for Stripe to tell it.
    const moneyBack = { ...feeTaken, clearing: before.clearing };
    expect(await balances()).toEqual(moneyBack);
    const due = () =>
      c.db.query("UPDATE fiat_parked_fees SET next_try_at = now() WHERE object_id = $1", [refundId]);
    await due();
    expect(await fiatRail(c).bookParkedFees()).toEqual({ booked: 0, waiting: 1 });
    expect(await balances()).toEqual(moneyBack);

    // Told at its next try: booked, the fee not a second time.
    fees.set(refundId, { fee: 35, failureFee: -35 });
    await due();
    expect(await fiatRail(c).bookParkedFees()).toEqual({ booked: 1, waiting: 0 });
    expect(await balances()).toEqual(before);
    const [feeBack] = await c.ledger.lookupTransfers([
      railFeeLedgerId("fiat", `stripe_refund_failure_fee:${refundId}`),
    ]);
    expect(feeBack).toMatchObject({ amount: 35n, evidence: { detail: { kind: "fee_given_back" } } });
    expect(await fiatRail(c).bookParkedFees()).toEqual({ booked: 0, waiting: 0 });
  });

  it("takes a refund's money at once when Stripe does not tell its fee, and books the fee when it is delivered again", async () => {
    const { accountId, intentId, pay } = await cardInvoice("refund_fee_untold", { app: c });
    await pay();
    const before = await balances();
    fees.set("re_fee_untold", { fee: 50 });
    untold.add("re_fee_untold");
    const created = refundCreated("evt_refund_fee_untold", "re_fee_untold", intentId);
    const refused = await deliverStripeEvent(c, created, { secret });
    expect(refused.status).toBe(500);
    // The money, which needs no lookup, is taken already: not lost should Stripe stop delivering the event.
    expect(await balances()).toEqual({ ...before, clearing: before.clearing - 1000n });
    const [account] = await c.db.query<{ ledger_account_id: bigint }>(
      "SELECT ledger_account_id FROM accounts WHERE id = $1",
      [accountId],
    );
    const [held] = await c.ledger.lookupAccounts([BigInt(account!.ledger_account_id)]);
    expect(held!.creditsPosted - held!.debitsPosted).toBe(1500n);
    untold.delete("re_fee_untold");
    await deliver(c, created);
    expect(await balances()).toEqual({
      clearing: before.clearing - 1000n,
      fee: before.fee + 50n,
      capital: before.capital - 50n,
    });
  });

  it("reads a refund asked again once, and books its fee from that one answer", async () => {
    const { invoiceId, intentId, pay } = await cardInvoice("refund_fee_asked_again", { app: c });
    await pay();
    const before = await balances();
    othersFee = 25;
    onTestFinished(() => {
      othersFee = null;
    });
    // As the gateway asks the rail for a refund, and again when it did not learn how the first ask ended.
    const rail = c.payments.rails.get("fiat")!;
    const request = {
      id: "rfd_fee_asked_again",
      reference: invoiceId,
      railReference: intentId,
      amount: 1000n,
    };
    const first = await rail.refundReceived!(request);
    expect(first).toMatchObject({ status: "succeeded", fee: 0n });
    const stripeRefundId =
      first.status === "succeeded" && "pspId" in first.evidence ? first.evidence.pspId : null;
    const readBefore = reads.length;
    expect(await rail.refundReceived!(request)).toEqual(first);
    // Stripe is asked how the refund stands once, and that answer tells its fee: not read a second time for it.
    expect(reads.slice(readBefore)).toEqual([stripeRefundId]);
    // The fee alone (the rail's refund is not the gateway's here): taken from the clearing account, funded by the
    // operator's capital, once.
    await expect
      .poll(balances)
      .toEqual({ clearing: before.clearing, fee: before.fee + 25n, capital: before.capital - 25n });
  });

  it("takes a refund's money and answers its event when Stripe refuses to tell its fee for good, and refuses it when Stripe fails", async () => {
    const refusals = {
      // A restricted key that may not read refunds.
      re_fee_forbidden: new ProxyAnswer(403, {
        error: {
          type: "invalid_request_error",
          message: "The provided key 'rk_test_***' does not have the required permissions for this endpoint.",
        },
      }),
      re_fee_missing: new ProxyAnswer(404, {
        error: {
          type: "invalid_request_error",
          code: "resource_missing",
          param: "id",
          message: "No such refund: 're_fee_missing'",
        },
      }),
    };
    for (const [refundId, refusal] of Object.entries(refusals)) {
      const { intentId, pay } = await cardInvoice(`refund_${refundId}`, { app: c });
      await pay();
      const before = await balances();
      fees.set(refundId, { fee: 45 });
      refused.set(refundId, refusal);
      // Done for Stripe: refused, it would come back refused for the 3 days Stripe tries it, and Stripe would warn of
      // (and at last disable) the endpoint, payments' and disputes' events with it.
      await deliver(c, refundCreated(`evt_${refundId}`, refundId, intentId));
      expect(await balances(), refundId).toEqual({ ...before, clearing: before.clearing - 1000n });
    }

    // Stripe failing itself may answer when asked again, and so may a key refused as unknown (rolled, or expired: the
    // operator sets the new one): refused, for Stripe to deliver the event again.
    const healing = {
      re_fee_stripe_failed: new ProxyAnswer(500, {
        error: { type: "api_error", message: "An unknown error occurred" },
      }),
      re_fee_key_rolled: new ProxyAnswer(401, {
        error: { type: "invalid_request_error", message: "Expired API Key provided: sk_test_***" },
      }),
    };
    for (const [refundId, failure] of Object.entries(healing)) {
      const { intentId, pay } = await cardInvoice(`refund_${refundId}`, { app: c });
      await pay();
      const before = await balances();
      fees.set(refundId, { fee: 45 });
      refused.set(refundId, failure);
      const created = refundCreated(`evt_${refundId}`, refundId, intentId);
      expect((await deliverStripeEvent(c, created, { secret })).status, refundId).toBe(500);
      expect(await balances(), refundId).toEqual({ ...before, clearing: before.clearing - 1000n });
      refused.delete(refundId);
      await deliver(c, created);
      expect(await balances(), refundId).toEqual({
        clearing: before.clearing - 1000n,
        fee: before.fee + 45n,
        capital: before.capital - 45n,
      });
    }
  });

  it("keeps a refund's fee Stripe refuses to tell, asks for it again less and less often, and books it once when Stripe tells it", async () => {
    // Before, such a fee was logged and never booked: the clearing account then said the rail held it more than Stripe
    // did, and nothing asked Stripe again once the key could read refunds.
    const refundId = "re_fee_kept";
    await asideKeptFees();
    const { invoiceId, intentId, pay } = await cardInvoice("refund_fee_kept", { app: c });
    await pay();
    const before = await balances();
    fees.set(refundId, { fee: 45 });
    refused.set(refundId, keyRefusal);
    const kept = async () => {
      const [row] = await c.db.query<{
        kind: string;
        failure: boolean;
        tries: number;
        revision: number;
        wait: number;
      }>(
        `SELECT kind, failure, tries, revision, extract(epoch FROM next_try_at - now())::float8 AS wait
         FROM fiat_parked_fees WHERE rail = 'fiat' AND object_id = $1`,
        [refundId],
      );
      return row;
    };
    const due = () =>
      c.db.query("UPDATE fiat_parked_fees SET next_try_at = now() WHERE object_id = $1", [refundId]);
    const readsOf = (from: number) => reads.slice(from).filter((id) => id === refundId).length;
    const [railC, railD] = [fiatRail(c), fiatRail(d)];

    const created = refundCreated("evt_refund_fee_kept", refundId, intentId);
    await deliver(c, created);
    const moneyTaken = { ...before, clearing: before.clearing - 1000n };
    expect(await balances()).toEqual(moneyTaken);
    // Kept, its first try a minute on: a pass before then does not ask Stripe.
    expect(await kept()).toMatchObject({ kind: "refund", failure: false, tries: 0 });
    const firstRevision = (await kept())!.revision;
    expect((await kept())!.wait).toBeGreaterThan(50);
    let from = reads.length;
    expect(await railC.bookParkedFees()).toEqual({ booked: 0, waiting: 0 });
    expect(readsOf(from)).toBe(0);
    // Delivered again while Stripe still refuses (another event of the refund, to the other process): kept once.
    await deliver(d, { ...created, id: "evt_refund_fee_kept_updated", type: "refund.updated" });
    expect(await kept()).toMatchObject({ tries: 0 });
    expect((await kept())!.revision).toBeGreaterThan(firstRevision);

    // Its try due and Stripe still refusing: asked once, then not for two minutes (the wait doubles, up to an hour).
    await due();
    from = reads.length;
    expect(await railC.bookParkedFees()).toEqual({ booked: 0, waiting: 1 });
    expect(readsOf(from)).toBe(1);
    expect(await kept()).toMatchObject({ tries: 1 });
    expect((await kept())!.wait).toBeGreaterThan(110);
    expect(await balances()).toEqual(moneyTaken);

    // The key may read refunds now: told at the next try, booked once by the two processes' passes between them.
    refused.delete(refundId);
    expect(await railD.bookParkedFees()).toEqual({ booked: 0, waiting: 0 });
    await due();
    const passes = await Promise.all([railC.bookParkedFees(), railD.bookParkedFees()]);
    expect(passes.map((pass) => pass.booked).sort()).toEqual([0, 1]);
    const feeBooked = {
      clearing: before.clearing - 1000n,
      fee: before.fee + 45n,
      capital: before.capital - 45n,
    };
    expect(await balances()).toEqual(feeBooked);
    expect(await kept()).toBeUndefined();
    // Under the ledger ids and evidence the refund's event books it with (as the test above shows for one told at once).
    const feeId = `stripe_refund_fee:${refundId}`;
    const [taken, funded] = await c.ledger.lookupTransfers([
      railFeeLedgerId("fiat", feeId),
      railFeeFundingLedgerId("fiat", feeId),
    ]);
    expect(taken).toMatchObject({
      amount: 45n,
      code: transferCodes.payments.feePaid,
      userData128: derivedLedgerId(invoiceId, "invoice"),
      evidence: { rail: "fiat", reference: feeId, detail: { kind: "fee_taken" } },
    });
    expect(funded).toMatchObject({ amount: 45n, code: transferCodes.payments.capitalIn });

    // The refund's events delivered since, to either process, and another pass: nothing more.
    await deliver(d, { ...created, id: "evt_refund_fee_kept_late" });
    await deliver(c, { ...created, id: "evt_refund_fee_kept_later", type: "refund.updated" });
    expect(await railC.bookParkedFees()).toEqual({ booked: 0, waiting: 0 });
    expect(await balances()).toEqual(feeBooked);
  });

  it("gives a kept fee up after a week of refusals, asks for it no more, and asks again when the operator says so", async () => {
    // Before, a key that may never read refunds had every refund's fee asked every hour for ever, in every process.
    const refundId = "re_fee_given_up";
    await asideKeptFees();
    const { intentId, pay } = await cardInvoice("refund_fee_given_up", { app: c });
    await pay();
    const before = await balances();
    fees.set(refundId, { fee: 45 });
    refused.set(refundId, keyRefusal);
    await deliver(c, refundCreated("evt_refund_fee_given_up", refundId, intentId));
    const kept = async () => {
      const [row] = await c.db.query<{ tries: number }>(
        "SELECT tries FROM fiat_parked_fees WHERE object_id = $1",
        [refundId],
      );
      return row;
    };
    const givenUp = async () => {
      const [row] = await c.db.query<{ given_up: boolean }>(
        "SELECT gave_up_at IS NOT NULL AS given_up FROM fiat_parked_fees WHERE object_id = $1",
        [refundId],
      );
      return row?.given_up;
    };
    expect(await kept()).toEqual({ tries: 0 });
    const readsOf = (from: number) => reads.slice(from).filter((id) => id === refundId).length;

    // Kept a week ago, and due: given up (said once in the log), not asked.
    await c.db.query(
      "UPDATE fiat_parked_fees SET parked_at = now() - interval '7 days 1 minute', next_try_at = now() WHERE object_id = $1",
      [refundId],
    );
    const from = reads.length;
    expect(await fiatRail(c).bookParkedFees()).toEqual({ booked: 0, waiting: 0 });
    expect(readsOf(from)).toBe(0);
    expect(await kept()).toEqual({ tries: 0 });
    expect(await givenUp()).toBe(true);
    // Neither process asks for it again, however due.
    await c.db.query("UPDATE fiat_parked_fees SET next_try_at = now() WHERE object_id = $1", [refundId]);
    expect(await fiatRail(d).bookParkedFees()).toEqual({ booked: 0, waiting: 0 });
    expect(await fiatRail(c).bookParkedFees()).toEqual({ booked: 0, waiting: 0 });
    expect(readsOf(from)).toBe(0);
    expect(await balances()).toEqual({ ...before, clearing: before.clearing - 1000n });

    // The key given the permission, the operator has it asked again (README "Reconciling a rail"): booked once.
    refused.delete(refundId);
    await c.db.query(
      `UPDATE fiat_parked_fees SET gave_up_at = NULL, parked_at = now(), tries = 0, next_try_at = now()
       WHERE gave_up_at IS NOT NULL`,
    );
    expect(await fiatRail(c).bookParkedFees()).toEqual({ booked: 1, waiting: 0 });
    expect(readsOf(from)).toBe(1);
    expect(await kept()).toBeUndefined();
    expect(await balances()).toEqual({
      clearing: before.clearing - 1000n,
      fee: before.fee + 45n,
      capital: before.capital - 45n,
    });
  });

  it("keeps a given-up fee anew when another event of its refund comes with Stripe still refusing, and books it once told", async () => {
    // Before, a fee given up stayed given up whatever came after: another event of its refund (refund.updated, its
    // failure) was answered 200 with its fee neither asked for nor said, until the operator's SQL.
    const refundId = "re_fee_kept_anew";
    await asideKeptFees();
    const { intentId, pay } = await cardInvoice("refund_fee_kept_anew", { app: c });
    await pay();
    const before = await balances();
    fees.set(refundId, { fee: 45 });
    refused.set(refundId, keyRefusal);
    const created = refundCreated("evt_refund_fee_kept_anew", refundId, intentId);
    await deliver(c, created);
    const kept = async () => {
      const [row] = await c.db.query<{ tries: number; given_up: boolean; wait: number; fresh: boolean }>(
        `SELECT tries, gave_up_at IS NOT NULL AS given_up, extract(epoch FROM next_try_at - now())::float8 AS wait,
           parked_at > now() - interval '1 minute' AS fresh
         FROM fiat_parked_fees WHERE object_id = $1`,
        [refundId],
      );
      return row;
    };
    const readsOf = (from: number) => reads.slice(from).filter((id) => id === refundId).length;
    // Asked for a week (three tries here), then given up.
    await c.db.query(
      "UPDATE fiat_parked_fees SET tries = 3, parked_at = now() - interval '7 days 1 minute', next_try_at = now() WHERE object_id = $1",
      [refundId],
    );
    let from = reads.length;
    expect(await fiatRail(c).bookParkedFees()).toEqual({ booked: 0, waiting: 0 });
    expect(await kept()).toMatchObject({ tries: 3, given_up: true });

    // Another event of the refund, to the other process, Stripe still refusing: kept anew, its first try a minute on.
    await deliver(d, { ...created, id: "evt_refund_fee_kept_anew_updated", type: "refund.updated" });
    expect(await kept()).toMatchObject({ tries: 0, given_up: false, fresh: true });
    expect((await kept())!.wait).toBeGreaterThan(50);
    expect(readsOf(from)).toBe(1); // the event's own lookup
    expect(await balances()).toEqual({ ...before, clearing: before.clearing - 1000n });

    // The key may read refunds now: its next try books it, once.
    refused.delete(refundId);
    await c.db.query("UPDATE fiat_parked_fees SET next_try_at = now() WHERE object_id = $1", [refundId]);
    from = reads.length;
    expect(await fiatRail(c).bookParkedFees()).toEqual({ booked: 1, waiting: 0 });
    expect(readsOf(from)).toBe(1);
    expect(await kept()).toBeUndefined();
    expect(await balances()).toEqual({
      clearing: before.clearing - 1000n,
      fee: before.fee + 45n,
      capital: before.capital - 45n,
    });
  });

  it("forgets a given-up fee once another event of its refund is told it and books it", async () => {
    // Before, the event booked the fee and left it kept: still listed given up (README "Reconciling a rail"), booked.
    const refundId = "re_fee_told_by_event";
    await asideKeptFees();
    const { intentId, pay } = await cardInvoice("refund_fee_told_by_event", { app: c });
    await pay();
    const before = await balances();
    fees.set(refundId, { fee: 45 });
    refused.set(refundId, keyRefusal);
    const created = refundCreated("evt_refund_fee_told_by_event", refundId, intentId);
    await deliver(c, created);
    const kept = async () => {
      const [row] = await c.db.query<{ given_up: boolean }>(
        "SELECT gave_up_at IS NOT NULL AS given_up FROM fiat_parked_fees WHERE object_id = $1",
        [refundId],
      );
      return row;
    };
    await c.db.query(
      "UPDATE fiat_parked_fees SET parked_at = now() - interval '7 days 1 minute', next_try_at = now() WHERE object_id = $1",
      [refundId],
    );
    expect(await fiatRail(c).bookParkedFees()).toEqual({ booked: 0, waiting: 0 });
    expect(await kept()).toEqual({ given_up: true });

    // The key may read refunds now, and the refund's next event, to the other process, is told its fee: booked, and
    // the fee kept of it forgotten.
    refused.delete(refundId);
    await deliver(d, { ...created, id: "evt_refund_fee_told_by_event_updated", type: "refund.updated" });
    const feeBooked = {
      clearing: before.clearing - 1000n,
      fee: before.fee + 45n,
      capital: before.capital - 45n,
    };
    expect(await balances()).toEqual(feeBooked);
    expect(await kept()).toBeUndefined();
    expect(await fiatRail(c).bookParkedFees()).toEqual({ booked: 0, waiting: 0 });
    expect(await balances()).toEqual(feeBooked);
  });

  it("keeps the fee of a refund charge.refunded lists without its PaymentIntent, and books it as that payment's", async () => {
    // Before, such a refund's event had no PaymentIntent to book its fee with: the fee was logged and lost.
    const refundId = "re_fee_listed";
    await asideKeptFees();
    const { invoiceId, intentId, pay } = await cardInvoice("refund_fee_listed", { app: c });
    await pay();
    const before = await balances();
    fees.set(refundId, { fee: 45 });
    refused.set(refundId, keyRefusal);
    const refunded = stripeEvents.chargeRefunded("evt_refund_fee_listed", {
      intentId,
      refunds: [{ refundId, amount: 1000 }],
    });
    const listed = refunded.data.object.refunds as { data: Record<string, unknown>[] };
    for (const refund of listed.data) delete refund.payment_intent;
    await deliver(c, refunded);
    expect(await balances()).toEqual({ ...before, clearing: before.clearing - 1000n });
    const [row] = await c.db.query<{ booking: unknown }>(
      "SELECT booking FROM fiat_parked_fees WHERE object_id = $1",
      [refundId],
    );
    expect(row).toEqual({ booking: { invoice: invoiceId, paymentIntent: intentId } });

    refused.delete(refundId);
    await c.db.query("UPDATE fiat_parked_fees SET next_try_at = now() WHERE object_id = $1", [refundId]);
    expect(await fiatRail(c).bookParkedFees()).toEqual({ booked: 1, waiting: 0 });
    expect(await balances()).toEqual({
      clearing: before.clearing - 1000n,
      fee: before.fee + 45n,
      capital: before.capital - 45n,
    });
    const [taken] = await c.ledger.lookupTransfers([
      railFeeLedgerId("fiat", `stripe_refund_fee:${refundId}`),
    ]);
    expect(taken).toMatchObject({ amount: 45n, userData128: derivedLedgerId(invoiceId, "invoice") });
  });
});
