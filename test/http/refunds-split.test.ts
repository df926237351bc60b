// /v1/refunds of an invoice whose receipt was split among payees (a paywall's split), end to end on PGlite and on
// PostgreSQL, through a toy rail that refunds through its provider: as Stripe's refund with reverse_transfer, each
// payee gives back its part of the refund — proportional to what the invoice credited it, floored, the rest from the
// seller — held with the seller's hold in one linked chain, posted when the rail succeeds and voided when it fails.
// Refunded at once or in two parts, every balance is exact; a payee short of its part refuses the whole refund with
// nothing written; an Idempotency-Key repeated moves nothing. Two refunds of one invoice, one computed while the
// other is claimed, take from each payee exactly its share together — payees hold more than their credit there, so
// that taking too much would not be refused for their balance. A refund of an invoice, split or not, whose reads
// precede a reversal recorded before its claim is refused invoice_not_paid with nothing of it written. A refund made
// at the provider outside the API counts as refunded: the rest takes what is left of each credit, a payee's shortfall
// of it owed once.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RequestBody } from "../../client/index.ts";
import { assets, type Rail, type RailEventHandler } from "../../core/index.ts";
import { createAccount } from "../../gateway/accounts/index.ts";
import type { Db } from "../../gateway/db/index.ts";
import type { Ledger } from "../../gateway/ledger/index.ts";
import { createRefund } from "../../gateway/payments/refunds.ts";
import { applyReversed, createInvoice } from "../../gateway/settlement/index.ts";
import { refundShareLedgerId, reversalShareLedgerId } from "../../gateway/settlement/split-reversal.ts";
import { latch } from "../support/latch.ts";
import { receivingToySnapshot } from "../support/toy-rail.ts";
import { startTestGateway, type TestGateway } from "./support.ts";

/** A rail that takes USDC in for invoices and refunds it through its provider; a refund of 1 USDC it fails. */
function createRefundingToyRail() {
  let handler: RailEventHandler | null = null;
  const rail: Rail = {
    id: "toysplit",
    kind: "fiat",
    asset: assets.USDC,
    async start() {},
    async stop() {},
    snapshot: () => receivingToySnapshot(rail, 100_000_000n),
    execute: async () => ({
      status: "failed",
      code: "rejected",
      message: "no payouts",
      retryElsewhere: true,
    }),
    onEvent(next) {
      handler = next;
    },
    balance: async () => 0n,
    receive: async (request) => ({
      status: "offered",
      railReference: `toy_${request.reference}`,
      expiresAtMs: null,
      instructions: { pay: request.reference },
    }),
    async refundReceived(refund) {
      if (refund.amount === 1_000_000n)
        return { status: "failed", code: "rejected", message: "the toy provider refuses 1 USDC" };
      return {
        status: "succeeded",
        evidence: { rail: "external", railId: "toysplit", reference: `toy_re_${refund.id}` },
        fee: 0n,
      };
    },
  };
  return {
    rail,
    /** The toy's provider fails refund `refundId` of an invoice after it succeeded (Stripe's refund.failed). */
    async failLater(invoiceId: string, refundId: string) {
      await handler!({
        kind: "reinstated",
        reference: invoiceId,
        key: `toy_re_${refundId}`,
        evidence: { rail: "external", railId: "toysplit", reference: `toy_re_${refundId}` },
      });
    },
    /** The toy's provider gives back what reversal `key` of an invoice took (a dispute won). */
    async reinstate(invoiceId: string, key: string) {
      await handler!({
        kind: "reinstated",
        reference: invoiceId,
        key,
        evidence: { rail: "external", railId: "toysplit", reference: `toy_dw_${key}` },
      });
    },
    /** The toy's provider takes `amount` of an invoice's payment back (a dispute lost): a reversal of it. */
    async reverse(invoiceId: string, key: string, amount: bigint) {
      await handler!({
        kind: "reversed",
        reference: invoiceId,
        key,
        amount,
        evidence: { rail: "external", railId: "toysplit", reference: `toy_dp_${key}` },
      });
    },
    /** A further receipt for the invoice, named `key` (a second transfer to a deposit address). */
    async payMore(invoiceId: string, key: string, amount: bigint) {
      await handler!({
        kind: "received",
        reference: invoiceId,
        key,
        amount,
        evidence: { rail: "external", railId: "toysplit", reference: `toy_in_${invoiceId}_${key}` },
      });
    },
    async pay(invoiceId: string, amount: bigint) {
      await handler!({
        kind: "received",
        reference: invoiceId,
        amount,
        evidence: { rail: "external", railId: "toysplit", reference: `toy_in_${invoiceId}` },
      });
    },
  };
}

const tenantId = "ten_demo";
const seller = "acct_demo_merchant";
const customer = "acct_demo_customer";
const payeeA = "acct_split_payee_a";
const payeeB = "acct_split_payee_b";
const split = [
  { accountId: payeeA, basisPoints: 2_500 },
  { accountId: payeeB, basisPoints: 3_333 },
];
// Paid 10.000001 USDC: A is credited 25% floored (2,500,000), B 33.33% floored (3,333,000), the seller the rest.
const paid = 10_000_001n;
const credited = { seller: 4_167_001n, a: 2_500_000n, b: 3_333_000n };

