// Money in on PGlite with a toy receiver: an invoice is answered as written (no read-back), money received for
// it is credited once through the account memory with one statement to find it, and the paid status and its
// event are written together.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { assets } from "../../core/index.ts";
import { ledgerInvariantProblems } from "../../test/support/ledger-invariants.ts";
import { crashingOnce, recordStatements } from "../../test/support/recording-db.ts";
import { balanceOf, createAccount, createAccountCache } from "../accounts/index.ts";
import { gatewayMigrations } from "../app.ts";
import { type Db, migrate, openPglite } from "../db/index.ts";
import { derivedLedgerId } from "../ids/index.ts";
import { createLedger, type Ledger, ledgerMigrations } from "../ledger/index.ts";
import { gatewayLedgerParams } from "../ledger-params.ts";
import { createTenant } from "../tenants/index.ts";
import {
  applyReceived,
  applyReinstated,
  applyReversed,
  createInvoice,
  createOpenInvoiceMemory,
  getInvoice,
  type ReceivingRail,
  type SettlementDeps,
  SettlementInvariantError,
} from "./index.ts";
import { receiptLedgerId } from "./split-reversal.ts";

let db: Db;
let ledger: Ledger;
let customerLedgerId: bigint;
const tenantId = "ten_in";

const toyReceiver: ReceivingRail = {
  id: "toy",
  asset: assets.BTC,
  async receive(request) {
    return {
      status: "offered",
      railReference: `hash-${request.reference}`,
      expiresAtMs: 2_000_000_000_000,
      instructions: { method: "toy", pay_to: request.reference },
    };
  },
};

function deps(database: Db = db): SettlementDeps {
  return {
    db: database,
    ledger,
    accounts: createAccountCache({ sql: database }, { entriesMax: 10 }),
    openInvoices: createOpenInvoiceMemory({ entriesMax: 10 }),
    rails: new Map([[toyReceiver.id, toyReceiver]]),
  };
}

beforeAll(async () => {
  db = await openPglite(undefined);
  await migrate(db, [ledgerMigrations, gatewayMigrations]);
  ledger = createLedger({ ...gatewayLedgerParams, db });
  await createTenant(db, { id: tenantId, name: "In" });
  await createTenant(db, { id: "ten_else", name: "Else" });
  const customer = await createAccount(
    { sql: db, ledger },
    { tenantId, kind: "customer", asset: assets.BTC, name: "c", id: "acct_in_customer" },
  );
  customerLedgerId = customer.ledgerAccountId;
  await createAccount(
    { sql: db, ledger },
    {
      tenantId: null,
      kind: "clearing",
      asset: assets.BTC,
      name: "toy",
      rail: "toy",
      id: "acct_clearing_toy_btc",
    },
  );
}, 120_000);

afterAll(async () => {
  await ledger?.close();
  await db?.close();
});

const params = {
  tenantId,
  accountId: "acct_in_customer",
  asset: "BTC",
  amount: "0.00000021",
  rail: null,
  description: "top-up",
  expirySeconds: 600,
};

