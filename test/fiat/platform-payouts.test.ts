// Stripe pays the platform's own balance out to the operator's bank (an automatic or a manual payout), and gives it
// back when the payout fails or is canceled. The fiat rail's clearing account follows: a payout books the operator's
// capital off the rail once (clearing → capital, as POST /v1/rails/fiat/capital does for `out`), whichever of its
// events comes first, and its failure or cancellation gives it back once. Before, nothing was booked: GET /v1/rails
// showed every payout as a difference between the ledger and Stripe, and the operator booked each by hand. A payout
// the clearing account does not hold yet (the operator's top-up never booked) is kept and booked once it does — right
// after the operator books capital, or by the periodic pass — where it was refused 500 for Stripe to deliver again,
// which Stripe stops doing after 3 days; a failure books the money given back and taken in one ledger write; an
// Instant Payout's fee is booked as the rail's fee; a debit (negative) payout is left to the operator. Two gateway
// processes on one PostgreSQL database, against stripe-mock, the events through the real webhook route.
import { randomBytes } from "node:crypto";
import Stripe from "stripe";
import { afterAll, beforeAll, describe, expect, inject, it, onTestFinished } from "vitest";
import type { FiatRail } from "../../adapters/fiat/index.ts";
import { assets, formatAmount } from "../../core/index.ts";
import { type App, createApp } from "../../gateway/app.ts";
import { TransferFlags, transferCodes } from "../../gateway/ledger/index.ts";
import {
  applyParkedRailCapital,
  bookRailCapital,
  parkedRailCapitalPassMax,
  railCapitalLedgerId,
} from "../../gateway/settlement/index.ts";
import { railFeeFundingLedgerId, railFeeLedgerId } from "../../gateway/settlement/rail-fees.ts";
import { railCapitalBesideHandLedgerId } from "../../gateway/settlement/reconciliation.ts";
import { apiClient } from "../support/api.ts";
import { testConfig } from "../support/config.ts";
import { createTestDatabase } from "../support/postgres.ts";
import { paidCardInvoice } from "./card-invoice.ts";
import { ProxyAnswer, startCuttingProxy } from "./cutting-proxy.ts";
import { deliverStripeEvent, stripeMockEnv } from "./stripe-events.ts";

const secret = "whsec_platform_payouts_test";
const operatorKey = `op_${randomBytes(32).toString("base64url")}`;
let env: Record<string, string>;
let a: App;
let b: App;

beforeAll(async () => {
  env = {
    ...stripeMockEnv(secret),
    OPERATOR_KEY: operatorKey,
    DATABASE_URL: await createTestDatabase(inject("postgresUrl"), "fiat_platform_payouts"),
  };
  a = await createApp(testConfig(env));
  b = await createApp(testConfig(env));
});
afterAll(async () => {
  await a?.close();
  await b?.close();
});

type PayoutFields = {
  payoutId: string;
  amount: unknown;
  status?: string;
  currency?: string;
  /** A connected account's payout (the event's `account`). */
  account?: string;
  /** `standard` unless told. */
  method?: string;
};

/** A payout event as Stripe sends it for the platform's own balance (no `account`) unless told. */
function payoutEvent(eventId: string, type: string, f: PayoutFields) {
  const status =
    f.status ??
    { "payout.paid": "paid", "payout.failed": "failed", "payout.canceled": "canceled" }[type] ??
    "pending";
  return {
    id: eventId,
    object: "event",
    type,
    created: 1_800_000_000,
    livemode: false,
    api_version: "2026-10-28.clover",
    ...(f.account === undefined ? {} : { account: f.account }),
    data: {
      object: {
        id: f.payoutId,
        object: "payout",
        amount: f.amount,
        arrival_date: 1_800_086_400,
        automatic: true,
        balance_transaction: `txn_${f.payoutId}`,
        currency: f.currency ?? "usd",
        destination: "ba_operator",
        failure_balance_transaction:
          status === "failed" || status === "canceled" ? `txn_${f.payoutId}_back` : null,
        failure_code: status === "failed" ? "account_closed" : null,
        failure_message: status === "failed" ? "The bank account has been closed." : null,
        metadata: {},
        method: f.method ?? "standard",
        source_type: "card",
        status,
        type: "bank_account",
      },
    },
  };
}

const deliver = async (app: App, event: unknown) => {
  const answer = await deliverStripeEvent(app, event, { secret });
  expect(answer.status, JSON.stringify(answer.body)).toBe(200);
  return answer.body;
};

/** The fiat rail's USD account of `kind`: debits less credits (clearing and fee are debit-normal; capital is not). */
async function railBalance(kind: "clearing" | "capital" | "fee"): Promise<bigint> {
  const [row] = await a.db.query<{ ledger_account_id: bigint }>(
    "SELECT ledger_account_id FROM accounts WHERE kind = $1 AND rail = 'fiat' AND asset = 'USD'",
    [kind],
  );
  if (row === undefined) return 0n; // not opened yet: nothing booked on it
  const [account] = await a.ledger.lookupAccounts([BigInt(row.ledger_account_id)]);
  return account!.debitsPosted - account!.creditsPosted;
}

const balances = async () => ({
  clearing: await railBalance("clearing"),
  capital: await railBalance("capital"),
});

/**
 * The ledger's bookings of payout `payoutId` (undefined: not booked): its money taken, and given back, each under its
 * own reference, as the operator's capital listing shows them.
 */
async function bookingsOf(payoutId: string) {
  const booked = async (reference: string) =>
    (await a.ledger.lookupTransfers([railCapitalLedgerId("fiat", reference)]))[0];
  return {
    taken: await booked(`stripe_payout:${payoutId}`),
    returned: await booked(`stripe_payout_returned:${payoutId}`),
  };
}

/** A card payment of 25.00 credited on the rail: the clearing account holds it, so a payout of it fits. */
const funded = (name: string) => paidCardInvoice(a, name, secret);

/** The references of the operator's capital kept for want of room in the clearing account. */
const parked = async () =>
  (
    await a.db.query<{ reference: string }>(
      "SELECT reference FROM rail_capital_parked WHERE rail = 'fiat' ORDER BY reference",
    )
  ).map((row) => row.reference);

/** The periodic pass of process `app`, as it runs every minute. */
const parkedPass = (app: App) => applyParkedRailCapital({ ...app.payments, logger: app.server.log });