describe.each(["pglite", "postgres"] as const)("on %s", (database) => {
  let gw: TestGateway;
  const toy = createRefundingToyRail();
  const ledgerIds = new Map<string, bigint>();

  beforeAll(async () => {
    gw = await startTestGateway({ database, extraRailModules: [() => ({ rails: [toy.rail] })] });
    for (const id of [payeeA, payeeB]) {
      const account = await createAccount(
        { sql: gw.app.db, ledger: gw.app.ledger },
        { tenantId, kind: "customer", asset: assets.USDC, name: id, id },
      );
      ledgerIds.set(id, account.ledgerAccountId);
    }
    const [merchant] = await gw.app.db.query<{ ledger_account_id: string }>(
      "SELECT ledger_account_id::text FROM accounts WHERE id = $1",
      [seller],
    );
    ledgerIds.set(seller, BigInt(merchant!.ledger_account_id));
  });
  afterAll(async () => {
    await gw?.app.close();
  });

  async function ledgerAccount(id: string) {
    const [found] = await gw.app.ledger.lookupAccounts([ledgerIds.get(id)!]);
    return found!;
  }
  /** Posted balance and pending debits of the seller and both payees, in USDC minor units. */
  async function balances() {
    const of = async (id: string) => {
      const account = await ledgerAccount(id);
      return { posted: account.creditsPosted - account.debitsPosted, held: account.debitsPending };
    };
    return { seller: await of(seller), a: await of(payeeA), b: await of(payeeB) };
  }
  /** Posted balances moved since `before`, and what is still held on each. */
  async function moved(before: Awaited<ReturnType<typeof balances>>) {
    const now = await balances();
    return {
      seller: now.seller.posted - before.seller.posted,
      a: now.a.posted - before.a.posted,
      b: now.b.posted - before.b.posted,
      held: [now.seller.held, now.a.held, now.b.held],
    };
  }

  async function count(table: "refunds" | "outbox" | "refundable"): Promise<bigint> {
    const [row] = await gw.app.db.query<{ count: bigint }>(`SELECT count(*) AS count FROM ${table}`);
    return row!.count;
  }

  /** An invoice of 10 USDC to the seller, with the split or without, not paid yet. */
  async function sellerInvoice(withSplit: boolean): Promise<string> {
    const created = await createInvoice(gw.app.settlement, {
      tenantId,
      accountId: seller,
      asset: "USDC",
      amount: "10",
      rail: "toysplit",
      description: withSplit ? "split" : "no split",
      expirySeconds: 600,
      ...(withSplit ? { split } : {}),
    });
    if (!created.ok) throw new Error(created.message);
    return created.invoice.id;
  }

  /** An invoice to the seller with the split, paid `paid` through the toy's provider. */
  async function paidSplitInvoice(): Promise<string> {
    const invoiceId = await sellerInvoice(true);
    const before = await balances();
    await toy.pay(invoiceId, paid);
    expect((await gw.call("GET", `/v1/invoices/${invoiceId}`)).body.status).toBe("paid");
    expect(await moved(before)).toEqual({ ...credited, held: [0n, 0n, 0n] });
    return invoiceId;
  }

  async function refund(body: unknown, idempotencyKey?: string) {
    const sent = await gw.client.POST("/v1/refunds", {
      body: body as RequestBody<"/v1/refunds", "post">,
      ...(idempotencyKey === undefined ? {} : { params: { header: { "Idempotency-Key": idempotencyKey } } }),
    });
    return { status: sent.response.status, body: (sent.data ?? sent.error) as any };
  }

  it("refunded in full at once: each payee gives back exactly what it was credited, the seller the rest", async () => {
    const invoice = await paidSplitInvoice();
    const before = await balances();
    const all = await refund({ invoice });
    expect(all.status).toBe(201);
    expect(all.body).toMatchObject({ status: "succeeded", amount: "10.000001", account: seller });
    expect(await moved(before)).toEqual({
      seller: -credited.seller,
      a: -credited.a,
      b: -credited.b,
      held: [0n, 0n, 0n],
    });
    // Each payee's part is a hold of its own, posted.
    const [posted] = await gw.app.ledger.lookupTransfers([refundShareLedgerId(all.body.id, payeeA, "post")]);
    expect(posted?.amount).toBe(credited.a);
  });

  it("refunded in two parts, the first repeated under its Idempotency-Key: floored parts, the seller the remainder, the last part all that is left", async () => {
    const invoice = await paidSplitInvoice();
    const before = await balances();
    // 3.000001 of 10.000001: A 3,000,001 × 2,500,000 / 10,000,001 = 750,000.17… → 750,000; B × 3,333,000 =
    // 999,900.23… → 999,900; the seller the rest, 1,250,101.
    const key = `split-refund-${invoice}`;
    const first = await refund({ invoice, amount: "3.000001" }, key);
    expect(first.status).toBe(201);
    expect(first.body.status).toBe("succeeded");
    const afterFirst = { seller: -1_250_101n, a: -750_000n, b: -999_900n, held: [0n, 0n, 0n] };
    expect(await moved(before)).toEqual(afterFirst);

    const transfers = await gw.ledgerTransferCount();
    const refunds = await count("refunds");
    const again = await refund({ invoice, amount: "3.000001" }, key);
    expect(again.status).toBe(201);
    expect(again.body.id).toBe(first.body.id);
    expect(await gw.ledgerTransferCount()).toBe(transfers);
    expect(await count("refunds")).toBe(refunds);
    expect(await moved(before)).toEqual(afterFirst);

    // The rest, 7,000,000, empties the invoice: each payee gives back all that is left of its credit (A 1,750,000,
    // B 2,333,100), the seller the rest (2,916,900): all three end exactly where one refund of all would leave them.
    const rest = await refund({ invoice });
    expect(rest.status).toBe(201);
    expect(rest.body).toMatchObject({ status: "succeeded", amount: "7.000000" });
    expect(await moved(before)).toEqual({
      seller: -credited.seller,
      a: -credited.a,
      b: -credited.b,
      held: [0n, 0n, 0n],
    });
    const [lastA] = await gw.app.ledger.lookupTransfers([refundShareLedgerId(rest.body.id, payeeA, "post")]);
    expect(lastA?.amount).toBe(1_750_000n);
    const more = await refund({ invoice, amount: "0.000001" });
    expect(more.body.error.code).toBe("refund_exceeds_remaining");
  });

  it("refunded in many small parts of an invoice split whole among payees: each payee gives back its own, not the seller", async () => {
    // 100 minor units, half to each payee, none to the seller: each small refund's floored parts were all zero, the
    // seller gave every unit, and the refund that emptied the invoice found what was left of the credits above
    // what was left to refund: A gave back 50, B nothing, the seller 50 it never had.
    const created = await createInvoice(gw.app.settlement, {
      tenantId,
      accountId: seller,
      asset: "USDC",
      amount: "0.0001",
      rail: "toysplit",
      description: "split whole",
      expirySeconds: 600,
      split: [
        { accountId: payeeA, basisPoints: 5_000 },
        { accountId: payeeB, basisPoints: 5_000 },
      ],
    });
    if (!created.ok) throw new Error(created.message);
    const invoice = created.invoice.id;
    const before = await balances();
    await toy.pay(invoice, 100n);
    expect(await moved(before)).toEqual({ seller: 0n, a: 50n, b: 50n, held: [0n, 0n, 0n] });
    for (let i = 0; i < 20; i += 1) expect((await refund({ invoice, amount: "0.000001" })).status).toBe(201);
    // Twenty refunded: the payees' parts keep up (10 each), the seller gives no more than a rounding's unit.
    const partway = await moved(before);
    expect(partway.a).toBe(40n);
    expect(partway.b).toBe(40n);
    expect(partway.seller).toBe(0n);
    expect((await refund({ invoice })).body).toMatchObject({ status: "succeeded", amount: "0.000080" });
    expect(await moved(before)).toEqual({ seller: 0n, a: 0n, b: 0n, held: [0n, 0n, 0n] });
  });

  it("voids every leg when the rail fails the refund: nothing moves, nothing stays held", async () => {
    const invoice = await paidSplitInvoice();
    const before = await balances();
    const failed = await refund({ invoice, amount: "1" });
    expect(failed.status).toBe(201);
    expect(failed.body).toMatchObject({ status: "failed", failure: { code: "rejected" } });
    expect(await moved(before)).toEqual({ seller: 0n, a: 0n, b: 0n, held: [0n, 0n, 0n] });
    // Each payee's part was held (1 USDC: A 249,999, B 333,299) and voided.
    const voids = await gw.app.ledger.lookupTransfers([
      refundShareLedgerId(failed.body.id, payeeA, "void"),
      refundShareLedgerId(failed.body.id, payeeB, "void"),
    ]);
    expect(voids.map((t) => t.amount)).toEqual([249_999n, 333_299n]);
    // All of it is refundable again.
    const all = await refund({ invoice });
    expect(all.body).toMatchObject({ status: "succeeded", amount: "10.000001" });
    expect(await moved(before)).toEqual({
      seller: -credited.seller,
      a: -credited.a,
      b: -credited.b,
      held: [0n, 0n, 0n],
    });
  });

  it("gives every leg back when the provider fails a refund after it succeeded", async () => {
    const invoice = await paidSplitInvoice();
    const before = await balances();
    const done = await refund({ invoice, amount: "4" });
    expect(done.body.status).toBe("succeeded");
    // 4 of 10.000001: A 999,999, B 1,333,199, the seller 1,666,802.
    expect(await moved(before)).toEqual({
      seller: -1_666_802n,
      a: -999_999n,
      b: -1_333_199n,
      held: [0n, 0n, 0n],
    });
    await toy.failLater(invoice, done.body.id);
    await toy.failLater(invoice, done.body.id);
    expect((await gw.call("GET", `/v1/refunds/${done.body.id}`)).body.status).toBe("failed");
    expect(await moved(before)).toEqual({ seller: 0n, a: 0n, b: 0n, held: [0n, 0n, 0n] });
    // The payees' credit is whole again: a refund of all takes all of it.
    const all = await refund({ invoice });
    expect(all.body).toMatchObject({ status: "succeeded", amount: "10.000001" });
    expect(await moved(before)).toEqual({
      seller: -credited.seller,
      a: -credited.a,
      b: -credited.b,
      held: [0n, 0n, 0n],
    });
  });

  it("refuses to refund an invoice whose payment was reversed, until the reversal is withdrawn", async () => {
    const invoice = await paidSplitInvoice();
    await toy.reverse(invoice, `dispute-${invoice}`, 4_000_000n);
    const before = await balances();
    const refused = await refund({ invoice });
    expect(refused.status).toBe(409);
    expect(refused.body.error.code).toBe("invoice_not_paid");
    expect(await moved(before)).toEqual({ seller: 0n, a: 0n, b: 0n, held: [0n, 0n, 0n] });
    // The dispute won: the reversal withdrawn, the invoice paid again and refundable.
    await toy.reinstate(invoice, `dispute-${invoice}`);
    expect((await refund({ invoice, amount: "1.5" })).body).toMatchObject({ status: "succeeded" });
  });

  it("refunds the rest of an invoice refunded in part at its provider outside the API: each credit exactly, a payee's shortfall owed once", async () => {
    const invoice = await paidSplitInvoice();
    // A spends all it holds: the provider's refund can take nothing of it, and its part is its shortfall.
    const a = await ledgerAccount(payeeA);
    const spendable = a.creditsPosted - a.debitsPosted - a.debitsPending;
    const spent = await gw.client.POST("/v1/payments", {
      body: {
        amount: `${spendable / 1_000_000n}.${(spendable % 1_000_000n).toString().padStart(6, "0")}`,
        asset: "USDC",
        source: { account: payeeA },
        destination: { type: "account", account: customer },
      },
      params: { header: { "Idempotency-Key": `split-dashboard-spend-${invoice}` } },
    });
    expect([spent.response.status, spent.data?.status]).toEqual([201, "succeeded"]);
    // 4 USDC refunded at the toy's provider, not through the API (a `refund:` reversal, as Stripe's dashboard's):
    // its proportion of each credit (A 999,999, B 1,333,199), the seller the rest; A's part is short.
    const before = await balances();
    await toy.reverse(invoice, `refund:toy_dashboard_${invoice}`, 4_000_000n);
    expect(await moved(before)).toEqual({ seller: -1_666_802n, a: 0n, b: -1_333_199n, held: [0n, 0n, 0n] });
    // A is credited by another invoice, so that it holds its part of the rest.
    await paidSplitInvoice();
    const beforeRest = await balances();
    // Before: refused 409 invoice_not_paid, the provider's refund taken for a dispute.
    const over = await refund({ invoice, amount: "6.000002" });
    expect(over.body.error?.code).toBe("refund_exceeds_remaining");
    const rest = await refund({ invoice });
    expect(rest.status).toBe(201);
    expect(rest.body).toMatchObject({ status: "succeeded", amount: "6.000001" });
    // What is left of each credit after the provider's refund, its shortfall on A counted as owed (A 2,500,000 −
    // 999,999; B 3,333,000 − 1,333,199); the seller the rest. Before, A gave all its credit again: 999,999 twice.
    expect(await refundParts(rest.body.id)).toEqual([1_500_001n, 1_999_801n]);
    expect(await moved(beforeRest)).toEqual({
      seller: -2_500_199n,
      a: -1_500_001n,
      b: -1_999_801n,
      held: [0n, 0n, 0n],
    });
    const shortfalls = await gw.app.db.query<{ account_id: string; amount: bigint }>(
      "SELECT account_id, amount FROM reversal_shortfalls WHERE invoice_id = $1",
      [invoice],
    );
    expect(shortfalls).toEqual([{ account_id: payeeA, amount: 999_999n }]);
    expect((await refund({ invoice, amount: "0.000001" })).body.error.code).toBe("refund_exceeds_remaining");
  });

  it("lets refunds racing for one invoice take no more from a payee than it was credited", async () => {
    // Another invoice's credit stays on the payees: a part too large would be taken, not refused for their balance.
    await paidSplitInvoice();
    const invoice = await paidSplitInvoice();
    const before = await balances();
    const answers = await Promise.all(["4", "4", "4", "3"].map((amount) => refund({ invoice, amount })));
    const passed = answers.filter((a) => a.status === 201);
    expect(passed.every((a) => a.body.status === "succeeded")).toBe(true);
    // A loser is refused for what is left of the invoice, or (its hold checked first) for the seller's balance.
    for (const refused of answers.filter((a) => a.status !== 201))
      expect(["refund_exceeds_remaining", "insufficient_funds"]).toContain(refused.body.error.code);
    expect(passed.length).toBeGreaterThanOrEqual(1);
    const after = await moved(before);
    expect(after.held).toEqual([0n, 0n, 0n]);
    expect(-after.a).toBeLessThanOrEqual(credited.a);
    expect(-after.b).toBeLessThanOrEqual(credited.b);
    // The legs of the refunds that passed sum to what they refunded.
    const refunded = passed.reduce((sum, a) => sum + BigInt(a.body.amount.replace(".", "")), 0n);
    expect(-(after.seller + after.a + after.b)).toBe(refunded);
    // The rest, whatever it is, ends every credit exactly.
    const rest = await refund({ invoice });
    expect(rest.body.status).toBe("succeeded");
    expect(await moved(before)).toEqual({
      seller: -credited.seller,
      a: -credited.a,
      b: -credited.b,
      held: [0n, 0n, 0n],
    });
  });

  it("a refund whose reads straddle another refund's claim takes exactly each payee's share with it, never more than its credit", async () => {
    // Another invoice's credit stays on the payees: a part too large would be taken, not refused for their balance.
    await paidSplitInvoice();
    const invoice = await paidSplitInvoice();
    const before = await balances();
    // Refund "rest" stops right after it read which refunds of the invoice there are (before their holds' amounts)
    // until refund "first" has been claimed and has succeeded: its reads straddle the other's claim.
    const pausing = pausingAtRefundsRead(gw.app.payments.db);
    const asked = (amount: string) => ({
      tenantId,
      target: { kind: "invoice" as const, invoiceId: invoice },
      amount,
      reason: null,
      metadata: {},
      destination: null,
      idempotencyKey: null,
    });
    // 10.000001 refunded as 4 and then the rest, 6.000001.
    const rest = createRefund({ ...gw.app.payments, db: pausing.db }, asked("6.000001"));
    await pausing.reached;
    const first = await createRefund(gw.app.payments, asked("4"));
    pausing.open();
    const last = await rest;
    expect(first.ok && first.refund.status).toBe("succeeded");
    expect(last.ok && last.refund.status).toBe("succeeded");
    // The first takes its proportion (4 of 10.000001: A 999,999, B 1,333,199); the rest empties the invoice and takes
    // exactly what is left of each credit (A 1,500,001, B 1,999,801): together, each credit, no more.
    const parts = async (refund: typeof first) => {
      if (!refund.ok) throw new Error(refund.message);
      const found = await gw.app.ledger.lookupTransfers([
        refundShareLedgerId(refund.refund.id, payeeA, "post"),
        refundShareLedgerId(refund.refund.id, payeeB, "post"),
      ]);
      return found.map((transfer) => transfer.amount);
    };
    expect(await parts(first)).toEqual([999_999n, 1_333_199n]);
    expect(await parts(last)).toEqual([1_500_001n, 1_999_801n]);
    expect(await moved(before)).toEqual({
      seller: -credited.seller,
      a: -credited.a,
      b: -credited.b,
      held: [0n, 0n, 0n],
    });
  });

  /**
   * `db`, whose reads of an invoice's refunds not failed (split-reversal.ts splitPayees: after what is left of the
   * invoice, before the holds' and the reversals' amounts) stop until `open` is called; `reached` resolves at the first.
   */
  function pausingAtRefundsRead(db: Db) {
    return pausingAfter(db, /FROM refunds WHERE invoice_id = \$1 AND tenant_id = \$2 AND status <> 'failed'/);
  }

  /** `db`, whose first read matching `pattern` stops, once answered, until `open` is called; `reached` says so. */
  function pausingAfter(db: Db, pattern: RegExp) {
    const gate = latch();
    const stopped = latch();
    const paused = new Proxy(db, {
      get(target, key) {
        if (key === "query")
          return async (text: string, params?: readonly unknown[]) => {
            const rows = await target.query(text, params);
            if (pattern.test(text)) {
              stopped.release();
              await gate.done;
            }
            return rows;
          };
        const value = Reflect.get(target, key, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    }) satisfies Db;
    return { db: paused, reached: stopped.done, open: gate.release };
  }

  const refundOfAll = (invoice: string) => ({
    tenantId,
    target: { kind: "invoice" as const, invoiceId: invoice },
    amount: "10.000001",
    reason: null,
    metadata: {},
    destination: null,
    idempotencyKey: null,
  });

  /** What each payee's legs of refund `id` posted, or of reversal `key` of the invoice took: [A, B]. */
  async function refundParts(id: string) {
    const found = await gw.app.ledger.lookupTransfers([
      refundShareLedgerId(id, payeeA, "post"),
      refundShareLedgerId(id, payeeB, "post"),
    ]);
    return found.map((transfer) => transfer.amount);
  }
  /** The toy's dispute `key` of `amount` on an invoice, applied through `settlement` (the gateway's, or one wrapped). */
  function dispute(settlement: typeof gw.app.settlement, invoice: string, key: string, amount: bigint) {
    return applyReversed(settlement, {
      rail: "toysplit",
      reference: invoice,
      key,
      amount,
      evidence: { rail: "external", railId: "toysplit", reference: `toy_dp_${key}` },
    });
  }
  async function reversalParts(invoice: string, key: string) {
    const found = await gw.app.ledger.lookupTransfers([
      reversalShareLedgerId(invoice, key, payeeA, "reversed"),
      reversalShareLedgerId(invoice, key, payeeB, "reversed"),
    ]);
    return found.map((transfer) => transfer.amount);
  }

  it("a refund whose reads straddle a reversal of the invoice is refused 409 invoice_not_paid: the refund moves nothing", async () => {
    // Another invoice's credit stays on the payees: a part too large would be taken, not refused for their balance.
    await paidSplitInvoice();
    const invoice = await paidSplitInvoice();
    const before = await balances();
    // The refund of all stops after it read what is left of the invoice, that no reversal of it stands and which
    // refunds of it there are, until a dispute of 4 USDC has been applied in full (legs and record).
    const pausing = pausingAtRefundsRead(gw.app.payments.db);
    const all = createRefund({ ...gw.app.payments, db: pausing.db }, refundOfAll(invoice));
    await pausing.reached;
    await toy.reverse(invoice, `dispute-${invoice}`, 4_000_000n);
    const written = { transfers: await gw.ledgerTransferCount(), refunds: await count("refunds") };
    pausing.open();
    const refunded = await all;
    // Its claim is refused (the row moved), and the next try finds the reversal (before: the refund, computed again
    // counting the reversal's legs, passed and the seller refunded 6.500199 USDC it had given back to the dispute).
    expect(refunded).toMatchObject({ ok: false, refusal: "invoice_not_paid" });
    expect({ transfers: await gw.ledgerTransferCount(), refunds: await count("refunds") }).toEqual(written);
    // The reversal takes each payee's proportion of its credit (4 of 10.000001: A 999,999, B 1,333,199), the seller
    // 1,666,802; nothing more moves.
    expect(await reversalParts(invoice, `dispute-${invoice}`)).toEqual([999_999n, 1_333_199n]);
    expect(await moved(before)).toEqual({
      seller: -1_666_802n,
      a: -999_999n,
      b: -1_333_199n,
      held: [0n, 0n, 0n],
    });
  });

  it("a reversal whose reads straddle a refund of the invoice counts what the refund took: each credit exactly, no more", async () => {
    await paidSplitInvoice();
    const invoice = await paidSplitInvoice();
    const before = await balances();
    // The dispute of 4 USDC stops after it read which refunds of the invoice there are, until a refund of all has
    // been claimed and has succeeded.
    const pausing = pausingAtRefundsRead(gw.app.settlement.db);
    const key = `dispute-${invoice}`;
    const reversal = dispute({ ...gw.app.settlement, db: pausing.db }, invoice, key, 4_000_000n);
    await pausing.reached;
    const refunded = await createRefund(gw.app.payments, refundOfAll(invoice));
    pausing.open();
    expect(await reversal).toEqual({ status: "applied", shortfall: 0n });
    if (!refunded.ok) throw new Error(refunded.message);
    expect(refunded.refund.status).toBe("succeeded");
    // The refund of all took every credit whole; the reversal, nothing is left of them, takes all 4 USDC from the
    // seller (before: it took A 999,999 and B 1,333,199 on top of their whole credits).
    expect(await refundParts(refunded.refund.id)).toEqual([credited.a, credited.b]);
    expect(await reversalParts(invoice, key)).toEqual([]);
    const after = await moved(before);
    expect(-after.a).toBeLessThanOrEqual(credited.a);
    expect(-after.b).toBeLessThanOrEqual(credited.b);
    expect(after).toEqual({
      seller: -(credited.seller + 4_000_000n),
      a: -credited.a,
      b: -credited.b,
      held: [0n, 0n, 0n],
    });
  });

  /** An invoice to the seller without a split, paid 10 USDC through the toy's provider. */
  async function paidPlainInvoice(): Promise<string> {
    const invoiceId = await sellerInvoice(false);
    await toy.pay(invoiceId, 10_000_000n);
    expect((await gw.call("GET", `/v1/invoices/${invoiceId}`)).body.status).toBe("paid");
    return invoiceId;
  }

  /**
   * `ledger`, whose first chain written with a statement (a refund's holds with its claim: every read the refund is
   * computed from is made by then) waits for `first` to be done before it is written.
   */
  function ledgerRunningFirst(ledger: Ledger, first: () => Promise<void>): Ledger {
    let ran = false;
    return new Proxy(ledger, {
      get(target, key) {
        if (key === "createTransfersWith")
          return async (...args: Parameters<Ledger["createTransfersWith"]>) => {
            if (!ran) {
              ran = true;
              await first();
            }
            return target.createTransfersWith(...args);
          };
        const value = Reflect.get(target, key, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
  }

  async function refundEvents(): Promise<bigint> {
    const [row] = await gw.app.db.query<{ count: bigint }>(
      "SELECT count(*) AS count FROM outbox WHERE type LIKE 'refund.%'",
    );
    return row!.count;
  }

  it.each([
    ["no refund of it before", 0n],
    ["a refund of 2 USDC before", 2_000_000n],
  ] as const)(
    "a refund of an invoice without a split whose reads precede a reversal recorded before its claim is refused 409 invoice_not_paid, nothing written (%s)",
    async (_, refundedBefore) => {
      // Another invoice's credit stays on the seller: the refund's hold, written after the dispute took 4 of this
      // invoice's 10, is not refused for the seller's balance (insufficient_funds) whatever ran before, so the claim
      // is what refuses it.
      await paidPlainInvoice();
      const invoice = await paidPlainInvoice();
      if (refundedBefore > 0n) expect((await refund({ invoice, amount: "2" })).body.status).toBe("succeeded");
      const key = `dispute-${invoice}`;
      const before = await balances();
      const written = {
        transfers: await gw.ledgerTransferCount(),
        refunds: await count("refunds"),
        events: await refundEvents(),
      };
      // The refund of all reads the invoice, what is left of it and that no reversal stands; then a dispute of 4 USDC
      // is applied in full (its leg, its record and the invoice 'reversed', committed); then the refund's holds and
      // claim are written.
      const answer = await createRefund(
        {
          ...gw.app.payments,
          ledger: ledgerRunningFirst(gw.app.payments.ledger, () => toy.reverse(invoice, key, 4_000_000n)),
        },
        {
          tenantId,
          target: { kind: "invoice", invoiceId: invoice },
          amount: null,
          reason: null,
          metadata: {},
          destination: null,
          idempotencyKey: null,
        },
      );
      expect((await gw.call("GET", `/v1/invoices/${invoice}`)).body.status).toBe("reversed");
      // Before: the refund passed and the seller paid back the 10 USDC (or the 8 left) on top of the 4 the dispute took.
      expect(answer).toMatchObject({ ok: false, refusal: "invoice_not_paid" });
      // Only the reversal's one leg moved: no refund row, no hold, no refund event.
      expect({
        transfers: await gw.ledgerTransferCount(),
        refunds: await count("refunds"),
        events: await refundEvents(),
      }).toEqual({ ...written, transfers: written.transfers + 1n });
      expect(await moved(before)).toEqual({ seller: -4_000_000n, a: 0n, b: 0n, held: [0n, 0n, 0n] });
      // The dispute won: what is left is refundable again, no more (the reversal's touch of the row changed nothing).
      await toy.reinstate(invoice, key);
      const rest = await refund({ invoice });
      expect(rest.status).toBe(201);
      expect(rest.body).toMatchObject({
        status: "succeeded",
        amount: refundedBefore > 0n ? "8.000000" : "10.000000",
      });
      expect((await refund({ invoice, amount: "0.000001" })).body.error.code).toBe(
        "refund_exceeds_remaining",
      );
    },
  );

  it.each([
    ["with a split", true],
    ["without a split", false],
  ] as const)(
    "a reversal's legs and its record commit together: a refund asked once the legs are written never pays back what the reversal took (%s)",
    async (_, withSplit) => {
      // Another invoice's credit stays on every account: a refund taken on top would not be refused for a balance.
      if (withSplit) await paidSplitInvoice();
      else await paidPlainInvoice();
      const invoice = withSplit ? await paidSplitInvoice() : await paidPlainInvoice();
      const received = withSplit ? paid : 10_000_000n;
      const before = await balances();
      const key = `dispute-${invoice}`;
      // The refund of all is asked as soon as the reversal's legs are in the ledger, before applyReversed goes on.
      let refunded: Awaited<ReturnType<typeof createRefund>> | null = null;
      const refundingAfterLegs = new Proxy(gw.app.settlement.ledger, {
        get(target, name) {
          if (name === "createTransfersWith")
            return async (...args: Parameters<Ledger["createTransfersWith"]>) => {
              const written = await target.createTransfersWith(...args);
              refunded = await createRefund(gw.app.payments, { ...refundOfAll(invoice), amount: null });
              return written;
            };
          const value = Reflect.get(target, name, target);
          return typeof value === "function" ? value.bind(target) : value;
        },
      });
      const reversal = await dispute(
        { ...gw.app.settlement, ledger: refundingAfterLegs },
        invoice,
        key,
        received,
      );
      expect(reversal).toEqual({ status: "applied", shortfall: 0n });
      // Before: the legs were written, then the record in a transaction of its own; the refund between them saw no
      // reversal, passed, and the seller (and each payee) paid back what the dispute had taken already.
      expect(refunded).toMatchObject({ ok: false, refusal: "invoice_not_paid" });
      const after = await moved(before);
      expect(after.held).toEqual([0n, 0n, 0n]);
      expect(-(after.seller + after.a + after.b)).toBe(received);
      expect((await gw.call("GET", `/v1/invoices/${invoice}`)).body.status).toBe("reversed");
      const [announced] = await gw.app.db.query<{ count: bigint }>(
        "SELECT count(*) AS count FROM outbox WHERE type = 'invoice.reversed' AND payload->>'invoice_id' = $1",
        [invoice],
      );
      expect(announced!.count).toBe(1n);
    },
  );

  it("a refund whose reads straddle a further receipt of the invoice is computed again with it: one state, each part exact", async () => {
    const invoice = await paidSplitInvoice();
    // The refund of all stops after it read what the invoice received (10.000001) and which refunds there are, until
    // a second payment of 10 USDC is credited (A 2,500,000 more, B 3,333,000 more).
    const pausing = pausingAtRefundsRead(gw.app.payments.db);
    const all = createRefund(
      { ...gw.app.payments, db: pausing.db },
      { ...refundOfAll(invoice), amount: null },
    );
    await pausing.reached;
    await toy.payMore(invoice, "second", 10_000_000n);
    pausing.open();
    const refunded = await all;
    if (!refunded.ok) throw new Error(refunded.message);
    // Before: a refund of the 10.000001 read first, with A giving back its credit of both payments (5,000,000), or,
    // once more had been refunded meanwhile, a negative amount and a 500.
    expect(refunded.refund.amount).toBe(20_000_001n);
    expect(await refundParts(refunded.refund.id)).toEqual([5_000_000n, 6_666_000n]);
  });

  it("so too when the invoice was refunded in part before: what is left counts the further receipt", async () => {
    const invoice = await paidSplitInvoice();
    const part = await createRefund(gw.app.payments, { ...refundOfAll(invoice), amount: "2.000000" });
    expect(part.ok && part.refund.status).toBe("succeeded");
    const pausing = pausingAtRefundsRead(gw.app.payments.db);
    const rest = createRefund(
      { ...gw.app.payments, db: pausing.db },
      { ...refundOfAll(invoice), amount: null },
    );
    await pausing.reached;
    await toy.payMore(invoice, "second", 10_000_000n);
    pausing.open();
    const refunded = await rest;
    if (!refunded.ok) throw new Error(refunded.message);
    // The claim's check of what the invoice received guards the update of an existing row too (its SELECT yields no
    // row to insert or update): not 8.000001, read first, with its payees giving back their credit of both payments.
    expect(refunded.refund.amount).toBe(18_000_001n);
  });

  it("a reversal whose reads straddle a further receipt of the invoice is computed again with it: each payee its part", async () => {
    const invoice = await paidSplitInvoice();
    const key = `dispute-${invoice}`;
    // The dispute of 4 USDC stops right after it read what the invoice received (payments/refunds-store.ts
    // invoiceReceived), before the payees' credits.
    const pausing = pausingAfter(
      gw.app.settlement.db,
      /^SELECT received_amount FROM invoices WHERE id = \$1$/,
    );
    const reversal = dispute({ ...gw.app.settlement, db: pausing.db }, invoice, key, 4_000_000n);
    await pausing.reached;
    await toy.payMore(invoice, "second", 10_000_000n);
    pausing.open();
    expect(await reversal).toEqual({ status: "applied", shortfall: 0n });
    // 4 of 20.000001 received: each payee its proportion of its whole credit (A 5,000,000, B 6,666,000).
    // Before: 4 of the 10.000001 read first, against both credits: A 1,999,999 and B 2,666,399, twice its part.
    expect(await reversalParts(invoice, key)).toEqual([999_999n, 1_333_199n]);
  });

  it("refuses the whole refund when a payee holds less than its part: 402 insufficient_funds, nothing written", async () => {
    const invoice = await paidSplitInvoice();
    // Payee B pays all it holds onward.
    const all = (await balances()).b.posted;
    const onward = await gw.call("POST", "/v1/payments", {
      body: {
        amount: `${all / 1_000_000n}.${(all % 1_000_000n).toString().padStart(6, "0")}`,
        asset: "USDC",
        source: { account: payeeB },
        destination: { type: "account", account: customer },
      },
    });
    expect(onward.status).toBe(201);
    const before = await balances();
    const written = {
      transfers: await gw.ledgerTransferCount(),
      refunds: await count("refunds"),
      refundable: await count("refundable"),
      outbox: await count("outbox"),
    };
    const refused = await refund({ invoice, amount: "2" });
    expect(refused.status).toBe(402);
    expect(refused.body.error).toMatchObject({ code: "insufficient_funds", param: "amount" });
    expect(refused.body.error.message).toContain(payeeB);
    expect({
      transfers: await gw.ledgerTransferCount(),
      refunds: await count("refunds"),
      refundable: await count("refundable"),
      outbox: await count("outbox"),
    }).toEqual(written);
    expect(await moved(before)).toEqual({ seller: 0n, a: 0n, b: 0n, held: [0n, 0n, 0n] });
  });
});
