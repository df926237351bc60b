// A paywall's split carried by an invoice, on PGlite: when a receipt is credited, each payee's share of it moves
// from the invoice's account to the payee's in the same ledger request (one linked chain), floored per share with
// the remainder left to the invoice's account (paywall/scheme.ts splitShares), once however often it is delivered.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { assets } from "../../core/index.ts";
import { ledgerInvariantProblems } from "../../test/support/ledger-invariants.ts";
import { balanceOf, createAccount, createAccountCache } from "../accounts/index.ts";
import { gatewayMigrations } from "../app.ts";
import { type Db, migrate, openPglite } from "../db/index.ts";
import { derivedLedgerId } from "../ids/index.ts";
import { createLedger, type Ledger, ledgerMigrations, transferCodes } from "../ledger/index.ts";
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
} from "./index.ts";

let db: Db;
let ledger: Ledger;
const tenantId = "ten_split";
const ledgerIds = new Map<string, bigint>();

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

const deps = (): SettlementDeps => ({
  db,
  ledger,
  accounts: createAccountCache({ sql: db }, { entriesMax: 10 }),
  openInvoices: createOpenInvoiceMemory({ entriesMax: 10 }),
  rails: new Map([[toyReceiver.id, toyReceiver]]),
});

beforeAll(async () => {
  db = await openPglite(undefined);
  await migrate(db, [ledgerMigrations, gatewayMigrations]);
  ledger = createLedger({ ...gatewayLedgerParams, db });
  await createTenant(db, { id: tenantId, name: "Split" });
  await createTenant(db, { id: "ten_other", name: "Other" });
  for (const [tenant, id] of [
    [tenantId, "acct_seller"],
    [tenantId, "acct_payee_a"],
    [tenantId, "acct_payee_b"],
    ["ten_other", "acct_stranger"],
  ] as const) {
    const account = await createAccount(
      { sql: db, ledger },
      { tenantId: tenant, kind: "customer", asset: assets.BTC, name: id, id },
    );
    ledgerIds.set(id, account.ledgerAccountId);
  }
  await createAccount(
    { sql: db, ledger },
    {
      tenantId: null,
      kind: "clearing",
      asset: assets.BTC,
      name: "toy",
      rail: "toy",
      id: "acct_clearing_toy",
    },
  );
}, 120_000);

afterAll(async () => {
  await ledger?.close();
  await db?.close();
});

const posted = async (id: string) => {
  const [account] = await ledger.lookupAccounts([ledgerIds.get(id)!]);
  return balanceOf("customer", account!).posted;
};
const balances = async () => ({
  seller: await posted("acct_seller"),
  a: await posted("acct_payee_a"),
  b: await posted("acct_payee_b"),
});
const delta = (after: Record<string, bigint>, before: Record<string, bigint>) =>
  Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - (before[k] ?? 0n)]));

const split = [
  { accountId: "acct_payee_a", basisPoints: 2_500 },
  { accountId: "acct_payee_b", basisPoints: 3_333 },
];
const params = {
  tenantId,
  accountId: "acct_seller",
  asset: "BTC",
  amount: "0.0000001", // 10,000 minor units
  rail: null,
  description: "paywall",
  expirySeconds: 600,
  split,
};
const evidence = { rail: "external" as const, railId: "toy", reference: "ab".repeat(32) };