describe("a payout of the platform's Stripe balance to the operator's bank", () => {
  it("takes its amount off the clearing account into the operator's capital once, whichever of its events comes first", async () => {
    await funded("payout_taken");
    const before = await balances();
    const created = payoutEvent("evt_po_taken_created", "payout.created", {
      payoutId: "po_taken",
      amount: 1500,
    });
    // Delivered to both processes at once, again under the same id, as payout.paid, and under another event id.
    const answers = await Promise.all([deliver(a, created), deliver(b, created)]);
    expect(answers).toContainEqual({ received: true, outcome: "applied" });
    expect(await deliver(a, created)).toEqual({ received: true, outcome: "duplicate" });
    await deliver(b, payoutEvent("evt_po_taken_paid", "payout.paid", { payoutId: "po_taken", amount: 1500 }));
    await deliver(a, { ...created, id: "evt_po_taken_created_again" });

    expect(await balances()).toEqual({ clearing: before.clearing - 1500n, capital: before.capital + 1500n });
    const { taken, returned } = await bookingsOf("po_taken");
    expect(taken).toMatchObject({
      amount: 1500n,
      code: transferCodes.payments.capitalIn,
      evidence: {
        rail: "fiat",
        reference: "stripe_payout:po_taken",
        detail: { kind: "operator_capital", direction: "out" },
      },
    });
    expect(returned).toBeUndefined();
  });

  it("gives a failed or canceled payout back once, and a failure delivered before the payout's creation ends at nothing", async () => {
    await funded("payout_returned");
    const before = await balances();

    // Failed before its payout.created arrives (or without it): taken and given back at once.
    const failed = payoutEvent("evt_po_failed_failed", "payout.failed", {
      payoutId: "po_failed",
      amount: 2000,
    });
    expect(await deliver(b, failed)).toEqual({ received: true, outcome: "applied" });
    expect(await balances()).toEqual(before);
    const failedBookings = await bookingsOf("po_failed");
    expect(failedBookings.taken).toMatchObject({ amount: 2000n });
    expect(failedBookings.returned).toMatchObject({
      amount: 2000n,
      evidence: { reference: "stripe_payout_returned:po_failed", detail: { direction: "in" } },
    });
    // Given back and taken in one ledger write, a chain (all or none): written one after the other, the clearing
    // account held the amount given back alone in between, for a reservation made meanwhile to take, and the taking
    // was then refused.
    expect(failedBookings.returned!.flags & TransferFlags.linked).toBe(TransferFlags.linked);
    expect(failedBookings.taken!.timestamp).toBeGreaterThan(failedBookings.returned!.timestamp);
    await deliver(
      a,
      payoutEvent("evt_po_failed_created", "payout.created", { payoutId: "po_failed", amount: 2000 }),
    );
    await deliver(a, { ...failed, id: "evt_po_failed_failed_again" });
    expect(await balances()).toEqual(before);

    // Canceled while pending, after its creation took the money: given back.
    const canceled = { payoutId: "po_canceled", amount: 1200 };
    await deliver(a, payoutEvent("evt_po_canceled_created", "payout.created", canceled));
    expect(await balances()).toEqual({ clearing: before.clearing - 1200n, capital: before.capital + 1200n });
    await deliver(b, payoutEvent("evt_po_canceled_canceled", "payout.canceled", canceled));
    await deliver(a, payoutEvent("evt_po_canceled_canceled_again", "payout.canceled", canceled));
    expect(await balances()).toEqual(before);

    // Paid, then failed by the bank: given back when it fails.
    const bounced = { payoutId: "po_bounced", amount: 800 };
    await deliver(a, payoutEvent("evt_po_bounced_paid", "payout.paid", bounced));
    expect(await balances()).toEqual({ clearing: before.clearing - 800n, capital: before.capital + 800n });
    await deliver(b, payoutEvent("evt_po_bounced_failed", "payout.failed", bounced));
    expect(await balances()).toEqual(before);
  });

  it("leaves what is no payout of the platform's in the rail's currency, or no payout at all, unbooked with a reason", async () => {
    await funded("payout_ignored");
    const before = await balances();
    const ignored = async (event: unknown, reason: string) =>
      expect(await deliver(a, event)).toEqual({ received: true, outcome: "ignored", reason });

    const connected = { payoutId: "po_connected", amount: 900, account: "acct_1Merchant" };
    await ignored(payoutEvent("evt_po_connected_created", "payout.created", connected), "connected_account");
    await ignored(
      payoutEvent("evt_po_connected_canceled", "payout.canceled", connected),
      "connected_account",
    );
    // A connected account's failed payout stays news of it, nothing booked.
    expect(await deliver(a, payoutEvent("evt_po_connected_failed", "payout.failed", connected))).toEqual({
      received: true,
      outcome: "applied",
    });
    await ignored(
      payoutEvent("evt_po_eur", "payout.created", { payoutId: "po_eur", amount: 900, currency: "eur" }),
      "currency_mismatch",
    );
    // Malformed payouts: an amount that is no whole number of cents, none, an id too long to book.
    await ignored(
      payoutEvent("evt_po_text", "payout.created", { payoutId: "po_text", amount: "9.00" }),
      "object_invalid",
    );
    await ignored(
      payoutEvent("evt_po_frac", "payout.created", { payoutId: "po_frac", amount: 9.5 }),
      "object_invalid",
    );
    await ignored(
      payoutEvent("evt_po_zero", "payout.failed", { payoutId: "po_zero", amount: 0 }),
      "object_invalid",
    );
    // A debit: Stripe's withdrawal from the operator's bank. It may pay what the operator owes Stripe for fees, booked
    // funded already: the operator books what of it is new capital.
    await ignored(
      payoutEvent("evt_po_neg", "payout.created", { payoutId: "po_neg", amount: -900 }),
      "payout_debit",
    );
    await ignored(
      payoutEvent("evt_po_neg_failed", "payout.failed", { payoutId: "po_neg", amount: -900 }),
      "payout_debit",
    );
    await ignored(
      payoutEvent("evt_po_long", "payout.created", { payoutId: `po_${"x".repeat(98)}`, amount: 900 }),
      "object_invalid",
    );
    await ignored(
      {
        ...payoutEvent("evt_po_noid", "payout.created", { payoutId: "po_noid", amount: 900 }),
        data: { object: {} },
      },
      "object_invalid",
    );
    await ignored(
      payoutEvent("evt_po_updated", "payout.updated", { payoutId: "po_upd", amount: 900 }),
      "event_type_not_handled",
    );

    // Signed with another secret: refused before anything is read.
    const forged = await deliverStripeEvent(
      a,
      payoutEvent("evt_po_forged", "payout.created", { payoutId: "po_forged", amount: 900 }),
      { secret: "whsec_someone_else" },
    );
    expect(forged.status).toBe(400);
    expect(forged.body.error.code).toBe("signature_invalid");

    expect(await balances()).toEqual(before);
    expect(await bookingsOf("po_forged")).toEqual({ taken: undefined, returned: undefined });
  });

  it("keeps one the clearing account does not hold, answered 200, and books it once the operator's capital is booked", async () => {
    const before = await balances();
    // Stripe paid out 1.00 more than the ledger knows the rail holds: the operator's top-up never booked.
    const payout = { payoutId: "po_short", amount: Number(before.clearing) + 100 };
    const created = payoutEvent("evt_po_short_created", "payout.created", payout);
    // Done for Stripe (it stops delivering an event again after 3 days: refused, the payout was lost then), nothing
    // booked yet: kept.
    expect(await deliver(a, created)).toEqual({ received: true, outcome: "applied" });
    expect(await deliver(b, payoutEvent("evt_po_short_paid", "payout.paid", payout))).toEqual({
      received: true,
      outcome: "applied",
    });
    expect(await balances()).toEqual(before);
    expect(await bookingsOf("po_short")).toEqual({ taken: undefined, returned: undefined });
    expect(await parked()).toEqual(["stripe_payout:po_short"]);

    const topUp = await apiClient(a, operatorKey)("POST", "/v1/rails/fiat/capital", {
      asset: "USD",
      direction: "in",
      amount: "1.00",
      reference: "stripe-top-up-short",
    });
    expect(topUp.status, JSON.stringify(topUp.body)).toBe(201);
    // Booked with the top-up: no delivery of Stripe's waited for.
    expect(await balances()).toEqual({
      clearing: 0n,
      capital: before.capital - 100n + BigInt(payout.amount),
    });
    expect((await bookingsOf("po_short")).taken).toMatchObject({ amount: BigInt(payout.amount) });
    expect(await parked()).toEqual([]);
    expect(await deliver(b, created)).toEqual({ received: true, outcome: "duplicate" });
    await deliver(a, { ...created, id: "evt_po_short_created_again" });
    expect(await parkedPass(b)).toEqual({ booked: 0, waiting: 0 });
    expect(await balances()).toEqual({
      clearing: 0n,
      capital: before.capital - 100n + BigInt(payout.amount),
    });
  });

  it("tries every kept one each pass: a page of older ones that cannot be booked keeps no newer one waiting", async () => {
    // A page of movements of a rail this process lacks (another process's), all older than the payout below.
    await a.db.query(
      `INSERT INTO rail_capital_parked (rail, reference, asset, direction, amount, description, parked_at)
       SELECT 'elsewhere', 'old_' || i, 'USD', 'out', 1, 'kept elsewhere', now() - interval '1 day'
       FROM generate_series(1, $1::int) AS i`,
      [parkedRailCapitalPassMax],
    );
    onTestFinished(async () => {
      await a.db.query("DELETE FROM rail_capital_parked WHERE rail = 'elsewhere'");
    });
    const before = await balances();
    const payout = { payoutId: "po_behind_page", amount: Number(before.clearing) + 50 };
    await deliver(a, payoutEvent("evt_po_behind_page", "payout.created", payout));
    expect(await parked()).toEqual(["stripe_payout:po_behind_page"]);
    await funded("payout_behind_page");
    expect(await parkedPass(b)).toEqual({ booked: 1, waiting: parkedRailCapitalPassMax });
    expect((await bookingsOf("po_behind_page")).taken).toMatchObject({ amount: BigInt(payout.amount) });
    expect(await parked()).toEqual([]);
  });

  it("books a kept one once, however many passes and deliveries race for it, when money that came in makes room", async () => {
    const before = await balances();
    const payout = { payoutId: "po_raced", amount: Number(before.clearing) + 700 };
    await deliver(a, payoutEvent("evt_po_raced_created", "payout.created", payout));
    expect(await parked()).toEqual(["stripe_payout:po_raced"]);
    expect(await parkedPass(b)).toEqual({ booked: 0, waiting: 1 });

    // A card payment comes in (no capital booked, so nothing tries the payout at once): the next pass finds room.
    await funded("payout_raced");
    const paid = payoutEvent("evt_po_raced_paid", "payout.paid", payout);
    const [passA, passB] = await Promise.all([
      parkedPass(a),
      parkedPass(b),
      deliver(a, paid),
      deliver(b, paid),
      deliver(b, { ...paid, id: "evt_po_raced_paid_again" }),
    ]);
    expect(passA.waiting + passB.waiting).toBe(0);
    expect(await balances()).toEqual({
      clearing: before.clearing + 2500n - BigInt(payout.amount),
      capital: before.capital + BigInt(payout.amount),
    });
    expect((await bookingsOf("po_raced")).taken).toMatchObject({ amount: BigInt(payout.amount) });
    expect(await parked()).toEqual([]);
  });

  it("books a kept one's taking and its return at once when it fails, and keeps nothing", async () => {
    const before = await balances();
    const payout = { payoutId: "po_kept_failed", amount: Number(before.clearing) + 300 };
    await deliver(a, payoutEvent("evt_po_kept_failed_created", "payout.created", payout));
    expect(await parked()).toEqual(["stripe_payout:po_kept_failed"]);
    expect(await deliver(b, payoutEvent("evt_po_kept_failed_failed", "payout.failed", payout))).toEqual({
      received: true,
      outcome: "applied",
    });
    expect(await balances()).toEqual(before);
    const { taken, returned } = await bookingsOf("po_kept_failed");
    expect(taken).toMatchObject({ amount: BigInt(payout.amount) });
    expect(returned).toMatchObject({ amount: BigInt(payout.amount) });
    expect(await parked()).toEqual([]);
  });
});