describe("invoices", () => {
  it("answers the invoice as written, without reading it back", async () => {
    const statements: string[] = [];
    const result = await createInvoice(deps(recordStatements(db, statements)), params);
    expect(statements).toEqual(["SELECT", "INSERT"]); // the account (then remembered), the invoice with its offer
    if (!result.ok) throw new Error(result.message);
    expect(result.invoice).toMatchObject({
      status: "open",
      amount: 21_000n,
      railReference: `hash-${result.invoice.id}`,
    });
    expect(result.invoice).toEqual(await getInvoice(db, { tenantId, id: result.invoice.id }));
  });

  it("writes nothing when the rail fails or refuses to make the offer", async () => {
    const [before] = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM invoices");
    const failing: ReceivingRail = {
      ...toyReceiver,
      async receive() {
        throw new Error("the toy rail is down");
      },
    };
    await expect(createInvoice({ ...deps(), rails: new Map([["toy", failing]]) }, params)).rejects.toThrow(
      "the toy rail is down",
    );
    const refusing: ReceivingRail = {
      ...toyReceiver,
      async receive() {
        return { status: "refused", code: "amount_too_large", message: "above the toy rail's maximum" };
      },
    };
    const refused = await createInvoice({ ...deps(), rails: new Map([["toy", refusing]]) }, params);
    expect(refused).toMatchObject({ ok: false, refusal: "amount_too_large", param: "amount" });
    const [after] = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM invoices");
    expect(after?.n).toBe(before?.n);
  });

  it("refuses another tenant's account", async () => {
    const result = await createInvoice(deps(), { ...params, tenantId: "ten_else" });
    expect(result.ok || result.refusal).toBe("account_not_found");
  });

  it("credits money received once, with its event, and reports repeats and strangers", async () => {
    const settlement = deps();
    const created = await createInvoice(settlement, params);
    if (!created.ok) throw new Error(created.message);
    const id = created.invoice.id;
    const event = {
      rail: "toy",
      reference: id,
      amount: 21_000n,
      evidence: { rail: "external" as const, railId: "toy", reference: "ab".repeat(32) },
    };
    const [before] = await ledger.lookupAccounts([customerLedgerId]);
    expect(await applyReceived(settlement, event)).toBe("applied");
    expect(await applyReceived(settlement, event)).toBe("duplicate");
    expect(await applyReceived(settlement, { ...event, rail: "other" })).toBe("unknown_reference");
    expect(await applyReceived(settlement, { ...event, reference: "inv_nobody" })).toBe("unknown_reference");
    const [after] = await ledger.lookupAccounts([customerLedgerId]);
    expect(balanceOf("customer", after!).posted - balanceOf("customer", before!).posted).toBe(21_000n);
    const invoice = await getInvoice(db, { tenantId, id });
    expect(invoice).toMatchObject({ status: "paid", receivedAmount: 21_000n, evidence: event.evidence });
    const events = await db.query<{ tenant_id: string; type: string; payload: unknown }>(
      "SELECT tenant_id, type, payload FROM outbox WHERE payload->>'invoice_id' = $1",
      [id],
    );
    expect(events).toEqual([
      {
        tenant_id: tenantId,
        type: "invoice.payment_received",
        payload: { invoice_id: id, asset: "BTC", amount: "21000", received_amount: "21000", late: false },
      },
      { tenant_id: tenantId, type: "invoice.paid", payload: { invoice_id: id } },
    ]);
  });
});

const received = (reference: string) => ({
  rail: "toy",
  reference,
  amount: 21_000n,
  evidence: { rail: "external" as const, railId: "toy", reference: "ef".repeat(32) },
});