describe("an invoice with a split", () => {
  it("moves each payee's floored share of what was received with the credit, the remainder to the seller, once", async () => {
    const settlement = deps();
    const created = await createInvoice(settlement, params);
    if (!created.ok) throw new Error(created.message);
    const id = created.invoice.id;
    const before = await balances();
    // Over-paid by 1: the shares are of what was received (10,001), not of the price.
    const event = { rail: "toy", reference: id, amount: 10_001n, evidence };
    expect(await applyReceived(settlement, event)).toBe("applied");
    expect(await applyReceived(settlement, event)).toBe("duplicate");
    // Not remembered by this process (read from the row, split included): still nothing twice.
    expect(await applyReceived(deps(), event)).toBe("duplicate");
    // 10,001 × 25% = 2,500.25 → 2,500; × 33.33% = 3,333.33… → 3,333; the seller 10,001 − 5,833 = 4,168.
    expect(delta(await balances(), before)).toEqual({ seller: 4_168n, a: 2_500n, b: 3_333n });
    expect(await getInvoice(db, { tenantId, id })).toMatchObject({ status: "paid", receivedAmount: 10_001n });
    // One receipt, told as a named one is (what came, in what), then the invoice paid: once each.
    const events = await db.query<{ type: string; payload: Record<string, unknown> }>(
      "SELECT type, payload FROM outbox WHERE payload->>'invoice_id' = $1 ORDER BY id",
      [id],
    );
    expect(events).toEqual([
      {
        type: "invoice.payment_received",
        payload: { invoice_id: id, asset: "BTC", amount: "10001", received_amount: "10001", late: false },
      },
      { type: "invoice.paid", payload: { invoice_id: id } },
    ]);
    // Each share is a transfer of its own, named after the invoice (an account's transactions show it).
    const [share] = await ledger.lookupTransfers([
      derivedLedgerId(`${derivedLedgerId(id, "received")}:acct_payee_a`, "share"),
    ]);
    expect(share).toMatchObject({
      amount: 2_500n,
      code: transferCodes.invoices.share,
      debitAccountId: ledgerIds.get("acct_seller"),
      creditAccountId: ledgerIds.get("acct_payee_a"),
      userData128: derivedLedgerId(id, "invoice"),
    });
    expect(await ledgerInvariantProblems(db)).toEqual([]);
  });

  it("splits each named receipt of its own", async () => {
    const settlement = deps();
    const created = await createInvoice(settlement, params);
    if (!created.ok) throw new Error(created.message);
    const before = await balances();
    const receipt = (key: string, amount: bigint) => ({
      rail: "toy",
      reference: created.invoice.id,
      key,
      amount,
      evidence,
    });
    expect(await applyReceived(settlement, receipt("r1", 4_000n))).toBe("received");
    expect(await applyReceived(settlement, receipt("r2", 6_000n))).toBe("applied");
    expect(await applyReceived(settlement, receipt("r2", 6_000n))).toBe("duplicate");
    // 4,000: 1,000 / 1,333 / 1,667; 6,000: 1,500 / 1,999 / 2,501.
    expect(delta(await balances(), before)).toEqual({ seller: 4_168n, a: 2_500n, b: 3_332n });
    expect(await ledgerInvariantProblems(db)).toEqual([]);
  });

  it("a split naming one account twice (two payees paid to one account) gives it both shares in one transfer", async () => {
    const settlement = deps();
    const created = await createInvoice(settlement, {
      ...params,
      split: [
        { accountId: "acct_payee_a", basisPoints: 2_500 },
        { accountId: "acct_payee_b", basisPoints: 100 },
        { accountId: "acct_payee_a", basisPoints: 1_000 },
      ],
    });
    if (!created.ok) throw new Error(created.message);
    const before = await balances();
    const event = { rail: "toy", reference: created.invoice.id, amount: 10_000n, evidence };
    expect(await applyReceived(settlement, event)).toBe("applied");
    expect(delta(await balances(), before)).toEqual({ seller: 6_400n, a: 3_500n, b: 100n });
    expect(await ledgerInvariantProblems(db)).toEqual([]);
  });

  it("an invoice written before with one account twice in its split is credited once read again", async () => {
    const created = await createInvoice(deps(), params);
    if (!created.ok) throw new Error(created.message);
    await db.query("UPDATE invoices SET split = $2::jsonb WHERE id = $1", [
      created.invoice.id,
      JSON.stringify([
        { accountId: "acct_payee_a", basisPoints: 1_000 },
        { accountId: "acct_payee_a", basisPoints: 1_000 },
      ]),
    ]);
    const before = await balances();
    // A process that does not remember it: the split is read from the row.
    const event = { rail: "toy", reference: created.invoice.id, amount: 10_000n, evidence };
    expect(await applyReceived(deps(), event)).toBe("applied");
    expect(delta(await balances(), before)).toEqual({ seller: 8_000n, a: 2_000n, b: 0n });
  });

  it("refuses a split to an account of another tenant or another asset, writing nothing", async () => {
    const [before] = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM invoices");
    const stranger = await createInvoice(deps(), {
      ...params,
      split: [{ accountId: "acct_stranger", basisPoints: 100 }],
    });
    expect(stranger).toMatchObject({ ok: false, refusal: "account_not_found", param: "split" });
    const [after] = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM invoices");
    expect(after!.n).toBe(before!.n);
  });

  it("on a reversal, takes back each payee's share of it and the rest from the seller, each up to what it holds", async () => {
    const settlement = deps();
    const created = await createInvoice(settlement, { ...params, tenantId, accountId: "acct_seller" });
    if (!created.ok) throw new Error(created.message);
    const id = created.invoice.id;
    expect(await applyReceived(settlement, { rail: "toy", reference: id, amount: 10_000n, evidence })).toBe(
      "applied",
    );
    const seller = await posted("acct_seller");
    const before = await balances();
    // More than was received: the payees give back their shares of what was received (2,500 and 3,333), the
    // seller all it holds, and the rest is the shortfall.
    const reversed = await applyReversed(settlement, {
      rail: "toy",
      reference: id,
      key: "dispute",
      amount: seller + 10_000n,
      evidence,
    });
    expect(reversed).toEqual({ status: "applied", shortfall: 4_167n });
    expect(delta(await balances(), before)).toEqual({ seller: -seller, a: -2_500n, b: -3_333n });
    expect(await ledgerInvariantProblems(db)).toEqual([]);
  });

  it("undoes a receipt's split exactly when all of it is reversed, in proportion when part is, and gives it back on reinstatement", async () => {
    const settlement = deps();
    const created = await createInvoice(settlement, params);
    if (!created.ok) throw new Error(created.message);
    const id = created.invoice.id;
    const start = await balances();
    expect(await applyReceived(settlement, { rail: "toy", reference: id, amount: 10_001n, evidence })).toBe(
      "applied",
    );
    // Part of it: 3,001 × 25% = 750.25 → 750; × 33.33% = 1,000.23… → 1,000; the seller 3,001 − 1,750 = 1,251.
    const partial = { rail: "toy", reference: id, key: "refund-1", amount: 3_001n, evidence };
    const afterCredit = await balances();
    expect(await applyReversed(settlement, partial)).toEqual({ status: "applied", shortfall: 0n });
    expect(await applyReversed(settlement, partial)).toEqual({ status: "duplicate", shortfall: 0n });
    expect(delta(await balances(), afterCredit)).toEqual({ seller: -1_251n, a: -750n, b: -1_000n });
    // Given back: each account gets back exactly what it gave.
    expect(
      await applyReinstated(settlement, { rail: "toy", reference: id, key: "refund-1", evidence }),
    ).toEqual({ status: "applied", amount: 3_001n, paidNow: true });
    expect(delta(await balances(), afterCredit)).toEqual({ seller: 0n, a: 0n, b: 0n });
    // All of it: the credit and its shares undone to the unit.
    const whole = { rail: "toy", reference: id, key: "reorg", amount: 10_001n, evidence };
    expect(await applyReversed(settlement, whole)).toEqual({ status: "applied", shortfall: 0n });
    expect(delta(await balances(), start)).toEqual({ seller: 0n, a: 0n, b: 0n });
    expect(await getInvoice(db, { tenantId, id })).toMatchObject({ status: "reversed" });
    expect(await ledgerInvariantProblems(db)).toEqual([]);
  });
});