// Before the gateway booked payouts from Stripe's events, the operator booked each by hand (POST
// /v1/rails/fiat/capital), under the payout's own id: its events, delivered since, booked it a second time under
// stripe_payout:<id>, the clearing account below Stripe's balance by the payout. And a payout booked by hand after its
// events (or at the same time, from another process) was booked twice all the same: only the events looked for a
// booking by hand, and the two had each their own ledger id. A booking by hand under a payout's id now takes the id of
// the payout's booking from its events, so that the ledger holds one of the two, whichever comes first.
describe("a payout the operator booked by hand under its id", () => {
  /** The operator's booking by hand of `amount` (dollars) in `direction` under `reference`, through process `app`. */
  const bookByHand = (
    reference: string,
    direction: "in" | "out",
    amount: string,
    { app = a, description = "Stripe payout to the bank" }: { app?: App; description?: string } = {},
  ) =>
    apiClient(app, operatorKey)("POST", "/v1/rails/fiat/capital", {
      asset: "USD",
      direction,
      amount,
      reference,
      description,
    });
  const byHand = async (reference: string, direction: "in" | "out", amount: string) => {
    const booked = await bookByHand(reference, direction, amount);
    expect(booked.status, JSON.stringify(booked.body)).toBe(201);
    expect(booked.headers["idempotent-replayed"]).toBeUndefined();
    return booked;
  };
  /** The rail's booking of payout `payoutId` beside one by hand of another movement under its id. */
  const besideHand = async (payoutId: string) =>
    (await a.ledger.lookupTransfers([railCapitalBesideHandLedgerId("fiat", `stripe_payout:${payoutId}`)]))[0];

  it("is not booked again by its events; a failed one's money back is booked from its failure", async () => {
    await funded("payout_by_hand");
    const before = await balances();
    const afterHand = { clearing: before.clearing - 1200n, capital: before.capital + 1200n };
    await byHand("po_by_hand", "out", "12.00");
    expect(await balances()).toEqual(afterHand);
    const payout = { payoutId: "po_by_hand", amount: 1200 };
    await deliver(a, payoutEvent("evt_po_by_hand_created", "payout.created", payout));
    await deliver(b, payoutEvent("evt_po_by_hand_paid", "payout.paid", payout));
    expect(await balances()).toEqual(afterHand);
    // The payout's one booking is the operator's, under the id its events book it under.
    const { taken, returned } = await bookingsOf("po_by_hand");
    expect(taken).toMatchObject({
      amount: 1200n,
      evidence: { reference: "po_by_hand", detail: { description: "Stripe payout to the bank" } },
    });
    expect(returned).toBeUndefined();
    expect(await besideHand("po_by_hand")).toBeUndefined();
    // The operator's body again is that booking again.
    const again = await bookByHand("po_by_hand", "out", "12.00");
    expect(again.status, JSON.stringify(again.body)).toBe(201);
    expect(again.headers["idempotent-replayed"]).toBe("true");
    expect(again.body).toMatchObject({ reference: "po_by_hand", amount: "12.00" });
    expect(await balances()).toEqual(afterHand);

    // Booked by hand when made, then failed: Stripe gave the amount back, which only its failure says.
    await byHand("po_by_hand_failed", "out", "8.00");
    await deliver(
      b,
      payoutEvent("evt_po_by_hand_failed", "payout.failed", { payoutId: "po_by_hand_failed", amount: 800 }),
    );
    expect(await balances()).toEqual(afterHand);
    const failed = await bookingsOf("po_by_hand_failed");
    expect(failed.taken).toMatchObject({ amount: 800n, evidence: { reference: "po_by_hand_failed" } });
    expect(failed.returned).toMatchObject({ amount: 800n });
  });

  it("is the payout's booking again when booked by hand after its events, and is refused as another movement", async () => {
    await funded("payout_hand_after");
    const before = await balances();
    const afterPayout = { clearing: before.clearing - 1100n, capital: before.capital + 1100n };
    await deliver(
      a,
      payoutEvent("evt_po_hand_after", "payout.paid", { payoutId: "po_hand_after", amount: 1100 }),
    );
    expect(await balances()).toEqual(afterPayout);

    // The same movement, whatever its description: the payout's booking, answered as a replay.
    const same = await bookByHand("po_hand_after", "out", "11.00", {
      app: b,
      description: "payout, by hand",
    });
    expect(same.status, JSON.stringify(same.body)).toBe(201);
    expect(same.headers["idempotent-replayed"]).toBe("true");
    expect(same.body).toMatchObject({
      reference: "stripe_payout:po_hand_after",
      direction: "out",
      amount: "11.00",
    });
    expect(await balances()).toEqual(afterPayout);

    // Another amount or direction under its id: refused, naming the payout's booking.
    for (const [direction, amount] of [
      ["out", "10.00"],
      ["in", "11.00"],
    ] as const) {
      const other = await bookByHand("po_hand_after", direction, amount);
      expect(other.status, JSON.stringify(other.body)).toBe(409);
      expect(other.body.error).toMatchObject({ code: "capital_reference_reused", param: "reference" });
      expect(other.body.error.message).toContain("books from its provider's events");
      expect(other.body.error.message).toContain('"stripe_payout:po_hand_after": out 11.00 USD');
    }
    expect(await balances()).toEqual(afterPayout);
  });

  it("is booked once when the operator books it by hand while its event is delivered to another process", async () => {
    await funded("payout_hand_race");
    const before = await balances();
    const paid = payoutEvent("evt_po_hand_race", "payout.paid", { payoutId: "po_hand_race", amount: 700 });
    const [hand] = await Promise.all([
      bookByHand("po_hand_race", "out", "7.00", { app: b }),
      deliver(a, paid),
    ]);
    expect(hand.status, JSON.stringify(hand.body)).toBe(201);
    await deliver(b, { ...paid, id: "evt_po_hand_race_again" });
    expect(await balances()).toEqual({ clearing: before.clearing - 700n, capital: before.capital + 700n });
    expect((await bookingsOf("po_hand_race")).taken).toMatchObject({ amount: 700n });
    expect(await besideHand("po_hand_race")).toBeUndefined();
  });

  it("finds one booked by hand under its own id before the two shared one, and answers its body again with it", async () => {
    await funded("payout_hand_legacy");
    const before = await balances();
    const afterHand = { clearing: before.clearing - 600n, capital: before.capital + 600n };
    // As a gateway of before booked it: the fiat rail naming no payout for a reference of the operator's.
    const fiat = a.payments.rails.get("fiat")!;
    const older = await bookRailCapital(
      { ...a.payments, rails: new Map([["fiat", { ...fiat, capitalEventReference: () => null }]]) },
      {
        rail: "fiat",
        asset: "USD",
        direction: "out",
        amount: "6.00",
        reference: "po_hand_legacy",
        description: null,
      },
    );
    expect(older).toMatchObject({ ok: true, replayed: false });
    expect(older.ok && older.booking.transferId).toBe(railCapitalLedgerId("fiat", "po_hand_legacy"));
    expect(await balances()).toEqual(afterHand);

    await deliver(
      b,
      payoutEvent("evt_po_hand_legacy", "payout.created", { payoutId: "po_hand_legacy", amount: 600 }),
    );
    const again = await apiClient(a, operatorKey)("POST", "/v1/rails/fiat/capital", {
      asset: "USD",
      direction: "out",
      amount: "6.00",
      reference: "po_hand_legacy",
    });
    expect(again.status, JSON.stringify(again.body)).toBe(201);
    expect(again.headers["idempotent-replayed"]).toBe("true");
    expect(await balances()).toEqual(afterHand);
    expect(await bookingsOf("po_hand_legacy")).toEqual({ taken: undefined, returned: undefined });
  });

  it("books its own taking beside a booking by hand under its id of another movement (another amount, the other way)", async () => {
    await funded("payout_by_hand_other");
    const before = await balances();
    await byHand("po_by_hand_less", "out", "5.00");
    await byHand("po_by_hand_in", "in", "3.00");
    const less = payoutEvent("evt_po_by_hand_less", "payout.paid", {
      payoutId: "po_by_hand_less",
      amount: 900,
    });
    await deliver(a, less);
    await deliver(b, { ...less, id: "evt_po_by_hand_less_again" });
    await deliver(
      a,
      payoutEvent("evt_po_by_hand_in", "payout.paid", { payoutId: "po_by_hand_in", amount: 300 }),
    );
    // Stripe paid out 9.00 and 3.00: the ledger books both, whatever else was booked by hand under their ids.
    expect(await balances()).toEqual({
      clearing: before.clearing - 500n + 300n - 900n - 300n,
      capital: before.capital + 500n - 300n + 900n + 300n,
    });
    expect((await bookingsOf("po_by_hand_less")).taken).toMatchObject({
      amount: 500n,
      evidence: { reference: "po_by_hand_less" },
    });
    expect(await besideHand("po_by_hand_less")).toMatchObject({
      amount: 900n,
      evidence: { reference: "stripe_payout:po_by_hand_less", detail: { direction: "out" } },
    });
    expect(await besideHand("po_by_hand_in")).toMatchObject({
      amount: 300n,
      evidence: { detail: { direction: "out" } },
    });
  });

  it("leaves a kept one unbooked when the operator books it by hand meanwhile, and keeps it no more", async () => {
    const before = await balances();
    const payout = { payoutId: "po_kept_by_hand", amount: Number(before.clearing) + 400 };
    await deliver(a, payoutEvent("evt_po_kept_by_hand", "payout.created", payout));
    expect(await parked()).toEqual(["stripe_payout:po_kept_by_hand"]);
    // A card payment makes room (no capital booked: nothing tries the payout at once), and the operator books the
    // payout by hand before the pass comes.
    await funded("payout_kept_by_hand");
    await byHand("po_kept_by_hand", "out", formatAmount(BigInt(payout.amount), assets.USD));
    expect(await parkedPass(b)).toEqual({ booked: 1, waiting: 0 });
    expect(await parked()).toEqual([]);
    expect((await bookingsOf("po_kept_by_hand")).taken).toMatchObject({
      evidence: { reference: "po_kept_by_hand" },
    });
    expect(await besideHand("po_kept_by_hand")).toBeUndefined();
    expect(await balances()).toEqual({
      clearing: before.clearing + 2500n - BigInt(payout.amount),
      capital: before.capital + BigInt(payout.amount),
    });
  });
});