describe("finding the invoice money arrived for", () => {
  it("needs no query for an invoice this process made: the statement that marks it paid goes with the credit", async () => {
    const statements: string[] = [];
    const settlement = { ...deps(), db: recordStatements(db, statements) };
    const created = await createInvoice(settlement, params);
    if (!created.ok) throw new Error(created.message);
    statements.length = 0;
    expect(await applyReceived(settlement, received(created.invoice.id))).toBe("applied");
    // Nothing of its own: the mark and its events are written in the ledger's transaction of the credit.
    expect(statements).toEqual([]);
    expect((await getInvoice(db, { tenantId, id: created.invoice.id }))?.status).toBe("paid");
    // Applied, it is forgotten: a repeat reads the invoice, finds it paid, and leaves the ledger alone.
    statements.length = 0;
    expect(await applyReceived(settlement, received(created.invoice.id))).toBe("duplicate");
    expect(statements).toEqual(["SELECT"]);
  });

  it("reads an invoice another process made (or one forgotten beyond entriesMax) with one query, and credits it once", async () => {
    const maker = { ...deps(), openInvoices: createOpenInvoiceMemory({ entriesMax: 1 }) };
    const first = await createInvoice(maker, params);
    const second = await createInvoice(maker, params); // the memory holds one: the first is forgotten
    if (!first.ok || !second.ok) throw new Error("invoice refused");
    const statements: string[] = [];
    const [before] = await ledger.lookupAccounts([customerLedgerId]);
    expect(
      await applyReceived({ ...maker, db: recordStatements(db, statements) }, received(first.invoice.id)),
    ).toBe("applied");
    expect(statements).toEqual(["SELECT"]);
    const other = { ...deps(), db: recordStatements(db, statements) }; // another process: an empty memory
    statements.length = 0;
    expect(await applyReceived(other, received(second.invoice.id))).toBe("applied");
    expect(await applyReceived(maker, received(second.invoice.id))).toBe("duplicate"); // the maker still remembers it
    expect(await applyReceived(other, { ...received(second.invoice.id), rail: "other" })).toBe(
      "unknown_reference",
    );
    const [after] = await ledger.lookupAccounts([customerLedgerId]);
    expect(balanceOf("customer", after!).posted - balanceOf("customer", before!).posted).toBe(42_000n);
  });

  it("answers duplicate when another process credited an invoice this one remembers, with other evidence", async () => {
    const maker = deps();
    const created = await createInvoice(maker, params);
    if (!created.ok) throw new Error(created.message);
    expect(await applyReceived(deps(), received(created.invoice.id))).toBe("applied");
    const otherEvidence = {
      ...received(created.invoice.id),
      evidence: { rail: "external" as const, railId: "toy", reference: "ab".repeat(32) },
    };
    expect(await applyReceived(maker, otherEvidence)).toBe("duplicate");
  });

  it("credits nothing for an invoice it remembers open that is gone or cannot count the receipt: the record refuses the credit", async () => {
    const maker = deps();
    const made = await Promise.all([1, 2, 3].map(() => createInvoice(maker, params)));
    const [gone, paid, counted] = made.map((created) => {
      if (!created.ok) throw new Error(created.message);
      return created.invoice.id;
    }) as [string, string, string];
    // Deleted after this process remembered it open, as the L402 prune deletes an unpaid challenge's invoice; marked
    // paid with its receipt never credited, and a named receipt counted never credited, as no receipt leaves them.
    await db.query("DELETE FROM invoices WHERE id = $1", [gone]);
    await db.query("UPDATE invoices SET status = 'paid' WHERE id = $1", [paid]);
    await db.query(
      `INSERT INTO invoice_receipts (invoice_id, key, amount, late, evidence, received_at)
       VALUES ($1, 'r0', 21000, false, '{}', now())`,
      [counted],
    );
    const [before] = await ledger.lookupAccounts([customerLedgerId]);
    // Before, each was credited with nothing counting it and no event, and answered duplicate.
    expect(await applyReceived(maker, received(gone))).toBe("unknown_reference");
    await expect(applyReceived(maker, received(paid))).rejects.toThrow(SettlementInvariantError);
    await expect(applyReceived(maker, { ...received(counted), key: "r0" })).rejects.toThrow(
      SettlementInvariantError,
    );
    const [after] = await ledger.lookupAccounts([customerLedgerId]);
    expect(after!.creditsPosted).toBe(before!.creditsPosted);
    expect(
      await ledger.lookupTransfers([
        receiptLedgerId(gone),
        receiptLedgerId(paid),
        receiptLedgerId(counted, "r0"),
      ]),
    ).toEqual([]);
    // Forgotten, the invoice is read as another process reads it: gone, or paid, it takes nothing.
    expect(await applyReceived(maker, received(gone))).toBe("unknown_reference");
    expect(await applyReceived(maker, received(paid))).toBe("duplicate");
    expect(await ledgerInvariantProblems(db)).toEqual([]);
  });

  it("credits money in only as the payment the rail offered: another payment hash naming the invoice is not it", async () => {
    const maker = deps();
    const created = await createInvoice(maker, params);
    if (!created.ok) throw new Error(created.message);
    const id = created.invoice.id;
    const paidWith = (paymentHash: string) => ({
      ...received(id),
      evidence: { rail: "lightning" as const, paymentHash, preimage: "cd".repeat(32) },
    });
    const [before] = await ledger.lookupAccounts([customerLedgerId]);
    // Remembered by the process that made it, and read by another: neither credits a stranger's payment.
    expect(await applyReceived(maker, paidWith("ab".repeat(32)))).toBe("unknown_reference");
    expect(await applyReceived(deps(), paidWith("ab".repeat(32)))).toBe("unknown_reference");
    const [untouched] = await ledger.lookupAccounts([customerLedgerId]);
    expect(untouched!.creditsPosted).toBe(before!.creditsPosted);
    // The toy receiver offered `hash-<reference>`: that payment is the invoice's.
    expect(await applyReceived(deps(), paidWith(`hash-${id}`))).toBe("applied");
    const [after] = await ledger.lookupAccounts([customerLedgerId]);
    expect(after!.creditsPosted - before!.creditsPosted).toBe(21_000n);
    // Paid, the invoice is still not the stranger's: not a duplicate (which the rail would count as credited, and
    // reverse), whether read or remembered; its own payment again is one.
    expect(await applyReceived(deps(), paidWith("ab".repeat(32)))).toBe("unknown_reference");
    expect(await applyReceived(maker, paidWith("ab".repeat(32)))).toBe("unknown_reference");
    expect(await applyReceived(deps(), paidWith(`hash-${id}`))).toBe("duplicate");
  });
});

