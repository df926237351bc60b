// One behaviour suite for the webhook receiver, run with the in-memory store and the SQL store on PGlite.
import { afterAll, beforeEach, describe, expect, inject, it } from "vitest";
import {
  createMemoryStripeWebhookStore,
  createSqlStripeWebhookStore,
  createStripeEventReceiver,
  fiatMigrations,
  type StripeEventEnvelope,
  type StripeWebhookStore,
} from "../../adapters/fiat/index.ts";
import { type Db, migrate, openPglite, openPostgres } from "../../gateway/db/index.ts";
import { createTestDatabase } from "../support/postgres.ts";
import { stripeEvents } from "./stripe-events.ts";
import { createToyLedger, type ToyLedger } from "./toy-ledger.ts";

// One PGlite for the file (starting one takes seconds on a busy machine); each test starts from empty tables.
let sharedDb: Promise<Db> | null = null;
function database(): Promise<Db> {
  sharedDb ??= openPglite(undefined).then(async (db) => {
    await migrate(db, [fiatMigrations]);
    return db;
  });
  return sharedDb;
}
let sharedPostgres: Promise<Db> | null = null;
function postgres(): Promise<Db> {
  sharedPostgres ??= createTestDatabase(inject("postgresUrl"), "fiat").then(async (url) => {
    const db = openPostgres({ url, poolSizeMax: 4, statementTimeoutMs: 10_000 });
    await migrate(db, [fiatMigrations]);
    return db;
  });
  return sharedPostgres;
}
afterAll(async () => {
  if (sharedDb !== null) await (await sharedDb).close();
  if (sharedPostgres !== null) await (await sharedPostgres).close();
});

const truncateAll =
  "TRUNCATE fiat_parked_reversals, fiat_withdrawn_reversals, fiat_stripe_intents, fiat_applied_stripe_events, fiat_stripe_objects";

const stores: [string, () => Promise<StripeWebhookStore>][] = [
  ["memory", async () => createMemoryStripeWebhookStore()],
  [
    "sql (PGlite)",
    async () => {
      const db = await database();
      await db.exec(truncateAll);
      return createSqlStripeWebhookStore(db);
    },
  ],
  [
    "sql (PostgreSQL)",
    async () => {
      const db = await postgres();
      await db.exec(truncateAll);
      return createSqlStripeWebhookStore(db);
    },
  ],
];

const topUp = {
  intentId: "pi_topup1",
  amount: 2_500,
  paymentId: "pay_1",
  attemptId: "att_1",
  reference: "cust_42",
};
const env = (event: unknown) => event as StripeEventEnvelope;