describe("an Instant Payout of the platform's balance", () => {
  /**
   * Stripe's payout `id` as it answers GET /v1/payouts/:id with its balance transactions expanded: an Instant Payout's
   * takes its amount and its `fee` (1 % in the US); its failure's, when it failed, gives both back. stripe-mock's
   * balance transactions all say fee 0, so the proxy in front of it answers these itself.
   */
  function instantPayout(id: string, amount: number, fee: number, failed: boolean) {
    const txn = (suffix: string, sign: 1 | -1, type: string) => ({
      id: `txn_${id}${suffix}`,
      object: "balance_transaction",
      amount: sign * amount,
      available_on: 1_800_000_000,
      created: 1_800_000_000,
      currency: "usd",
      description: "STRIPE PAYOUT",
      exchange_rate: null,
      fee: -sign * fee,
      fee_details: [
        {
          amount: -sign * fee,
          application: null,
          currency: "usd",
          description: "Instant Payout fee",
          type: "stripe_fee",
        },
      ],
      net: sign * (amount + fee),
      reporting_category: type,
      source: id,
      status: "available",
      type,
    });
    return {
      id,
      object: "payout",
      amount,
      arrival_date: 1_800_000_000,
      automatic: false,
      balance_transaction: txn("", -1, "payout"),
      created: 1_800_000_000,
      currency: "usd",
      destination: "card_operator",
      failure_balance_transaction: failed ? txn("_back", 1, "payout_failure") : null,
      failure_code: failed ? "could_not_process" : null,
      failure_message: null,
      livemode: false,
      metadata: {},
      method: "instant",
      source_type: "card",
      status: failed ? "failed" : "paid",
      type: "card",
    };
  }

  it("books its fee once as the rail's fee, funded by the operator's capital, and its return when its failure gives it back", async () => {
    const payouts: Record<string, ReturnType<typeof instantPayout>> = {
      po_instant: instantPayout("po_instant", 1000, 10, false),
      po_instant_failed: instantPayout("po_instant_failed", 2000, 20, true),
    };
    const proxy = await startCuttingProxy(
      inject("stripeMockPort"),
      () => false,
      (method, url) => {
        const path = new URL(url, "http://stripe").pathname;
        const id = /^\/v1\/payouts\/([^/]+)$/.exec(path)?.[1];
        return method === "GET" && id !== undefined ? (payouts[id] ?? null) : null;
      },
    );
    // A third process on the same database, whose Stripe is the proxy.
    const c = await createApp(testConfig({ ...env, STRIPE_API_PORT: String(proxy.port) }));
    onTestFinished(async () => {
      await c.close();
      await proxy.close();
    });
    await funded("payout_instant");
    const before = { ...(await balances()), fee: await railBalance("fee") };
    const paid = payoutEvent("evt_po_instant_paid", "payout.paid", {
      payoutId: "po_instant",
      amount: 1000,
      method: "instant",
    });
    await deliver(c, paid);
    await deliver(c, { ...paid, id: "evt_po_instant_paid_again" });
    // Stripe took 10.00 and 0.10 off the balance: the payout as the operator's capital out, the fee as the rail's fee
    // (from the clearing account into the fee account), funded by the operator's capital as every fee of Stripe's is.
    expect({ ...(await balances()), fee: await railBalance("fee") }).toEqual({
      clearing: before.clearing - 1000n,
      capital: before.capital + 1000n - 10n,
      fee: before.fee + 10n,
    });
    const [feeTaken, feeFunded] = await a.ledger.lookupTransfers([
      railFeeLedgerId("fiat", "stripe_payout_fee:po_instant"),
      railFeeFundingLedgerId("fiat", "stripe_payout_fee:po_instant"),
    ]);
    expect(feeTaken).toMatchObject({
      amount: 10n,
      code: transferCodes.payments.feePaid,
      userData128: railCapitalLedgerId("fiat", "stripe_payout:po_instant"),
    });
    expect(feeFunded).toMatchObject({ amount: 10n, code: transferCodes.payments.capitalIn });

    // Failed: Stripe gave the amount and the fee back (its failure's balance transaction): all of it ends at nothing.
    await deliver(
      c,
      payoutEvent("evt_po_instant_failed", "payout.failed", {
        payoutId: "po_instant_failed",
        amount: 2000,
        method: "instant",
      }),
    );
    expect({ ...(await balances()), fee: await railBalance("fee") }).toEqual({
      clearing: before.clearing - 1000n,
      capital: before.capital + 1000n - 10n,
      fee: before.fee + 10n,
    });
    const [failedFee, failedFeeBack] = await a.ledger.lookupTransfers([
      railFeeLedgerId("fiat", "stripe_payout_fee:po_instant_failed"),
      railFeeLedgerId("fiat", "stripe_payout_failure_fee:po_instant_failed"),
    ]);
    expect(failedFee).toMatchObject({ amount: 20n });
    expect(failedFeeBack).toMatchObject({ amount: 20n, evidence: { detail: { kind: "fee_given_back" } } });
  });
});