describe("reversals of money received", () => {
  const evidence = { rail: "external" as const, railId: "toy", reference: "12".repeat(32) };
  const paidInvoice = async (settlement: SettlementDeps) => {
    const created = await createInvoice(settlement, params);
    if (!created.ok) throw new Error(created.message);
    expect(await applyReceived(settlement, received(created.invoice.id))).toBe("applied");
    return created.invoice.id;
  };
  const posted = async () => {
    const [account] = await ledger.lookupAccounts([customerLedgerId]);
    return balanceOf("customer", account!).posted;
  };
  /** The invoice's `invoice.reinstated` events, in order: what each gave back, collected and left on the account. */
  const reinstatedEvents = (id: string) =>
    db.query<{ reversal: string; amount: string; shortfall_collected: string; net: string }>(
      `SELECT payload->>'reversal' AS reversal, payload->>'amount' AS amount,
         payload->>'shortfall_collected' AS shortfall_collected, payload->>'net' AS net
       FROM outbox WHERE type = 'invoice.reinstated' AND payload->>'invoice_id' = $1 ORDER BY id`,
      [id],
    );
  /**
   * The account's balance as a consumer of the events mirrors it from `before`: less each `invoice.reversed`'s
   * amount, plus each `invoice.reinstated`'s net.
   */
  const mirrored = async (id: string, before: bigint) => {
    const rows = await db.query<{ type: string; amount: string; net: string | null }>(
      `SELECT type, payload->>'amount' AS amount, payload->>'net' AS net FROM outbox
       WHERE type IN ('invoice.reversed', 'invoice.reinstated') AND payload->>'invoice_id' = $1 ORDER BY id`,
      [id],
    );
    return rows.reduce(
      (balance, row) =>
        row.type === "invoice.reversed" ? balance - BigInt(row.amount) : balance + BigInt(row.net ?? "NaN"),
      before,
    );
  };

  it("gives back a reversal that is undone, and marks the invoice paid again once none stands", async () => {
    const settlement = deps();
    const id = await paidInvoice(settlement);
    const before = await posted();
    const reversal = (key: string, amount: bigint) => ({ rail: "toy", reference: id, key, amount, evidence });
    expect((await applyReversed(settlement, reversal("dispute:a", 5_000n))).status).toBe("applied");
    expect((await applyReversed(settlement, reversal("refund:b", 1_000n))).status).toBe("applied");
    expect((await applyReversed(settlement, reversal("refund:b", 1_000n))).status).toBe("duplicate");
    expect(await posted()).toBe(before - 6_000n);
    const undo = (key: string) => ({ rail: "toy", reference: id, key, evidence });
    expect(await applyReinstated(settlement, undo("dispute:a"))).toEqual({
      status: "applied",
      amount: 5_000n,
      paidNow: false,
    });
    expect(await applyReinstated(settlement, undo("dispute:a"))).toEqual({
      status: "duplicate",
      amount: 0n,
      paidNow: false,
    });
    expect((await getInvoice(db, { tenantId, id }))?.status).toBe("reversed"); // refund:b stands
    expect(await applyReinstated(settlement, undo("refund:b"))).toEqual({
      status: "applied",
      amount: 1_000n,
      paidNow: true,
    });
    expect((await getInvoice(db, { tenantId, id }))?.status).toBe("paid");
    expect(await posted()).toBe(before);
    // No reversal fell short: nothing was collected, all of each give-back stayed on the account.
    expect(await reinstatedEvents(id)).toEqual([
      { reversal: "dispute:a", amount: "5000", shortfall_collected: "0", net: "5000" },
      { reversal: "refund:b", amount: "1000", shortfall_collected: "0", net: "1000" },
    ]);
    expect(await mirrored(id, before)).toBe(await posted());
    // a reversal given back, delivered again, takes nothing
    expect((await applyReversed(settlement, reversal("dispute:a", 5_000n))).status).toBe("withdrawn");
    expect(await posted()).toBe(before);
  });

  it("counts a reversal that found the account empty as standing until it is undone", async () => {
    const settlement = deps();
    const id = await paidInvoice(settlement);
    const before = await posted();
    const reversal = (key: string, amount: bigint) => ({ rail: "toy", reference: id, key, amount, evidence });
    const undo = (key: string) => ({ rail: "toy", reference: id, key, evidence });
    // the first takes all the account holds (a balancing debit), the second finds nothing left
    expect(await applyReversed(settlement, reversal("dispute:all", before + 1n))).toEqual({
      status: "applied",
      shortfall: 1n,
    });
    expect(await applyReversed(settlement, reversal("refund:none", 500n))).toEqual({
      status: "applied",
      shortfall: 500n,
    });
    expect(await posted()).toBe(0n);
    expect(await applyReinstated(settlement, undo("refund:none"))).toEqual({
      status: "applied",
      amount: 0n,
      paidNow: false,
    });
    expect((await getInvoice(db, { tenantId, id }))?.status).toBe("reversed");
    expect(await applyReinstated(settlement, undo("dispute:all"))).toEqual({
      status: "applied",
      amount: before,
      paidNow: true,
    });
    expect((await getInvoice(db, { tenantId, id }))?.status).toBe("paid");
    expect(await posted()).toBe(before);
  });

  it("collects a reversal's shortfall from another reversal given back, and gives the collection back with it", async () => {
    const settlement = deps();
    const id = await paidInvoice(settlement);
    const before = await posted();
    const reversal = (key: string, amount: bigint) => ({ rail: "toy", reference: id, key, amount, evidence });
    const undo = (key: string) => ({ rail: "toy", reference: id, key, evidence });
    const shortfalls = () =>
      db.query<{ reversal_key: string; amount: bigint; collected: bigint; closed: boolean }>(
        `SELECT reversal_key, amount, collected, closed_at IS NOT NULL AS closed FROM reversal_shortfalls
         WHERE invoice_id = $1`,
        [id],
      );
    // A refund made at the provider, then a dispute of everything: it finds 1,000 less than it asks.
    expect((await applyReversed(settlement, reversal("refund:x", 1_000n))).status).toBe("applied");
    expect(await applyReversed(settlement, reversal("dispute:y", before))).toEqual({
      status: "applied",
      shortfall: 1_000n,
    });
    expect(await posted()).toBe(0n);
    expect(await shortfalls()).toEqual([
      { reversal_key: "dispute:y", amount: 1_000n, collected: 0n, closed: false },
    ]);
    // The refund failed: its 1,000 settle the dispute's shortfall, nothing stays on the account; told again, nothing.
    expect(await applyReinstated(settlement, undo("refund:x"))).toEqual({
      status: "applied",
      amount: 1_000n,
      paidNow: false,
    });
    expect(await applyReinstated(settlement, undo("refund:x"))).toEqual({
      status: "duplicate",
      amount: 0n,
      paidNow: false,
    });
    expect(await posted()).toBe(0n);
    expect(await shortfalls()).toEqual([
      { reversal_key: "dispute:y", amount: 1_000n, collected: 1_000n, closed: false },
    ]);
    // The dispute won: all it took comes back, what it collected too, and its shortfall is closed.
    expect(await applyReinstated(settlement, undo("dispute:y"))).toEqual({
      status: "applied",
      amount: before,
      paidNow: true,
    });
    expect(await posted()).toBe(before);
    expect(await shortfalls()).toEqual([
      { reversal_key: "dispute:y", amount: 1_000n, collected: 1_000n, closed: true },
    ]);
    expect((await getInvoice(db, { tenantId, id }))?.status).toBe("paid");
    // The events say so: refund:x's 1,000 went to the dispute's shortfall, the dispute's give-back (what it took
    // and what was collected of it) stayed whole; mirrored from the events, the balance is the ledger's.
    expect(await reinstatedEvents(id)).toEqual([
      { reversal: "refund:x", amount: "1000", shortfall_collected: "1000", net: "0" },
      {
        reversal: "dispute:y",
        amount: before.toString(),
        shortfall_collected: "0",
        net: before.toString(),
      },
    ]);
    expect(await mirrored(id, before)).toBe(await posted());
  });

  it("collects from a collection given back on a later look of a give-back, once, and marks it given back", async () => {
    const settlement = deps();
    const id = await paidInvoice(settlement);
    const P = await posted();
    const reversal = (key: string, amount: bigint) => ({ rail: "toy", reference: id, key, amount, evidence });
    const undo = (key: string) => ({ rail: "toy", reference: id, key, evidence });
    const shortfalls = () =>
      db.query<{ reversal_key: string; amount: bigint; collected: bigint; closed: boolean }>(
        `SELECT reversal_key, amount, collected, closed_at IS NOT NULL AS closed FROM reversal_shortfalls
         WHERE invoice_id = $1 ORDER BY recorded_at`,
        [id],
      );
    const collected = () =>
      db.query<{ reversal_key: string; amount: bigint }>(
        `SELECT reversal_key, amount FROM reversal_shortfall_collections WHERE invoice_id = $1
         ORDER BY collected_at, amount`,
        [id],
      );
    // 3,000 left on the account; a dispute of 5,000 takes it (2,000 short), then a refund made at the provider of
    // 4,000 finds nothing (4,000 short).
    expect((await applyReversed(settlement, reversal("refund:b", 2_000n))).status).toBe("applied");
    expect((await applyReversed(settlement, reversal("refund:a", P - 5_000n))).status).toBe("applied");
    expect(await posted()).toBe(3_000n);
    expect(await applyReversed(settlement, reversal("dispute:k", 5_000n))).toEqual({
      status: "applied",
      shortfall: 2_000n,
    });
    expect(await applyReversed(settlement, reversal("refund:r", 4_000n))).toEqual({
      status: "applied",
      shortfall: 4_000n,
    });
    // The dispute won: its give-back (3,000, all collected for refund:r) commits, its mark does not.
    await expect(applyReinstated(deps(crashingOnce(db, "SET closed_at")), undo("dispute:k"))).rejects.toThrow(
      "crash",
    );
    expect(await posted()).toBe(0n);
    // refund:b failed: its 2,000 settle the dispute's shortfall (the oldest) before the mark is written.
    expect(await applyReinstated(settlement, undo("refund:b"))).toEqual({
      status: "applied",
      amount: 2_000n,
      paidNow: false,
    });
    expect(await posted()).toBe(0n);
    // The dispute won, told again: the 2,000 collected of it since come back, of which refund:r's last 1,000 are
    // collected; the rest stays. The account ends with what the rail did not take: P less refund:a and refund:r.
    expect(await applyReinstated(settlement, undo("dispute:k"))).toEqual({
      status: "applied",
      amount: 5_000n,
      paidNow: false,
    });
    expect(await applyReinstated(settlement, undo("dispute:k"))).toEqual({
      status: "duplicate",
      amount: 0n,
      paidNow: false,
    });
    expect(await posted()).toBe(1_000n);
    expect(await shortfalls()).toEqual([
      { reversal_key: "dispute:k", amount: 2_000n, collected: 2_000n, closed: true },
      { reversal_key: "refund:r", amount: 4_000n, collected: 4_000n, closed: false },
    ]);
    expect(await collected()).toEqual([
      { reversal_key: "refund:r", amount: 3_000n },
      { reversal_key: "dispute:k", amount: 2_000n },
      { reversal_key: "refund:r", amount: 1_000n },
    ]);
    // The dispute's event counts what both its looks collected for refund:r (3,000 and 1,000), once.
    expect(await reinstatedEvents(id)).toEqual([
      { reversal: "refund:b", amount: "2000", shortfall_collected: "2000", net: "0" },
      { reversal: "dispute:k", amount: "5000", shortfall_collected: "4000", net: "1000" },
    ]);
    expect(await mirrored(id, P)).toBe(await posted());
    expect(await ledgerInvariantProblems(db)).toEqual([]);
  });

  it("never takes a reversal withdrawn before it arrived, even one racing its withdrawal", async () => {
    const settlement = deps();
    const id = await paidInvoice(settlement);
    const before = await posted();
    const undo = (key: string) => ({ rail: "toy", reference: id, key, evidence });
    const reversal = (key: string) => ({ rail: "toy", reference: id, key, amount: 700n, evidence });
    expect(await applyReinstated(settlement, undo("refund:early"))).toEqual({
      status: "withdrawn",
      amount: 0n,
      paidNow: false,
    });
    expect((await applyReversed(settlement, reversal("refund:early"))).status).toBe("withdrawn");
    expect(await posted()).toBe(before);
    // The withdrawal looks for the reversal's ledger transfer just before the reversal writes it, and records
    // itself just before the reversal's legs and record are written: the reversal, finding the withdrawal, gives
    // back what it took.
    const tooEarly: Ledger = { ...ledger, lookupTransfers: async () => [] };
    const racing: SettlementDeps = {
      ...settlement,
      ledger: {
        ...ledger,
        createTransfersWith: async (...args) => {
          await applyReinstated({ ...settlement, ledger: tooEarly }, undo("refund:racing"));
          return await ledger.createTransfersWith(...args);
        },
      },
    };
    expect((await applyReversed(racing, reversal("refund:racing"))).status).toBe("withdrawn");
    expect(await posted()).toBe(before);
    // Its leg was rolled back with its record: nothing was taken, so nothing stood untold until the give-back
    // (before: the leg was written, then given back).
    expect(await ledger.lookupTransfers([derivedLedgerId(`${id}:refund:racing`, "reversed")])).toEqual([]);
    const events = await db.query<{ type: string }>(
      "SELECT type FROM outbox WHERE payload->>'invoice_id' = $1 ORDER BY id",
      [id],
    );
    expect(events.map((event) => event.type)).toEqual(["invoice.payment_received", "invoice.paid"]);
  });

  it("gives back a reversal recorded after its withdrawal looked for what it took", async () => {
    const settlement = deps();
    const id = await paidInvoice(settlement);
    const before = await posted();
    const undo = { rail: "toy", reference: id, key: "dispute:late", evidence };
    // The withdrawal finds no ledger transfer of the reversal; then the reversal is applied whole (legs, record,
    // event); then the withdrawal marks the record given back.
    let applied = false;
    const late: SettlementDeps = {
      ...settlement,
      db: {
        ...db,
        transaction: async (fn) => {
          if (!applied) {
            applied = true;
            expect((await applyReversed(settlement, { ...undo, amount: 700n })).status).toBe("applied");
            expect(await posted()).toBe(before - 700n);
          }
          return await db.transaction(fn);
        },
      },
    };
    // Before: the record was marked given back with nothing given back, and the 700 stayed taken for good.
    expect(await applyReinstated(late, undo)).toEqual({ status: "applied", amount: 700n, paidNow: true });
    expect(await posted()).toBe(before);
    expect((await getInvoice(db, { tenantId, id }))?.status).toBe("paid");
    const events = await db.query<{ type: string; amount: string | null }>(
      "SELECT type, payload->>'amount' AS amount FROM outbox WHERE payload->>'invoice_id' = $1 ORDER BY id",
      [id],
    );
    expect(events).toEqual([
      { type: "invoice.payment_received", amount: expect.any(String) },
      { type: "invoice.paid", amount: null },
      { type: "invoice.reversed", amount: "700" },
      { type: "invoice.reinstated", amount: "700" },
      { type: "invoice.paid", amount: null },
    ]);
    expect(await applyReinstated(settlement, undo)).toEqual({
      status: "duplicate",
      amount: 0n,
      paidNow: false,
    });
  });
});