describe.each(stores)("stripe event receiver with the %s store", (_name, makeStore) => {
  let store: StripeWebhookStore;
  let ledger: ToyLedger;
  let receiver: ReturnType<typeof createStripeEventReceiver>;

  beforeEach(async () => {
    store = await makeStore();
    ledger = createToyLedger();
    receiver = createStripeEventReceiver({
      store,
      applyEvent: ledger.applyEvent,
      currency: "usd",
    });
  });

  it("credits a top-up on payment_intent.succeeded, with the PaymentIntent and charge as evidence", async () => {
    expect(ledger.balance("cust_42")).toBe(0n);
    const outcome = await receiver.receive(env(stripeEvents.intentSucceeded("evt_s1", topUp)));
    expect(outcome).toEqual({ status: "applied", applied: 1 });
    expect(ledger.calls).toEqual([
      {
        kind: "received",
        reference: "cust_42",
        paymentId: "pay_1",
        attemptId: "att_1",
        amount: 2_500n,
        evidence: { rail: "fiat", pspId: "pi_topup1" },
        pspIds: { event: "evt_s1", paymentIntent: "pi_topup1", charge: "ch_topup1" },
      },
    ]);
    expect(ledger.balance("cust_42")).toBe(2_500n);
    expect(await store.isApplied("evt_s1")).toBe(true);
  });

  it("applies a duplicated or replayed event once", async () => {
    const event = env(stripeEvents.intentSucceeded("evt_s1", topUp));
    await receiver.receive(event);
    expect(await receiver.receive(event)).toEqual({ status: "duplicate" });
    expect(await receiver.receive(structuredClone(event))).toEqual({ status: "duplicate" });
    expect(ledger.calls).toHaveLength(1);
    expect(ledger.balance("cust_42")).toBe(2_500n);
  });

  it("does not credit twice for a second success event of the same intent", async () => {
    await receiver.receive(env(stripeEvents.intentSucceeded("evt_s1", topUp)));
    expect(await receiver.receive(env(stripeEvents.intentSucceeded("evt_s2", topUp)))).toEqual({
      status: "applied",
      applied: 0,
    });
    expect(ledger.calls).toHaveLength(1);
  });

  it("never credits a failed charge", async () => {
    const outcome = await receiver.receive(env(stripeEvents.intentFailed("evt_f1", topUp)));
    expect(outcome).toEqual({ status: "applied", applied: 1 });
    expect(ledger.calls[0]).toMatchObject({ kind: "receive_failed", paymentId: "pay_1", code: "rejected" });
    expect(ledger.balance("cust_42")).toBe(0n);
  });

  it("credits after a failure when the customer then pays (failure, then success)", async () => {
    await receiver.receive(env(stripeEvents.intentFailed("evt_f1", topUp)));
    await receiver.receive(env(stripeEvents.intentSucceeded("evt_s1", topUp)));
    expect(ledger.calls.map((c) => c.kind)).toEqual(["receive_failed", "received"]);
    expect(ledger.balance("cust_42")).toBe(2_500n);
  });

  it("drops a failure that arrives after the success: it does not un-credit", async () => {
    await receiver.receive(env(stripeEvents.intentSucceeded("evt_s1", topUp)));
    expect(await receiver.receive(env(stripeEvents.intentFailed("evt_f1", topUp)))).toEqual({
      status: "stale",
    });
    expect(ledger.calls.map((c) => c.kind)).toEqual(["received"]);
    expect(ledger.balance("cust_42")).toBe(2_500n);
  });

  it("reverses a credited top-up on a dispute", async () => {
    await receiver.receive(env(stripeEvents.intentSucceeded("evt_s1", topUp)));
    await receiver.receive(
      env(stripeEvents.disputeCreated("evt_d1", { disputeId: "du_1", intentId: "pi_topup1", amount: 2_500 })),
    );
    expect(ledger.calls[1]).toEqual({
      kind: "reversed",
      key: "dispute:du_1",
      reason: "dispute",
      reference: "cust_42",
      paymentId: "pay_1",
      attemptId: "att_1",
      amount: 2_500n,
      evidence: { rail: "fiat", pspId: "du_1" },
      pspIds: { event: "evt_d1", dispute: "du_1", paymentIntent: "pi_topup1", charge: "ch_topup1" },
    });
    expect(ledger.balance("cust_42")).toBe(0n);
  });

  it("parks a dispute that arrives before the success, and applies it right after the credit", async () => {
    const dispute = env(
      stripeEvents.disputeCreated("evt_d1", { disputeId: "du_1", intentId: "pi_topup1", amount: 2_500 }),
    );
    expect(await receiver.receive(dispute)).toEqual({ status: "parked" });
    expect(ledger.calls).toHaveLength(0);
    expect(ledger.balance("cust_42")).toBe(0n);
    expect(await receiver.receive(env(stripeEvents.intentSucceeded("evt_s1", topUp)))).toEqual({
      status: "applied",
      applied: 2,
    });
    expect(ledger.calls.map((c) => c.kind)).toEqual(["received", "reversed"]);
    expect(ledger.balance("cust_42")).toBe(0n);
    // The parked reversal is gone: a later success delivery applies nothing.
    await receiver.receive(env(stripeEvents.intentSucceeded("evt_s2", topUp)));
    expect(ledger.calls).toHaveLength(2);
  });

  it("keeps a parked dispute's fees, and delivers them with the dispute after the credit", async () => {
    const fees = [{ id: "txn_parked_withdrawn", amount: -2_500, fee: 1_500 }];
    const dispute = stripeEvents.disputeCreated("evt_d1", {
      disputeId: "du_1",
      intentId: "pi_topup1",
      amount: 2_500,
      fees,
    });
    expect(await receiver.receive(env(dispute))).toEqual({ status: "parked" });
    await receiver.receive(env(stripeEvents.intentSucceeded("evt_s1", topUp)));
    expect(ledger.calls[1]).toMatchObject({
      kind: "reversed",
      key: "dispute:du_1",
      fees: [{ id: "txn_parked_withdrawn", amount: 1_500n }],
    });
  });

  it("delivers a charge's fee set after its payment was credited, as that payment's fee", async () => {
    await receiver.receive(env(stripeEvents.intentSucceeded("evt_s1", topUp)));
    const updated = env(stripeEvents.chargeBalanceTransactionSet("evt_c1", { intentId: "pi_topup1" }));
    expect(await receiver.receive(updated)).toEqual({ status: "applied", applied: 1 });
    expect(ledger.calls[1]).toEqual({
      kind: "fee",
      reference: "cust_42",
      paymentId: "pay_1",
      attemptId: "att_1",
      intentId: "pi_topup1",
      evidence: { rail: "fiat", pspId: "pi_topup1" },
      pspIds: { event: "evt_c1", paymentIntent: "pi_topup1", charge: "ch_topup1" },
    });
    expect(await receiver.receive(updated)).toEqual({ status: "duplicate" });
  });

  it("keeps a charge's fee that comes before its payment's credit, and applies it with the credit", async () => {
    const updated = env(stripeEvents.chargeBalanceTransactionSet("evt_c1", { intentId: "pi_topup1" }));
    expect(await receiver.receive(updated)).toEqual({ status: "parked" });
    expect(ledger.calls).toHaveLength(0);
    expect(await receiver.receive(env(stripeEvents.intentSucceeded("evt_s1", topUp)))).toEqual({
      status: "applied",
      applied: 2,
    });
    expect(ledger.calls.map((call) => call.kind)).toEqual(["received", "fee"]);
    // Once: a later success delivery applies nothing more.
    await receiver.receive(env(stripeEvents.intentSucceeded("evt_s2", topUp)));
    expect(ledger.calls).toHaveLength(2);
    // Someone else's charge (never credited here): kept for nothing, and answered, never refused.
    const stranger = env(
      stripeEvents.chargeBalanceTransactionSet("evt_c2", { intentId: "pi_other", metadata: {} }),
    );
    expect(await receiver.receive(stranger)).toEqual({ status: "parked" });
    expect(await store.isApplied("evt_c2")).toBe(true);
  });

  it("merges the fees of a parked dispute delivered again with more (an inquiry whose funds are then withdrawn)", async () => {
    const inquiry = { disputeId: "du_2", intentId: "pi_topup1", amount: 2_500 };
    await receiver.receive(env(stripeEvents.disputeCreated("evt_d1", inquiry)));
    const fees = [{ id: "txn_later_withdrawn", amount: -2_500, fee: 1_500 }];
    const withdrawn = {
      ...stripeEvents.disputeCreated("evt_d2", { ...inquiry, fees }),
      type: "charge.dispute.funds_withdrawn",
    };
    expect(await receiver.receive(env(withdrawn))).toEqual({ status: "parked" });
    await receiver.receive(env(stripeEvents.intentSucceeded("evt_s1", topUp)));
    expect(ledger.calls.map((call) => call.kind)).toEqual(["received", "reversed"]);
    expect(ledger.calls[1]).toMatchObject({
      key: "dispute:du_2",
      fees: [{ id: "txn_later_withdrawn", amount: 1_500n }],
    });
  });

  it("keeps the fees of a dispute won before its payment was credited, and delivers them with the credit", async () => {
    const withdrawn = { id: "txn_early_withdrawn", amount: -2_500, fee: 1_500 };
    const returned = { id: "txn_early_reinstated", amount: 2_500, fee: 0 };
    const dispute = { disputeId: "du_3", intentId: "pi_topup1", amount: 2_500 };
    expect(
      await receiver.receive(
        env(stripeEvents.disputeFundsReinstated("evt_d1", { ...dispute, fees: [withdrawn, returned] })),
      ),
    ).toEqual({ status: "withdrawn" });
    // Its creation, after its end: refused as ever, its fee (the same balance transaction) kept once.
    expect(
      await receiver.receive(env(stripeEvents.disputeCreated("evt_d2", { ...dispute, fees: [withdrawn] }))),
    ).toEqual({ status: "withdrawn" });
    expect(ledger.calls).toHaveLength(0);
    expect(await receiver.receive(env(stripeEvents.intentSucceeded("evt_s1", topUp)))).toEqual({
      status: "applied",
      applied: 2,
    });
    expect(ledger.calls.map((call) => call.kind)).toEqual(["received", "fee"]);
    expect(ledger.calls[1]).toMatchObject({
      kind: "fee",
      fees: [
        { id: "txn_early_withdrawn", amount: 1_500n },
        { id: "txn_early_reinstated", amount: 0n },
      ],
    });
    // Once: a later success delivery delivers nothing more.
    await receiver.receive(env(stripeEvents.intentSucceeded("evt_s2", topUp)));
    expect(ledger.calls).toHaveLength(2);
  });

  it("keeps a parked dispute's fee when the dispute is won before the credit", async () => {
    const dispute = { disputeId: "du_4", intentId: "pi_topup1", amount: 2_500 };
    const fees = [{ id: "txn_parked_then_won", amount: -2_500, fee: 1_500 }];
    expect(await receiver.receive(env(stripeEvents.disputeCreated("evt_d1", { ...dispute, fees })))).toEqual({
      status: "parked",
    });
    expect(await receiver.receive(env(stripeEvents.disputeFundsReinstated("evt_d2", dispute)))).toEqual({
      status: "withdrawn",
    });
    await receiver.receive(env(stripeEvents.intentSucceeded("evt_s1", topUp)));
    expect(ledger.calls.map((call) => call.kind)).toEqual(["received", "fee"]);
    expect(ledger.calls[1]).toMatchObject({ fees: [{ id: "txn_parked_then_won", amount: 1_500n }] });
  });

  it("ends at the same balance whichever order success and dispute arrive in, also concurrently", async () => {
    const success = env(stripeEvents.intentSucceeded("evt_s1", topUp));
    const dispute = env(
      stripeEvents.disputeCreated("evt_d1", { disputeId: "du_1", intentId: "pi_topup1", amount: 1_000 }),
    );
    await Promise.all([receiver.receive(dispute), receiver.receive(success)]);
    expect(ledger.posted).toEqual(["received:pi_topup1", "dispute:du_1"]);
    expect(ledger.balance("cust_42")).toBe(1_500n);

    // Many intents at once, each with its dispute racing its success: no reversal is lost between park and credit.
    const intents = Array.from({ length: 12 }, (_, i) => ({
      ...topUp,
      intentId: `pi_race${i}`,
      reference: `cust_race${i}`,
    }));
    await Promise.all(
      intents.flatMap((intent, i) => {
        const pair = [
          receiver.receive(
            env(
              stripeEvents.disputeCreated(`evt_rd${i}`, {
                disputeId: `du_r${i}`,
                intentId: intent.intentId,
                amount: 400,
              }),
            ),
          ),
          receiver.receive(env(stripeEvents.intentSucceeded(`evt_rs${i}`, intent))),
        ];
        return i % 2 === 0 ? pair : pair.reverse();
      }),
    );
    for (const intent of intents) expect(ledger.balance(intent.reference)).toBe(2_100n);
  });

  it("reverses refunds by refund id, whichever event carries them", async () => {
    await receiver.receive(env(stripeEvents.intentSucceeded("evt_s1", topUp)));
    await receiver.receive(
      env(stripeEvents.refundCreated("evt_r1", { refundId: "re_1", intentId: "pi_topup1", amount: 500 })),
    );
    await receiver.receive(
      env(
        stripeEvents.chargeRefunded("evt_r2", {
          intentId: "pi_topup1",
          refunds: [{ refundId: "re_1", amount: 500 }],
        }),
      ),
    );
    const reversals = ledger.calls.filter((c) => c.kind === "reversed");
    expect(reversals.map((c) => (c.kind === "reversed" ? c.key : ""))).toEqual([
      "refund:re_1",
      "refund:re_1",
    ]);
    expect(ledger.balance("cust_42")).toBe(2_000n); // the second carries the same key: posted once
    // a refund born failed took nothing: its withdrawal gives nothing back
    await receiver.receive(
      env(
        stripeEvents.refundCreated("evt_r3", {
          refundId: "re_2",
          intentId: "pi_topup1",
          amount: 1,
          status: "failed",
        }),
      ),
    );
    expect(ledger.calls.at(-1)).toMatchObject({ kind: "reinstated", key: "refund:re_2" });
    expect(ledger.balance("cust_42")).toBe(2_000n);
  });

  it("gives back a refund that failed after it was applied, and never applies it again", async () => {
    const refund = { refundId: "re_1", intentId: "pi_topup1", amount: 500 };
    await receiver.receive(env(stripeEvents.intentSucceeded("evt_s1", topUp)));
    await receiver.receive(env(stripeEvents.refundCreated("evt_r1", refund)));
    expect(ledger.balance("cust_42")).toBe(2_000n);
    expect(await receiver.receive(env(stripeEvents.refundFailed("evt_f1", refund)))).toEqual({
      status: "applied",
      applied: 1,
    });
    expect(ledger.balance("cust_42")).toBe(2_500n);
    // refund.updated still carrying the old "succeeded" snapshot, delivered late under a new event id
    expect(await receiver.receive(env(stripeEvents.refundCreated("evt_r2", refund)))).toEqual({
      status: "withdrawn",
    });
    expect(ledger.balance("cust_42")).toBe(2_500n);
    expect(ledger.posted).toEqual(["received:pi_topup1", "refund:re_1", "reinstated:refund:re_1"]);
  });

  it("gives back a refund that failed when Stripe says so as charge.refund.updated", async () => {
    const refund = { refundId: "re_cru", intentId: "pi_topup1", amount: 500 };
    await receiver.receive(env(stripeEvents.intentSucceeded("evt_s1", topUp)));
    await receiver.receive(env(stripeEvents.refundCreated("evt_r1", refund)));
    expect(ledger.balance("cust_42")).toBe(2_000n);
    const updated = { ...stripeEvents.refundFailed("evt_cru", refund), type: "charge.refund.updated" };
    expect(await receiver.receive(env(updated))).toEqual({ status: "applied", applied: 1 });
    expect(ledger.balance("cust_42")).toBe(2_500n);
    expect(ledger.posted).toEqual(["received:pi_topup1", "refund:re_cru", "reinstated:refund:re_cru"]);
  });

  it("drops a refund withdrawn while parked, and refuses one whose failure came first", async () => {
    const parkedFirst = { refundId: "re_p", intentId: "pi_topup1", amount: 300 };
    const failedFirst = { refundId: "re_f", intentId: "pi_topup1", amount: 200 };
    expect(await receiver.receive(env(stripeEvents.refundCreated("evt_p1", parkedFirst)))).toEqual({
      status: "parked",
    });
    expect(await receiver.receive(env(stripeEvents.refundFailed("evt_p2", parkedFirst)))).toEqual({
      status: "withdrawn",
    });
    expect(await receiver.receive(env(stripeEvents.refundFailed("evt_f1", failedFirst)))).toEqual({
      status: "withdrawn",
    });
    expect(await receiver.receive(env(stripeEvents.refundCreated("evt_f2", failedFirst)))).toEqual({
      status: "withdrawn",
    });
    expect(await receiver.receive(env(stripeEvents.intentSucceeded("evt_s1", topUp)))).toEqual({
      status: "applied",
      applied: 1,
    });
    expect(await receiver.receive(env(stripeEvents.refundCreated("evt_f3", failedFirst)))).toEqual({
      status: "withdrawn",
    });
    expect(ledger.balance("cust_42")).toBe(2_500n);
    expect(ledger.calls.map((call) => call.kind)).toEqual(["received"]);
  });

  it("gives back a dispute's funds when Stripe reinstates them", async () => {
    const dispute = { disputeId: "du_w", intentId: "pi_topup1", amount: 400 };
    await receiver.receive(env(stripeEvents.intentSucceeded("evt_s1", topUp)));
    await receiver.receive(env(stripeEvents.disputeCreated("evt_d1", dispute)));
    expect(ledger.balance("cust_42")).toBe(2_100n);
    await receiver.receive(env(stripeEvents.disputeFundsReinstated("evt_d2", dispute)));
    expect(ledger.balance("cust_42")).toBe(2_500n);
    expect(ledger.calls.at(-1)).toMatchObject({
      kind: "reinstated",
      key: "dispute:du_w",
      reference: "cust_42",
      evidence: { rail: "fiat", pspId: "du_w" },
      pspIds: { event: "evt_d2", dispute: "du_w", paymentIntent: "pi_topup1" },
    });
    expect(await receiver.receive(env(stripeEvents.disputeFundsReinstated("evt_d2", dispute)))).toEqual({
      status: "duplicate",
    });
    expect(ledger.balance("cust_42")).toBe(2_500n);
  });

  it("leaves an event unapplied when applyEvent throws, so that Stripe's redelivery applies it", async () => {
    const success = env(stripeEvents.intentSucceeded("evt_s1", topUp));
    ledger.failNext(1);
    await expect(receiver.receive(success)).rejects.toThrow("database unavailable");
    expect(await store.isApplied("evt_s1")).toBe(false);
    expect(ledger.balance("cust_42")).toBe(0n);
    expect(await receiver.receive(success)).toEqual({ status: "applied", applied: 1 });
    expect(ledger.balance("cust_42")).toBe(2_500n);
  });

  it("keeps a parked reversal when applying it fails after the credit, and applies it on the next delivery", async () => {
    await receiver.receive(
      env(stripeEvents.disputeCreated("evt_d1", { disputeId: "du_1", intentId: "pi_topup1", amount: 2_500 })),
    );
    const success = env(stripeEvents.intentSucceeded("evt_s1", topUp));
    // received succeeds, the parked reversal's apply fails
    let calls = 0;
    const flaky = createStripeEventReceiver({
      store,
      currency: "usd",
      applyEvent: async (event) => {
        calls += 1;
        if (calls === 2) throw new Error("crash between credit and reversal");
        await ledger.applyEvent(event);
      },
    });
    await expect(flaky.receive(success)).rejects.toThrow("crash between");
    expect(ledger.balance("cust_42")).toBe(2_500n);
    expect(await receiver.receive(success)).toEqual({ status: "applied", applied: 1 });
    expect(ledger.balance("cust_42")).toBe(0n);
  });

  it("maps transfer.created (ours) to attempt_succeeded and payout.failed to payout_failed", async () => {
    await receiver.receive(
      env(
        stripeEvents.transferCreated("evt_t1", {
          transferId: "tr_1",
          amount: 10_000,
          attemptId: "att_9",
          paymentId: "pay_9",
        }),
      ),
    );
    await receiver.receive(
      env(stripeEvents.payoutFailed("evt_p1", { payoutId: "po_1", amount: 10_000, account: "acct_m" })),
    );
    expect(ledger.calls).toEqual([
      {
        kind: "attempt_succeeded",
        attemptId: "att_9",
        evidence: { rail: "fiat", pspId: "tr_1" },
        transferId: "tr_1",
        pspIds: { event: "evt_t1", transfer: "tr_1" },
      },
      {
        kind: "payout_failed",
        account: "acct_m",
        amount: 10_000n,
        code: "account_closed",
        message: "The bank account has been closed.",
        pspIds: { event: "evt_p1", payout: "po_1" },
      },
    ]);
  });

  it("ignores events it does not handle, objects not created by Switchyard, and other currencies", async () => {
    expect(await receiver.receive(env(stripeEvents.other("evt_o1", "customer.created")))).toEqual({
      status: "ignored",
      reason: "event_type_not_handled",
    });
    expect(
      await receiver.receive(env(stripeEvents.intentSucceeded("evt_o2", { ...topUp, metadata: {} }))),
    ).toEqual({
      status: "ignored",
      reason: "not_created_by_switchyard",
    });
    expect(
      await receiver.receive(env(stripeEvents.intentSucceeded("evt_o3", { ...topUp, currency: "eur" }))),
    ).toEqual({
      status: "ignored",
      reason: "currency_mismatch",
    });
    expect(
      await receiver.receive(
        env(stripeEvents.transferCreated("evt_o4", { transferId: "tr_x", amount: 100 })),
      ),
    ).toEqual({
      status: "ignored",
      reason: "not_created_by_switchyard",
    });
    expect(ledger.calls).toHaveLength(0);
    expect(await store.isApplied("evt_o1")).toBe(true); // an ignored event is done too: its redelivery is a duplicate
  });
});