describe("a payout whose fee Stripe does not tell", () => {
  it("books its amount at once, answers the event not applied, and books its fee when Stripe delivers it again", async () => {
    // Stripe does not answer GET /v1/payouts/:id (an outage; a restricted key that may not read payouts) until `told`.
    let told = false;
    const payout = {
      id: "po_fee_untold",
      object: "payout",
      amount: 1200,
      arrival_date: 1_800_000_000,
      automatic: false,
      balance_transaction: {
        id: "txn_po_fee_untold",
        object: "balance_transaction",
        amount: -1200,
        currency: "usd",
        fee: 12,
        net: -1212,
        type: "payout",
      },
      currency: "usd",
      failure_balance_transaction: null,
      method: "instant",
      status: "paid",
    };
    const proxy = await startCuttingProxy(
      inject("stripeMockPort"),
      (method, url) => method === "GET" && new URL(url, "http://stripe").pathname.startsWith("/v1/payouts/"),
      (method, url) =>
        told && method === "GET" && new URL(url, "http://stripe").pathname === `/v1/payouts/${payout.id}`
          ? payout
          : null,
    );
    const c = await createApp(testConfig({ ...env, STRIPE_API_PORT: String(proxy.port) }));
    onTestFinished(async () => {
      await c.close();
      await proxy.close();
    });
    await funded("payout_fee_untold");
    const before = { ...(await balances()), fee: await railBalance("fee") };
    const paid = payoutEvent("evt_po_fee_untold", "payout.paid", {
      payoutId: payout.id,
      amount: 1200,
      method: "instant",
    });
    const refused = await deliverStripeEvent(c, paid, { secret });
    expect(refused.status).toBe(500);
    // The amount, which needs no lookup, is booked already: not lost should Stripe stop delivering the event.
    expect({ ...(await balances()), fee: await railBalance("fee") }).toEqual({
      clearing: before.clearing - 1200n,
      capital: before.capital + 1200n,
      fee: before.fee,
    });
    told = true;
    await deliver(c, paid);
    expect({ ...(await balances()), fee: await railBalance("fee") }).toEqual({
      clearing: before.clearing - 1200n,
      capital: before.capital + 1200n - 12n,
      fee: before.fee + 12n,
    });
  });
});

describe("a payout whose fee Stripe refuses to tell", () => {
  it("books its amount and answers the event applied, keeps its fee, and books that once when Stripe tells it", async () => {
    // A restricted key that may not read payouts: GET /v1/payouts/:id is refused 403, every time, until the operator
    // gives it the permission (`refusing` false): then Stripe tells the Instant Payout's fee.
    let refusing = true;
    const payout = {
      id: "po_fee_refused",
      object: "payout",
      amount: 1300,
      arrival_date: 1_800_000_000,
      automatic: false,
      balance_transaction: {
        id: "txn_po_fee_refused",
        object: "balance_transaction",
        amount: -1300,
        currency: "usd",
        fee: 13,
        net: -1313,
        type: "payout",
      },
      currency: "usd",
      failure_balance_transaction: null,
      method: "instant",
      status: "paid",
    };
    const proxy = await startCuttingProxy(
      inject("stripeMockPort"),
      () => false,
      (method, url) => {
        if (method !== "GET" || !new URL(url, "http://stripe").pathname.startsWith("/v1/payouts/"))
          return null;
        return refusing
          ? new ProxyAnswer(403, {
              error: {
                type: "invalid_request_error",
                message:
                  "The provided key 'rk_test_***' does not have the required permissions for this endpoint.",
              },
            })
          : payout;
      },
    );
    const c = await createApp(testConfig({ ...env, STRIPE_API_PORT: String(proxy.port) }));
    onTestFinished(async () => {
      await c.close();
      await proxy.close();
    });
    await funded("payout_fee_refused");
    const before = { ...(await balances()), fee: await railBalance("fee") };
    const paid = payoutEvent("evt_po_fee_refused", "payout.paid", {
      payoutId: payout.id,
      amount: 1300,
      method: "instant",
    });
    // Refused, it would fail for as long as Stripe delivers it: applied, and its fee kept.
    expect(await deliver(c, paid)).toEqual({ received: true, outcome: "applied" });
    const amountBooked = {
      clearing: before.clearing - 1300n,
      capital: before.capital + 1300n,
      fee: before.fee,
    };
    expect({ ...(await balances()), fee: await railBalance("fee") }).toEqual(amountBooked);
    const kept = () =>
      c.db.query<{ kind: string; failure: boolean; tries: number }>(
        "SELECT kind, failure, tries FROM fiat_parked_fees WHERE rail = 'fiat' AND object_id = $1",
        [payout.id],
      );
    expect(await kept()).toEqual([{ kind: "payout", failure: true, tries: 0 }]);

    // Told at its next try (only this process asks the proxy: its try is made due, and at once taken by it).
    refusing = false;
    await c.db.query("UPDATE fiat_parked_fees SET next_try_at = now() WHERE object_id = $1", [payout.id]);
    const rail = c.payments.rails.get("fiat") as FiatRail;
    expect(await rail.bookParkedFees()).toEqual({ booked: 1, waiting: 0 });
    const feeBooked = { ...amountBooked, capital: amountBooked.capital - 13n, fee: before.fee + 13n };
    expect({ ...(await balances()), fee: await railBalance("fee") }).toEqual(feeBooked);
    expect(await kept()).toEqual([]);
    // Under the ledger id the payout's event books it with, linked to the payout's booking.
    const [feeTaken] = await a.ledger.lookupTransfers([
      railFeeLedgerId("fiat", `stripe_payout_fee:${payout.id}`),
    ]);
    expect(feeTaken).toMatchObject({
      amount: 13n,
      code: transferCodes.payments.feePaid,
      userData128: railCapitalLedgerId("fiat", `stripe_payout:${payout.id}`),
    });

    // The payout's event delivered again, Stripe telling its fee now: nothing more.
    await deliver(c, { ...paid, id: "evt_po_fee_refused_again" });
    expect({ ...(await balances()), fee: await railBalance("fee") }).toEqual(feeBooked);
  });
});

describe("a failed payout whose failure's fee Stripe refuses to tell", () => {
  it("keeps that fee when another event of the payout is told its fee but not its failure's, and books it once told", async () => {
    // An event told a payout's fee forgets the fee kept of it, not one asking for its failure's fee that the event's
    // lookup did not tell: the payout failed, its failure's balance transaction not there (yet). Before, a missing one
    // was told as 0, and the kept fee forgotten: what the failure gave back of the Instant Payout's fee never booked.
    let refusing = true;
    let failureTold = false;
    const txn = (suffix: string, amount: number, fee: number, type: string) => ({
      id: `txn_po_failure_kept${suffix}`,
      object: "balance_transaction",
      amount,
      currency: "usd",
      fee,
      net: amount - fee,
      type,
    });
    const payout = () => ({
      id: "po_failure_kept",
      object: "payout",
      amount: 1300,
      arrival_date: 1_800_000_000,
      automatic: false,
      balance_transaction: txn("", -1300, 13, "payout"),
      currency: "usd",
      failure_balance_transaction: failureTold ? txn("_back", 1300, -13, "payout_failure") : null,
      method: "instant",
      status: "failed",
    });
    const proxy = await startCuttingProxy(
      inject("stripeMockPort"),
      () => false,
      (method, url) => {
        if (method !== "GET" || !new URL(url, "http://stripe").pathname.startsWith("/v1/payouts/"))
          return null;
        return refusing
          ? new ProxyAnswer(403, {
              error: {
                type: "invalid_request_error",
                message:
                  "The provided key 'rk_test_***' does not have the required permissions for this endpoint.",
              },
            })
          : payout();
      },
    );
    const c = await createApp(testConfig({ ...env, STRIPE_API_PORT: String(proxy.port) }));
    onTestFinished(async () => {
      await c.close();
      await proxy.close();
    });
    await funded("payout_failure_kept");
    const before = { ...(await balances()), fee: await railBalance("fee") };
    const failed = payoutEvent("evt_po_failure_kept", "payout.failed", {
      payoutId: "po_failure_kept",
      amount: 1300,
      method: "instant",
    });
    expect(await deliver(c, failed)).toEqual({ received: true, outcome: "applied" });
    const kept = () =>
      c.db.query<{ failure: boolean }>("SELECT failure FROM fiat_parked_fees WHERE object_id = $1", [
        "po_failure_kept",
      ]);
    expect(await kept()).toEqual([{ failure: true }]);

    // The key may read payouts now; another event of the payout is told its fee (booked) and no failure's.
    refusing = false;
    await deliver(c, { ...failed, id: "evt_po_failure_kept_again" });
    const feeBooked = { ...before, capital: before.capital - 13n, fee: before.fee + 13n };
    expect({ ...(await balances()), fee: await railBalance("fee") }).toEqual(feeBooked);
    expect(await kept()).toEqual([{ failure: true }]);

    // Told at its next try: what the failure gave back is booked.
    failureTold = true;
    await c.db.query("UPDATE fiat_parked_fees SET next_try_at = now() WHERE object_id = $1", [
      "po_failure_kept",
    ]);
    const rail = c.payments.rails.get("fiat") as FiatRail;
    expect(await rail.bookParkedFees()).toEqual({ booked: 1, waiting: 0 });
    expect({ ...(await balances()), fee: await railBalance("fee") }).toEqual(before);
    expect(await kept()).toEqual([]);
  });

  it("keeps that fee when its try finds the failure's balance transaction not there yet, and books it once told", async () => {
    // A try asks the failure's fee as an event's lookup does (failureFeeTold): a failed payout without its failure's
    // balance transaction (yet) tells nothing. Before, the try booked it as 0 and forgot the kept fee: what the failure
    // gave back of the Instant Payout's fee was never booked.
    let refusing = true;
    let failureTold = false;
    const txn = (suffix: string, amount: number, fee: number, type: string) => ({
      id: `txn_po_failure_late${suffix}`,
      object: "balance_transaction",
      amount,
      currency: "usd",
      fee,
      net: amount - fee,
      type,
    });
    const proxy = await startCuttingProxy(
      inject("stripeMockPort"),
      () => false,
      (method, url) => {
        if (method !== "GET" || !new URL(url, "http://stripe").pathname.startsWith("/v1/payouts/"))
          return null;
        if (refusing)
          return new ProxyAnswer(403, {
            error: {
              type: "invalid_request_error",
              message:
                "The provided key 'rk_test_***' does not have the required permissions for this endpoint.",
            },
          });
        return {
          id: "po_failure_late",
          object: "payout",
          amount: 1300,
          arrival_date: 1_800_000_000,
          automatic: false,
          balance_transaction: txn("", -1300, 13, "payout"),
          currency: "usd",
          failure_balance_transaction: failureTold ? txn("_back", 1300, -13, "payout_failure") : null,
          method: "instant",
          status: "failed",
        };
      },
    );
    const c = await createApp(testConfig({ ...env, STRIPE_API_PORT: String(proxy.port) }));
    onTestFinished(async () => {
      await c.close();
      await proxy.close();
    });
    await funded("payout_failure_late");
    const before = { ...(await balances()), fee: await railBalance("fee") };
    const failed = payoutEvent("evt_po_failure_late", "payout.failed", {
      payoutId: "po_failure_late",
      amount: 1300,
      method: "instant",
    });
    expect(await deliver(c, failed)).toEqual({ received: true, outcome: "applied" });
    const kept = () =>
      c.db.query<{ failure: boolean }>("SELECT failure FROM fiat_parked_fees WHERE object_id = $1", [
        "po_failure_late",
      ]);
    expect(await kept()).toEqual([{ failure: true }]);
    const due = () =>
      c.db.query("UPDATE fiat_parked_fees SET next_try_at = now() WHERE object_id = $1", ["po_failure_late"]);
    const feesBooked = () =>
      a.ledger.lookupTransfers([
        railFeeLedgerId("fiat", "stripe_payout_fee:po_failure_late"),
        railFeeLedgerId("fiat", "stripe_payout_failure_fee:po_failure_late"),
      ]);

    // The key may read payouts now; the payout failed, its failure's balance transaction not there yet: it waits.
    refusing = false;
    await due();
    const rail = c.payments.rails.get("fiat") as FiatRail;
    expect(await rail.bookParkedFees()).toEqual({ booked: 0, waiting: 1 });
    expect(await kept()).toEqual([{ failure: true }]);
    expect(await feesBooked()).toEqual([]);
    expect({ ...(await balances()), fee: await railBalance("fee") }).toEqual(before);

    // Told at its next try: the fee and what the failure gave back of it, both booked.
    failureTold = true;
    await due();
    expect(await rail.bookParkedFees()).toEqual({ booked: 1, waiting: 0 });
    expect(await kept()).toEqual([]);
    const [fee, feeBack] = await feesBooked();
    expect(fee).toMatchObject({ amount: 13n });
    expect(feeBack).toMatchObject({ amount: 13n, evidence: { detail: { kind: "fee_given_back" } } });
    expect({ ...(await balances()), fee: await railBalance("fee") }).toEqual(before);
  });
});

describe("a failed payout whose failure's balance transaction Stripe does not show yet", () => {
  it("books its fee from its event, keeps its failure's, and books that once Stripe tells it", async () => {
    // The key may read payouts; the payout failed, and Stripe answers it with its balance transaction (the Instant
    // Payout's fee) but its failure's not there yet (`failureTold`). Before, the event booked the fee and its failure's
    // as 0, and kept nothing when no fee was kept of the payout before: what the failure gave back was never booked.
    let failureTold = false;
    const txn = (suffix: string, amount: number, fee: number, type: string) => ({
      id: `txn_po_failure_untold${suffix}`,
      object: "balance_transaction",
      amount,
      currency: "usd",
      fee,
      net: amount - fee,
      type,
    });
    const proxy = await startCuttingProxy(
      inject("stripeMockPort"),
      () => false,
      (method, url) =>
        method === "GET" && new URL(url, "http://stripe").pathname === "/v1/payouts/po_failure_untold"
          ? {
              id: "po_failure_untold",
              object: "payout",
              amount: 1300,
              arrival_date: 1_800_000_000,
              automatic: false,
              balance_transaction: txn("", -1300, 13, "payout"),
              currency: "usd",
              failure_balance_transaction: failureTold ? txn("_back", 1300, -13, "payout_failure") : null,
              method: "instant",
              status: "failed",
            }
          : null,
    );
    const c = await createApp(testConfig({ ...env, STRIPE_API_PORT: String(proxy.port) }));
    onTestFinished(async () => {
      await c.close();
      await proxy.close();
    });
    await funded("payout_failure_untold");
    const before = { ...(await balances()), fee: await railBalance("fee") };
    const failed = payoutEvent("evt_po_failure_untold", "payout.failed", {
      payoutId: "po_failure_untold",
      amount: 1300,
      method: "instant",
    });
    expect(await deliver(c, failed)).toEqual({ received: true, outcome: "applied" });
    const feesBooked = () =>
      a.ledger.lookupTransfers([
        railFeeLedgerId("fiat", "stripe_payout_fee:po_failure_untold"),
        railFeeLedgerId("fiat", "stripe_payout_failure_fee:po_failure_untold"),
      ]);
    // Its money taken and given back, its fee booked; what its failure gave back of it (not told: 0) is not booked,
    // its ledger id left free, and the fee kept asking for it.
    expect({ ...(await balances()), fee: await railBalance("fee") }).toEqual({
      ...before,
      capital: before.capital - 13n,
      fee: before.fee + 13n,
    });
    expect((await feesBooked()).map((transfer) => transfer.amount)).toEqual([13n]);
    const kept = () =>
      c.db.query<{ failure: boolean }>("SELECT failure FROM fiat_parked_fees WHERE object_id = $1", [
        "po_failure_untold",
      ]);
    expect(await kept()).toEqual([{ failure: true }]);
    const due = () =>
      c.db.query("UPDATE fiat_parked_fees SET next_try_at = now() WHERE object_id = $1", [
        "po_failure_untold",
      ]);
    const rail = c.payments.rails.get("fiat") as FiatRail;

    // Its try while Stripe still does not show it: it waits.
    await due();
    expect(await rail.bookParkedFees()).toEqual({ booked: 0, waiting: 1 });
    expect(await kept()).toEqual([{ failure: true }]);

    // Told at its next try: what the failure gave back is booked, the fee not a second time.
    failureTold = true;
    await due();
    expect(await rail.bookParkedFees()).toEqual({ booked: 1, waiting: 0 });
    expect({ ...(await balances()), fee: await railBalance("fee") }).toEqual(before);
    const [fee, feeBack] = await feesBooked();
    expect(fee).toMatchObject({ amount: 13n });
    expect(feeBack).toMatchObject({ amount: 13n, evidence: { detail: { kind: "fee_given_back" } } });
    expect(await kept()).toEqual([]);
  });
});

describe("reconciling the fiat rail against stripe-mock", () => {
  type RailBalance = {
    rail: string;
    asset: string;
    ledger: { posted: string };
    rail_balance: string | null;
    difference: string | null;
  };

  const fiatRow = async (): Promise<RailBalance> => {
    const listed = await apiClient(a, operatorKey)("GET", "/v1/rails");
    expect(listed.status, JSON.stringify(listed.body)).toBe(200);
    const row = (listed.body.data as RailBalance[]).find(
      (each) => each.rail === "fiat" && each.asset === "USD",
    );
    expect(row).toBeDefined();
    return row!;
  };
  const usd = (value: bigint) => formatAmount(value, assets.USD);

  it("shows Stripe's available balance beside the clearing account, and a platform payout moves the ledger side by its amount", async () => {
    const stripe = new Stripe("sk_test_123", {
      host: "127.0.0.1",
      port: inject("stripeMockPort"),
      protocol: "http",
    });
    const available = (await stripe.balance.retrieve()).available
      .filter((entry) => entry.currency === "usd")
      .reduce((sum, entry) => sum + BigInt(entry.amount), 0n);

    await funded("payout_reconciled");
    const before = await fiatRow();
    expect(before.rail_balance).toBe(usd(available));
    expect(before.difference).toBe(usd(available - (await railBalance("clearing"))));
    expect(before.ledger.posted).toBe(usd(await railBalance("clearing")));

    await deliver(
      a,
      payoutEvent("evt_po_reconciled", "payout.created", { payoutId: "po_reconciled", amount: 1750 }),
    );
    const after = await fiatRow();
    // stripe-mock's balance does not move (its answers are fixtures): the payout shows on the ledger side alone.
    expect(after.rail_balance).toBe(before.rail_balance);
    const minor = (text: string) => BigInt(text.replace(".", ""));
    expect(minor(after.ledger.posted)).toBe(minor(before.ledger.posted) - 1750n);
    expect(minor(after.difference!)).toBe(minor(before.difference!) + 1750n);
  });
});
