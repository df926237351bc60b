// A reversal of a split invoice's money (applyReversed), on PGlite: each payee gives back its part of the shares the
// invoice's receipts actually credited it — never more, however many reversals come, and exactly all of it once
// reversals and refunds, in parts and in any order, took back all the invoice received — and the legs, the seller's
// and the payees', are one linked ledger chain. A receipt's credit and its record are written together, so a crash
// between them cannot leave a reorg's reversal blind to the payees' shares. (The split itself and a reversal's
// shares: invoice-split.test.ts.)
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { assets, formatAmount, type Rail } from "../../core/index.ts";
import { ledgerInvariantProblems } from "../../test/support/ledger-invariants.ts";
import { crashingOnce } from "../../test/support/recording-db.ts";
import { receivingToySnapshot } from "../../test/support/toy-rail.ts";
import { balanceOf, createAccount, createAccountCache } from "../accounts/index.ts";
import { gatewayMigrations } from "../app.ts";
import { type Db, migrate, openPglite, type Row } from "../db/index.ts";
import { derivedLedgerId } from "../ids/index.ts";
import {
  createLedger,
  type Ledger,
  ledgerMigrations,
  TransferFlags,
  transferCodes,
} from "../ledger/index.ts";
import { gatewayLedgerParams } from "../ledger-params.ts";
import { evidenceForLedger } from "../payments/index.ts";
import { applyRefundEvent, createRefund } from "../payments/refunds.ts";
import { createTenant } from "../tenants/index.ts";
import {
  applyReceived,
  applyReinstated,
  applyReversed,
  createInvoice,
  createOpenInvoiceMemory,
  type ReceivingRail,
  type SettlementDeps,
  submitInvoicePayment,
} from "./index.ts";
import { receiptLedgerId, receiptShareLedgerId, reversalShareLedgerId } from "./split-reversal.ts";

let db: Db;
let ledger: Ledger;
const tenantId = "ten_split_reversal";
const ledgerIds = new Map<string, bigint>();

/** Takes BTC in for invoices, and refunds through its provider (as Stripe's refund with reverse_transfer). */
const toyReceiver: ReceivingRail & Rail = {
  id: "toy",
  kind: "fiat",
  asset: assets.BTC,
  async start() {},
  async stop() {},
  snapshot: () => receivingToySnapshot(toyReceiver, 1_000_000_000n),
  execute: async () => ({ status: "failed", code: "rejected", message: "no payouts", retryElsewhere: true }),
  onEvent() {},
  balance: async () => 0n,
  async receive(request) {
    return {
      status: "offered",
      railReference: `hash-${request.reference}`,
      expiresAtMs: 2_000_000_000_000,
      instructions: { method: "toy", pay_to: request.reference },
    };
  },
  async refundReceived(refund) {
    return {
      status: "succeeded",
      evidence: { rail: "external", railId: "toy", reference: `toy_re_${refund.id}` },
      fee: 0n,
    };
  },
};

const deps = (database: Db = db): SettlementDeps => ({
  db: database,
  ledger,
  accounts: createAccountCache({ sql: database }, { entriesMax: 10 }),
  openInvoices: createOpenInvoiceMemory({ entriesMax: 10 }),
  rails: new Map([[toyReceiver.id, toyReceiver]]),
});

beforeAll(async () => {
  db = await openPglite(undefined);
  await migrate(db, [ledgerMigrations, gatewayMigrations]);
  ledger = createLedger({ ...gatewayLedgerParams, db });
  await createTenant(db, { id: tenantId, name: "Split reversal" });
  for (const id of [
    "acct_seller",
    "acct_payee_a",
    "acct_payee_b",
    "acct_payee_c",
    "acct_elsewhere",
    "acct_over_paid",
  ]) {
    const account = await createAccount(
      { sql: db, ledger },
      { tenantId, kind: "customer", asset: assets.BTC, name: id, id },
    );
    ledgerIds.set(id, account.ledgerAccountId);
  }
  const clearing = await createAccount(
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
  ledgerIds.set("acct_clearing_toy", clearing.ledgerAccountId);
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

const params = {
  tenantId,
  accountId: "acct_seller",
  asset: "BTC",
  amount: "0.0000001", // 10,000 minor units
  rail: null,
  description: "paywall",
  expirySeconds: 600,
  split: [
    { accountId: "acct_payee_a", basisPoints: 2_500 },
    { accountId: "acct_payee_b", basisPoints: 3_333 },
  ],
};
const evidence = { rail: "external" as const, railId: "toy", reference: "ab".repeat(32) };

async function paidInvoice(
  receipts: readonly bigint[],
  split: typeof params.split | null = params.split,
  seller = params.accountId,
): Promise<string> {
  const settlement = deps();
  const { split: _, ...unsplit } = params;
  const created = await createInvoice(
    settlement,
    split === null ? { ...unsplit, accountId: seller } : { ...params, split, accountId: seller },
  );
  if (!created.ok) throw new Error(created.message);
  for (const [i, amount] of receipts.entries())
    await applyReceived(settlement, {
      rail: "toy",
      reference: created.invoice.id,
      key: `r${i}`,
      amount,
      evidence,
    });
  return created.invoice.id;
}

describe("a reversal of a split invoice", () => {
  it("takes back from each payee what its receipts' shares credited it, not the split applied again", async () => {
    // 4,000 and 6,000: B is credited 1,333 + 1,999 = 3,332, one less than 33.33% of 10,000.
    const id = await paidInvoice([4_000n, 6_000n]);
    const before = await balances();
    const reversed = await applyReversed(deps(), {
      rail: "toy",
      reference: id,
      key: "reorg",
      amount: 10_000n,
      evidence,
    });
    expect(reversed).toEqual({ status: "applied", shortfall: 0n });
    expect(delta(await balances(), before)).toEqual({ seller: -4_168n, a: -2_500n, b: -3_332n });
    expect(await ledgerInvariantProblems(db)).toEqual([]);
  });

  it("never takes back more than a payee was credited, however many reversals of the invoice come", async () => {
    // The payees and the seller hold more than this invoice gave them (other invoices' money): only the cap keeps
    // the payees' legs within this invoice's shares, and the seller can give all the rest.
    for (let i = 0; i < 3; i++) await paidInvoice([10_000n]);
    const id = await paidInvoice([10_000n]);
    const settlement = deps();
    const before = await balances();
    const dispute = { rail: "toy", reference: id, key: "dispute", amount: 6_000n, evidence };
    expect(await applyReversed(settlement, dispute)).toEqual({ status: "applied", shortfall: 0n });
    // 6,000: A 1,500, B 1,999; the seller 2,501.
    expect(delta(await balances(), before)).toEqual({ seller: -2_501n, a: -1_500n, b: -1_999n });
    // Another reversal of all of it: the payees give back only what is left of their credit (1,000 and 1,334).
    const reorg = { rail: "toy", reference: id, key: "reorg", amount: 10_000n, evidence };
    expect(await applyReversed(settlement, reorg)).toEqual({ status: "applied", shortfall: 0n });
    expect(delta(await balances(), before)).toEqual({ seller: -(2_501n + 7_666n), a: -2_500n, b: -3_333n });
    // Once more: nothing from the payees at all.
    const again = { rail: "toy", reference: id, key: "again", amount: 1_000n, evidence };
    expect(await applyReversed(settlement, again)).toEqual({ status: "applied", shortfall: 0n });
    expect(delta(await balances(), before)).toEqual({
      seller: -(2_501n + 7_666n + 1_000n),
      a: -2_500n,
      b: -3_333n,
    });
    expect(await ledgerInvariantProblems(db)).toEqual([]);
  });

  it("writes the payees' legs and the seller's as one linked chain, once", async () => {
    const id = await paidInvoice([10_000n]);
    const settlement = deps();
    const event = { rail: "toy", reference: id, key: "linked", amount: 5_000n, evidence };
    expect(await applyReversed(settlement, event)).toEqual({ status: "applied", shortfall: 0n });
    const legs = await ledger.lookupTransfers([
      reversalShareLedgerId(id, "linked", "acct_payee_a", "reversed"),
      reversalShareLedgerId(id, "linked", "acct_payee_b", "reversed"),
    ]);
    expect(legs.map((leg) => [leg.amount, (leg.flags & TransferFlags.linked) !== 0])).toEqual([
      [1_250n, true],
      [1_666n, true],
    ]);
    const before = await balances();
    expect(await applyReversed(deps(), event)).toEqual({ status: "duplicate", shortfall: 0n });
    expect(await balances()).toEqual(before);
  });

  it("records what a later look of a give-back collects on a payee from a collection it gives back", async () => {
    const id = await paidInvoice([10_000n], [{ accountId: "acct_payee_b", basisPoints: 5_000 }]);
    const settlement = deps();
    const reversal = (key: string, amount: bigint) => ({ rail: "toy", reference: id, key, amount, evidence });
    const undo = (key: string) => ({ rail: "toy", reference: id, key, evidence });
    const shortfalls = () =>
      db.query<{
        reversal_key: string;
        account_id: string;
        amount: bigint;
        collected: bigint;
        closed: boolean;
      }>(
        `SELECT reversal_key, account_id, amount, collected, closed_at IS NOT NULL AS closed FROM reversal_shortfalls
         WHERE invoice_id = $1 ORDER BY recorded_at, account_id`,
        [id],
      );
    // What the ledger collected (code 14, in this file's database only from this test) against what is recorded.
    const collectedOnLedger = async () => {
      const [row] = await db.query<{ sum: string }>(
        "SELECT coalesce(sum(amount), 0)::text AS sum FROM ledger_transfers WHERE code = $1",
        [transferCodes.invoices.shortfallCollected],
      );
      return BigInt(row!.sum);
    };
    const collectedRecorded = async () => {
      const [row] = await db.query<{ sum: string }>(
        "SELECT coalesce(sum(amount), 0)::text AS sum FROM reversal_shortfall_collections",
      );
      return BigInt(row!.sum);
    };
    // The seller and payee B each got 5,000; a refund made at the provider takes 1,000 of each.
    expect(await applyReversed(settlement, reversal("refund:b", 2_000n))).toEqual({
      status: "applied",
      shortfall: 0n,
    });
    // Both pay out (B all it holds, the seller all but 2,000), then a dispute of 4,000 takes the seller's 2,000 and
    // nothing of B's 2,000, and a refund made at the provider of 6,000 finds nothing.
    await payOut("acct_payee_b", await posted("acct_payee_b"));
    await payOut("acct_seller", (await posted("acct_seller")) - 2_000n);
    expect(await applyReversed(settlement, reversal("dispute:k", 4_000n))).toEqual({
      status: "applied",
      shortfall: 2_000n,
    });
    expect(await applyReversed(settlement, reversal("refund:r", 6_000n))).toEqual({
      status: "applied",
      shortfall: 6_000n,
    });
    // The dispute won: its give-back (the seller's 2,000, collected for refund:r) commits, its mark does not.
    await expect(applyReinstated(deps(crashingOnce(db, "SET closed_at")), undo("dispute:k"))).rejects.toThrow(
      "crash",
    );
    // refund:b failed: of B's 1,000, the dispute's shortfall on B (the oldest) takes all.
    expect(await applyReinstated(settlement, undo("refund:b"))).toEqual({
      status: "applied",
      amount: 2_000n,
      paidNow: false,
    });
    // The dispute won, told again: B's 1,000 collected of it come back and go to refund:r's shortfall on B, recorded.
    expect(await applyReinstated(settlement, undo("dispute:k"))).toEqual({
      status: "applied",
      amount: 3_000n,
      paidNow: false,
    });
    expect(await applyReinstated(settlement, undo("dispute:k"))).toEqual({
      status: "duplicate",
      amount: 0n,
      paidNow: false,
    });
    expect(await shortfalls()).toEqual([
      {
        reversal_key: "dispute:k",
        account_id: "acct_payee_b",
        amount: 2_000n,
        collected: 1_000n,
        closed: true,
      },
      // refund:r asks B only what is left of its credit, the dispute's shortfall on it counted as owed (5,000 less
      // 1,000 and 2,000), the seller the rest. Before, B was asked 3,000: 6,000 of its credit of 5,000 in all.
      {
        reversal_key: "refund:r",
        account_id: "acct_payee_b",
        amount: 2_000n,
        collected: 1_000n,
        closed: false,
      },
      {
        reversal_key: "refund:r",
        account_id: "acct_seller",
        amount: 4_000n,
        collected: 3_000n,
        closed: false,
      },
    ]);
    expect(await collectedRecorded()).toBe(await collectedOnLedger());
    // The events count what each give-back collected over the seller and the payee: refund:b's 1,000 of each, the
    // dispute's 2,000 on the seller (its first look) and 1,000 on B (its second); nothing of either stayed.
    const reinstated = await db.query<{
      reversal: string;
      amount: string;
      shortfall_collected: string;
      net: string;
    }>(
      `SELECT payload->>'reversal' AS reversal, payload->>'amount' AS amount,
         payload->>'shortfall_collected' AS shortfall_collected, payload->>'net' AS net
       FROM outbox WHERE type = 'invoice.reinstated' AND payload->>'invoice_id' = $1 ORDER BY id`,
      [id],
    );
    expect(reinstated).toEqual([
      { reversal: "refund:b", amount: "2000", shortfall_collected: "2000", net: "0" },
      { reversal: "dispute:k", amount: "3000", shortfall_collected: "3000", net: "0" },
    ]);
    expect(await ledgerInvariantProblems(db)).toEqual([]);
  });
});

/** All of an invoice split among three payees whose shares round: of 10,001, A and B 3,333, C 3,334, the seller 1. */
const thirds = [
  { accountId: "acct_payee_a", basisPoints: 3_333 },
  { accountId: "acct_payee_b", basisPoints: 3_333 },
  { accountId: "acct_payee_c", basisPoints: 3_334 },
];

/**
 * The posted balances of the seller (`seller`: acct_seller, which holds every other test's money, or one of
 * freshSeller's), the three payees and the rail's clearing account.
 */
const everyone = async (seller = params.accountId) => {
  const [clearing] = await ledger.lookupAccounts([ledgerIds.get("acct_clearing_toy")!]);
  return {
    ...(await balances()),
    seller: await posted(seller),
    c: await posted("acct_payee_c"),
    clearing: balanceOf("clearing", clearing!).posted,
  };
};

/** A seller account of the test's own, holding exactly `holding` (an invoice of its own paid, not split). */
async function freshSeller(id: string, holding: bigint): Promise<string> {
  const account = await createAccount(
    { sql: db, ledger },
    { tenantId, kind: "customer", asset: assets.BTC, name: id, id },
  );
  ledgerIds.set(id, account.ledgerAccountId);
  await paidInvoice([holding], null, id);
  expect(await posted(id)).toBe(holding);
  return id;
}

const untouched = { seller: 0n, a: 0n, b: 0n, c: 0n, clearing: 0n };

describe("a split invoice taken back in parts", () => {
  const reverse = (id: string, key: string, amount: bigint) =>
    applyReversed(deps(), { rail: "toy", reference: id, key, amount, evidence });
  /** A refund through the API (its provider's, on the toy rail) of `amount` minor units of the invoice. */
  const refund = async (id: string, amount: bigint) => {
    const made = await createRefund(
      {
        db,
        ledger,
        accounts: createAccountCache({ sql: db }, { entriesMax: 10 }),
        rails: new Map([["toy", toyReceiver]]),
      },
      {
        tenantId,
        target: { kind: "invoice", invoiceId: id },
        amount: formatAmount(amount, assets.BTC),
        reason: null,
        metadata: {},
        destination: null,
        idempotencyKey: null,
      },
    );
    if (!made.ok) throw new Error(made.message);
    expect(made.refund.status).toBe("succeeded");
  };

  it("takes back exactly what each payee was credited over partial reversals that sum to what was received", async () => {
    const before = await everyone();
    const id = await paidInvoice([10_001n], thirds);
    expect(delta(await everyone(), before)).toEqual({
      seller: 1n,
      a: 3_333n,
      b: 3_333n,
      c: 3_334n,
      clearing: 10_001n,
    });
    // Each reversal's parts are of all three reversals so far. Before, each was floored on its own (A 999, 999 and
    // 1,333 of 3,000, 3,000 and 4,001): A and B kept 2 units each, C 1, and the seller was asked to give them.
    const reversed = [];
    for (const [key, amount] of [
      ["part:1", 3_000n],
      ["part:2", 3_000n],
      ["part:3", 4_001n],
    ] as const)
      reversed.push(await reverse(id, key, amount));
    expect(delta(await everyone(), before)).toEqual(untouched);
    expect(reversed).toEqual(reversed.map(() => ({ status: "applied", shortfall: 0n })));
    expect(await ledgerInvariantProblems(db)).toEqual([]);
  });

  it("counts a refund before the reversals: refunds and reversals in any order add up to each credit, never past it", async () => {
    // A seller of its own holding 6,000 besides the invoice's unit, so that what it gives below is all this test's.
    const seller = await freshSeller("acct_seller_beyond", 6_000n);
    const before = await everyone(seller);
    const id = await paidInvoice([10_001n], thirds, seller);
    await refund(id, 3_000n);
    // Before, each dispute's parts were floored on their own, after the refund's: A and C kept a unit, B two.
    const reversed = [await reverse(id, "dispute:1", 2_000n), await reverse(id, "dispute:2", 5_001n)];
    expect(delta(await everyone(seller), before)).toEqual(untouched);
    expect(reversed).toEqual(reversed.map(() => ({ status: "applied", shortfall: 0n })));
    // Another reversal (of all of it, say) takes nothing more of the payees: the seller gives it, all it holds (its
    // 6,000), and the rest is the reversal's shortfall.
    expect(await reverse(id, "dispute:3", 10_001n)).toEqual({ status: "applied", shortfall: 4_001n });
    expect(delta(await everyone(seller), before)).toEqual({
      ...untouched,
      seller: -6_000n,
      clearing: -6_000n,
    });
    expect(await ledgerInvariantProblems(db)).toEqual([]);
  });

  it("counts a refund made at the provider outside the API before a refund of the rest", async () => {
    const before = await everyone();
    const id = await paidInvoice([10_001n], thirds);
    // Before, the dashboard's refund was floored on its own (A and B 999, C 1,000, the seller asked 2 of its 1), and
    // the refund of the rest, whose parts catch up, found a unit less than C's due left: C kept it.
    const reversed = await reverse(id, "refund:dashboard", 3_000n);
    await refund(id, 7_001n);
    expect(delta(await everyone(), before)).toEqual(untouched);
    expect(reversed).toEqual({ status: "applied", shortfall: 0n });
    expect(await ledgerInvariantProblems(db)).toEqual([]);
  });
});

describe("a reversal of a split invoice and a dispute of it given back", () => {
  const reverse = (settlement: SettlementDeps, id: string, key: string, amount: bigint) =>
    applyReversed(settlement, { rail: "toy", reference: id, key, amount, evidence });
  const reinstate = (id: string, key: string) =>
    applyReinstated(deps(), { rail: "toy", reference: id, key, evidence });

  it("computes a refund made at the provider again when the dispute it read standing is given back before its legs", async () => {
    const seller = await freshSeller("acct_seller_reread", 5_000n);
    const before = await everyone(seller);
    const id = await paidInvoice([10_001n], thirds, seller);
    expect(await reverse(deps(), id, "dispute:1", 10_001n)).toEqual({ status: "applied", shortfall: 0n });
    // The dispute is won while the dashboard's refund is computed: after its reads (the credits, what was taken back
    // before it: the whole dispute), before its legs are written.
    let won: unknown = null;
    const winning = afterOnce(db, "AND r.key IS DISTINCT FROM", async () => {
      won = await reinstate(id, "dispute:1");
    });
    expect(await reverse(deps(winning), id, "refund:dashboard", 3_000n)).toEqual({
      status: "applied",
      shortfall: 0n,
    });
    expect(won).toEqual({ status: "applied", amount: 10_001n, paidNow: true });
    // Its parts are of 3,000 alone, as if the dispute never came: A 999 and B 999, C 1,000, the seller its 1 and A
    // one more. Before, the giving back moved nothing the refund's legs were checked against: its parts computed with
    // the dispute standing (every payee's nothing) were written after every share was given back, the seller giving
    // all 3,000.
    expect(delta(await everyone(seller), before)).toEqual({
      seller: 0n,
      a: 2_333n,
      b: 2_334n,
      c: 2_334n,
      clearing: 7_001n,
    });
    expect(await ledgerInvariantProblems(db)).toEqual([]);
  });

  it("leaves a refund made at the provider while a dispute of all of it stood as it was, once the dispute is won (README)", async () => {
    const seller = await freshSeller("acct_seller_limit", 5_000n);
    const before = await everyone(seller);
    const id = await paidInvoice([10_001n], thirds, seller);
    expect(await reverse(deps(), id, "dispute:1", 10_001n)).toEqual({ status: "applied", shortfall: 0n });
    expect(await reverse(deps(), id, "refund:dashboard", 3_000n)).toEqual({
      status: "applied",
      shortfall: 0n,
    });
    expect(await reinstate(id, "dispute:1")).toEqual({ status: "applied", amount: 10_001n, paidNow: false });
    // The refund came with every share taken back: its parts were nothing, the seller gave all of it, and the dispute
    // won gives every payee its share back in full. A known limit, pinned here: not caught up (the payees keep the
    // 2,999 the refund would have taken of them had it come alone).
    expect(delta(await everyone(seller), before)).toEqual({
      seller: -2_999n,
      a: 3_333n,
      b: 3_333n,
      c: 3_334n,
      clearing: 7_001n,
    });
    expect(await ledgerInvariantProblems(db)).toEqual([]);
  });
});

describe("an invoice one of whose receipts a reorg took back", () => {
  /** A refund through the API (its provider's, on the toy rail) of the invoice: its answer, refused or not. */
  const refunding = (id: string, amount: bigint) =>
    createRefund(
      {
        db,
        ledger,
        accounts: createAccountCache({ sql: db }, { entriesMax: 10 }),
        rails: new Map([["toy", toyReceiver]]),
      },
      {
        tenantId,
        target: { kind: "invoice", invoiceId: id },
        amount: formatAmount(amount, assets.BTC),
        reason: null,
        metadata: {},
        destination: null,
        idempotencyKey: null,
      },
    );
  /** The deposit watcher's reversal of receipt `r<i>` (paidInvoice's keys), which names the receipt it takes. */
  const reorg = (id: string, receipt: string, amount: bigint) => ({
    rail: "toy",
    reference: id,
    key: `reorg:${receipt}`,
    amount,
    evidence,
    takes: { receipt },
  });
  const receive = (id: string, key: string, amount: bigint) =>
    applyReceived(deps(), { rail: "toy", reference: id, key, amount, evidence });
  const statusOf = async (id: string) =>
    (await db.query<{ status: string }>("SELECT status FROM invoices WHERE id = $1", [id]))[0]?.status;
  const eventsOf = async (id: string) =>
    (
      await db.query<{ type: string }>(
        "SELECT type FROM outbox WHERE payload->>'invoice_id' = $1 AND type LIKE 'invoice.%' ORDER BY id",
        [id],
      )
    ).map((row) => row.type);
  /** The status each of the invoice's `type` events says the invoice was left in, in order. */
  const statusesTold = async (id: string, type: "invoice.reversed" | "invoice.reinstated") =>
    (
      await db.query<{ status: string | null }>(
        "SELECT payload->>'invoice_status' AS status FROM outbox WHERE payload->>'invoice_id' = $1 AND type = $2 ORDER BY id",
        [id, type],
      )
    ).map((row) => row.status);

  it("refunds what it still holds, the reorg counted as taken back: each payee gives back its credit once", async () => {
    const before = await everyone();
    const id = await paidInvoice([6_000n, 4_000n], thirds);
    expect(await applyReversed(deps(), reorg(id, "r0", 6_000n))).toEqual({
      status: "applied",
      shortfall: 0n,
    });
    // Before: refused invoice_not_paid, as if disputed, for as long as the deposit stayed unmined.
    expect(await refunding(id, 4_001n)).toMatchObject({ ok: false, refusal: "refund_exceeds_remaining" });
    const refunded = await refunding(id, 4_000n);
    expect(refunded).toMatchObject({ ok: true, refund: { status: "succeeded" } });
    // The reorg took back 6,000 of each payee's credit's parts, the refund the rest: nothing taken twice.
    expect(delta(await everyone(), before)).toEqual(untouched);
    expect(await refunding(id, 1n)).toMatchObject({ ok: false, refusal: "refund_exceeds_remaining" });
    expect(await ledgerInvariantProblems(db)).toEqual([]);
  });

  it("refunds all it received again once the same deposit is mined again, and less it once more when reorganised again", async () => {
    const before = await everyone();
    const id = await paidInvoice([6_000n, 4_000n], thirds);
    expect(await applyReversed(deps(), reorg(id, "r0", 6_000n))).toEqual({
      status: "applied",
      shortfall: 0n,
    });
    expect(await refunding(id, 1_000n)).toMatchObject({ ok: true, refund: { status: "succeeded" } });
    expect(
      await applyReinstated(deps(), { rail: "toy", reference: id, key: "reorg:r0", evidence }),
    ).toMatchObject({ status: "applied" });
    // It holds 9,000 of its 10,000: the 1,000 was refunded while it was not paid, whole. Before: paid.
    expect(await statusOf(id)).toBe("reversed");
    expect(await refunding(id, 9_001n)).toMatchObject({ ok: false, refusal: "refund_exceeds_remaining" });
    // Reorganised away again, its reversal takes back what the first one's giving back gave: r0, counted as before.
    const again = { ...reorg(id, "r0", 6_000n), key: "reorg:r0#1", takes: { reinstated: "reorg:r0" } };
    expect(await applyReversed(deps(), again)).toEqual({ status: "applied", shortfall: 0n });
    expect(await refunding(id, 3_001n)).toMatchObject({ ok: false, refusal: "refund_exceeds_remaining" });
    expect(await refunding(id, 3_000n)).toMatchObject({ ok: true, refund: { status: "succeeded" } });
    expect(delta(await everyone(), before)).toEqual(untouched);
    expect(await ledgerInvariantProblems(db)).toEqual([]);
  });

  it("is paid again, invoice.paid told once, when further receipts bring what it holds to its amount", async () => {
    const id = await paidInvoice([6_000n, 4_000n]);
    expect(await applyReversed(deps(), reorg(id, "r0", 6_000n))).toEqual({
      status: "applied",
      shortfall: 0n,
    });
    expect(await statusOf(id)).toBe("reversed");
    // Before: a receipt moved only an open invoice to paid, so the invoice stayed reversed however much came.
    expect(await receive(id, "r2", 5_000n)).toBe("received");
    expect(await statusOf(id)).toBe("reversed");
    expect(await receive(id, "r3", 1_000n)).toBe("applied");
    expect(await statusOf(id)).toBe("paid");
    expect(await receive(id, "r4", 500n)).toBe("received");
    expect(await eventsOf(id)).toEqual([
      "invoice.payment_received",
      "invoice.payment_received",
      "invoice.paid",
      "invoice.reversed",
      "invoice.payment_received",
      "invoice.payment_received",
      "invoice.paid",
      "invoice.payment_received",
    ]);
    // Another receipt reorganised away takes it back to reversed; mined again, it is paid again, though r0's
    // reversal still stands: it holds its amount. Before, it stayed reversed until every reversal was withdrawn.
    expect(await applyReversed(deps(), reorg(id, "r1", 4_000n))).toEqual({
      status: "applied",
      shortfall: 0n,
    });
    expect(await statusOf(id)).toBe("reversed");
    expect(
      await applyReinstated(deps(), { rail: "toy", reference: id, key: "reorg:r1", evidence }),
    ).toMatchObject({ status: "applied" });
    expect(await statusOf(id)).toBe("paid");
    // Each event says what the invoice was left in: before, nothing did.
    expect(await statusesTold(id, "invoice.reversed")).toEqual(["reversed", "reversed"]);
    expect(await statusesTold(id, "invoice.reinstated")).toEqual(["paid"]);
    expect(await ledgerInvariantProblems(db)).toEqual([]);
  });

  it("stays paid, its invoice.reversed told, while what it still holds covers its amount; reversed once it does not", async () => {
    const id = await paidInvoice([10_000n, 10_000n]);
    expect(await statusOf(id)).toBe("paid");
    expect(await applyReversed(deps(), reorg(id, "r0", 10_000n))).toEqual({
      status: "applied",
      shortfall: 0n,
    });
    // Before: reversed, though r1 alone pays all of it.
    expect(await statusOf(id)).toBe("paid");
    expect(await refunding(id, 10_001n)).toMatchObject({ ok: false, refusal: "refund_exceeds_remaining" });
    expect(await applyReversed(deps(), reorg(id, "r1", 10_000n))).toEqual({
      status: "applied",
      shortfall: 0n,
    });
    expect(await statusOf(id)).toBe("reversed");
    expect(await eventsOf(id)).toEqual([
      "invoice.payment_received",
      "invoice.paid",
      "invoice.payment_received",
      "invoice.reversed",
      "invoice.reversed",
    ]);
    // The first left it paid, and says so: before, a consumer could not tell it from the second.
    expect(await statusesTold(id, "invoice.reversed")).toEqual(["paid", "reversed"]);
    expect(await ledgerInvariantProblems(db)).toEqual([]);
  });

  it("is reversed when what the merchant refunded of its excess leaves it below its amount without the receipt", async () => {
    const id = await paidInvoice([10_000n, 10_000n], null, "acct_over_paid");
    expect(await refunding(id, 10_000n)).toMatchObject({ ok: true, refund: { status: "succeeded" } });
    expect(await applyReversed(deps(), reorg(id, "r1", 10_000n))).toEqual({
      status: "applied",
      shortfall: 0n,
    });
    // Before: paid, the 20 received less the 10 reorganised away taken to hold its 10, though the refund took the
    // other 10 and its account holds nothing of it.
    expect(await posted("acct_over_paid")).toBe(0n);
    expect(await statusOf(id)).toBe("reversed");
    expect(await statusesTold(id, "invoice.reversed")).toEqual(["reversed"]);
    expect(await ledgerInvariantProblems(db)).toEqual([]);
  });

  /** A seller account of its own, so that no other test's money or shortfalls on it move what this one takes. */
  const seller = async (id: string) => {
    const account = await createAccount(
      { sql: db, ledger },
      { tenantId, kind: "customer", asset: assets.BTC, name: id, id },
    );
    ledgerIds.set(id, account.ledgerAccountId);
    return id;
  };
  /** A payer's signed payment of the invoice, handed to a toy rail that takes every one. */
  const authorize = (id: string) =>
    submitInvoicePayment(
      {
        ...deps(),
        rails: new Map([
          [
            "toy",
            {
              ...toyReceiver,
              submitSignedPayment: async () => ({ status: "submitted", railReference: `toy_tx_${id}` }),
            },
          ],
        ]),
      },
      { tenantId, id, fields: {} },
    );

  it("is paid again only by receipts that make up what a refund of its excess gave back of a receipt a reorg took", async () => {
    const id = await paidInvoice([15_000n], null, await seller("acct_refunded_excess"));
    expect(await refunding(id, 5_000n)).toMatchObject({ ok: true, refund: { status: "succeeded" } });
    // The refund took 5,000 of the 15,000: the reorg takes the 10,000 left, and 5,000 is its shortfall.
    expect(await applyReversed(deps(), reorg(id, "r0", 15_000n))).toEqual({
      status: "applied",
      shortfall: 5_000n,
    });
    expect(await statusOf(id)).toBe("reversed");
    // It holds 5,000 less than nothing (the payer was paid back 5,000 of a deposit that is gone): 10,000 makes up
    // 5,000 of its 10,000. Before: paid, the refund left out of what it holds.
    expect(await receive(id, "r1", 10_000n)).toBe("received");
    expect(await statusOf(id)).toBe("reversed");
    expect(await authorize(id)).toMatchObject({ ok: true, railReference: `toy_tx_${id}` });
    expect(await receive(id, "r2", 4_999n)).toBe("received");
    expect(await receive(id, "r3", 1n)).toBe("applied");
    expect(await statusOf(id)).toBe("paid");
    expect(await authorize(id)).toMatchObject({ ok: false, refusal: "invoice_not_payable" });
    expect(await posted("acct_refunded_excess")).toBe(15_000n);
    expect(await ledgerInvariantProblems(db)).toEqual([]);
  });

  it("takes an authorization once a reorg reverses it, though a receipt it refunded still stands", async () => {
    const id = await paidInvoice([10_000n, 10_000n], null, await seller("acct_refunded_other"));
    expect(await refunding(id, 10_000n)).toMatchObject({ ok: true, refund: { status: "succeeded" } });
    expect(await applyReversed(deps(), reorg(id, "r1", 10_000n))).toEqual({
      status: "applied",
      shortfall: 0n,
    });
    expect(await statusOf(id)).toBe("reversed");
    // It holds nothing: r0's 10,000 went back to the payer. Before: refused, "it holds 10000 of its 10000 already",
    // though the reversal had just found it holding less than its amount.
    expect(await authorize(id)).toMatchObject({ ok: true, railReference: `toy_tx_${id}` });
    expect(await receive(id, "auth", 10_000n)).toBe("applied");
    expect(await statusOf(id)).toBe("paid");
  });

  it("stays reversed when a reorg given back leaves what it holds, less its refunds, below its amount", async () => {
    const id = await paidInvoice([10_000n, 10_000n], null, await seller("acct_refunded_reinstated"));
    expect(await refunding(id, 10_000n)).toMatchObject({ ok: true, refund: { status: "succeeded" } });
    expect(await applyReversed(deps(), reorg(id, "r1", 10_000n))).toEqual({
      status: "applied",
      shortfall: 0n,
    });
    expect(await applyReversed(deps(), reorg(id, "r0", 10_000n))).toEqual({
      status: "applied",
      shortfall: 10_000n,
    });
    // r0 mined again: the invoice holds r0's 10,000 less the 10,000 refunded, r1 still gone. Before: paid.
    expect(
      await applyReinstated(deps(), { rail: "toy", reference: id, key: "reorg:r0", evidence }),
    ).toMatchObject({ status: "applied" });
    expect(await statusOf(id)).toBe("reversed");
    expect(await statusesTold(id, "invoice.reinstated")).toEqual(["reversed"]);
    // r1 mined again too: it holds its amount.
    expect(
      await applyReinstated(deps(), { rail: "toy", reference: id, key: "reorg:r1", evidence }),
    ).toMatchObject({ status: "applied" });
    expect(await statusOf(id)).toBe("paid");
    expect(await statusesTold(id, "invoice.reinstated")).toEqual(["reversed", "paid"]);
    expect(await ledgerInvariantProblems(db)).toEqual([]);
  });

  it("is paid again by a receipt of its amount when a reorg takes the receipt of a paid invoice a refund discounted", async () => {
    const id = await paidInvoice([10_000n], null, await seller("acct_discounted"));
    // Paid, then 3,000 of its price given back: a discount, the invoice still paid, the payer's net 7,000.
    expect(await refunding(id, 3_000n)).toMatchObject({ ok: true, refund: { status: "succeeded" } });
    expect(await statusOf(id)).toBe("paid");
    expect(await applyReversed(deps(), reorg(id, "r0", 10_000n))).toEqual({
      status: "applied",
      shortfall: 3_000n,
    });
    expect(await statusOf(id)).toBe("reversed");
    // The payer pays the amount again: it holds 10,000, the refund took nothing over its amount. Before: received,
    // the discount counted as money the payer never paid (7,000 of 10,000).
    expect(await receive(id, "r1", 10_000n)).toBe("applied");
    expect(await statusOf(id)).toBe("paid");
    expect(await ledgerInvariantProblems(db)).toEqual([]);
  });

  it("stays paid when a reorg takes a stray deposit after a refund discounted it", async () => {
    const id = await paidInvoice([10_000n], null, await seller("acct_discounted_dust"));
    expect(await refunding(id, 3_000n)).toMatchObject({ ok: true, refund: { status: "succeeded" } });
    expect(await receive(id, "r1", 500n)).toBe("received");
    expect(await applyReversed(deps(), reorg(id, "r1", 500n))).toEqual({ status: "applied", shortfall: 0n });
    // r0's 10,000 still pays it. Before: reversed, the discount taken as 3,000 of the amount it no longer held.
    expect(await statusOf(id)).toBe("paid");
    expect(await statusesTold(id, "invoice.reversed")).toEqual(["paid"]);
  });

  it("stays open when a refund gave back what a part-payment brought, the payer then paying the rest", async () => {
    const id = await paidInvoice([6_000n], null, await seller("acct_part_refunded"));
    expect(await refunding(id, 6_000n)).toMatchObject({ ok: true, refund: { status: "succeeded" } });
    // Refunded before it was paid: no discount, the payer got the 6,000 back, so 4,000 pays 4,000 of it.
    expect(await receive(id, "r1", 4_000n)).toBe("received");
    expect(await statusOf(id)).toBe("open");
    expect(await receive(id, "r2", 6_000n)).toBe("applied");
    expect(await statusOf(id)).toBe("paid");
  });

  /** The refunds' dependencies with a rail that takes a refund and answers later: it stays pending. */
  const answeringLater = () => ({
    db,
    ledger,
    accounts: createAccountCache({ sql: db }, { entriesMax: 10 }),
    rails: new Map([
      [
        "toy",
        {
          ...toyReceiver,
          refundReceived: async () => ({
            status: "in_flight" as const,
            evidence: { rail: "external" as const, railId: "toy", reference: "toy_re_in_flight" },
          }),
        },
      ],
    ]),
  });
  /** A refund of the invoice the rail has not answered yet: its id. */
  const pendingRefund = async (id: string, amount: bigint) => {
    const made = await createRefund(answeringLater(), {
      tenantId,
      target: { kind: "invoice", invoiceId: id },
      amount: formatAmount(amount, assets.BTC),
      reason: null,
      metadata: {},
      destination: null,
      idempotencyKey: null,
    });
    if (!made.ok) throw new Error(made.message);
    expect(made.refund.status).toBe("pending");
    return made.refund.id;
  };
  /** The rail's answer that pending refund `refundId` failed: the invoices its give-back told paid. */
  const refundFails = async (refundId: string) => {
    const heard: string[] = [];
    const refunds = { ...answeringLater(), onInvoicePaid: (invoiceId: string) => void heard.push(invoiceId) };
    expect(
      await applyRefundEvent(refunds, "toy", {
        kind: "attempt_failed",
        attemptId: refundId,
        code: "rail_unavailable",
        message: "refused",
        retryElsewhere: false,
      }),
    ).toBe(true);
    return heard;
  };
  const discountOf = async (refundId: string) =>
    (await db.query<{ discounted: bigint }>("SELECT discounted FROM refunds WHERE id = $1", [refundId]))[0]
      ?.discounted;

  it("is paid again when a refund of its excess, pending when a reorg reversed it, fails", async () => {
    const id = await paidInvoice([10_000n, 5_000n], null, await seller("acct_refund_failed"));
    // The rail takes the refund and answers later: it stays pending, counted against what the invoice holds.
    const refundId = await pendingRefund(id, 5_000n);
    expect(await discountOf(refundId)).toBe(0n);
    // 15,000 less r1's 5,000 less the 5,000 pending: below its 10,000.
    expect(await applyReversed(deps(), reorg(id, "r1", 5_000n))).toEqual({
      status: "applied",
      shortfall: 0n,
    });
    expect(await statusOf(id)).toBe("reversed");
    expect(await refundFails(refundId)).toEqual([id]);
    // The 5,000 is back: it holds its amount. Before: reversed, nothing deciding it again.
    expect(await statusOf(id)).toBe("paid");
    expect((await eventsOf(id)).slice(-2)).toEqual(["invoice.reversed", "invoice.paid"]);
    expect(await ledgerInvariantProblems(db)).toEqual([]);
  });

  it("is paid when a refund of its part-payment fails once the payer paid the rest", async () => {
    const id = await paidInvoice([6_000n], null, await seller("acct_part_refund_failed"));
    const refundId = await pendingRefund(id, 6_000n);
    // It holds 6,000 less the 6,000 pending and the 4,000: below its 10,000, so it stays open.
    expect(await receive(id, "r1", 4_000n)).toBe("received");
    expect(await statusOf(id)).toBe("open");
    expect(await refundFails(refundId)).toEqual([id]);
    // The 6,000 is back: it holds 10,000. Before: open, and it still took an authorization of all its amount.
    expect(await statusOf(id)).toBe("paid");
    const [row] = await db.query<{ paid_at: Date | null }>("SELECT paid_at FROM invoices WHERE id = $1", [
      id,
    ]);
    expect(row?.paid_at).toBeInstanceOf(Date);
    expect((await eventsOf(id)).slice(-1)).toEqual(["invoice.paid"]);
    expect(await submitInvoicePayment(deps(), { tenantId, id, fields: {} })).toMatchObject({
      ok: false,
      refusal: "invoice_not_payable",
    });
    expect(await ledgerInvariantProblems(db)).toEqual([]);
  });

  it("counts whole a refund claimed as the code before migration 0069 claims it, while both run", async () => {
    const id = await paidInvoice([6_000n], null, await seller("acct_old_claim"));
    // The refund of the 6,000 as that code writes it, with no discount: its row and what is refunded on the
    // invoice's `refundable` row.
    const refundId = `rfd_old_claim_${id}`;
    await db.query(
      `INSERT INTO refunds (id, tenant_id, invoice_id, account_id, asset, amount, rail, status, hold_transfer_id)
       VALUES ($1, $2, $3, 'acct_old_claim', 'BTC', 6000, 'toy', 'succeeded', $4)`,
      [refundId, tenantId, id, derivedLedgerId(refundId, "refund-hold").toString()],
    );
    await db.query(
      `INSERT INTO refundable AS r (target_id, paid, refunded) VALUES ($1, 6000, 6000)
       ON CONFLICT (target_id) DO UPDATE SET refunded = r.refunded + 6000`,
      [id],
    );
    // It holds 6,000 less the 6,000 the payer got back and 4,000: below its 10,000. Were a default 0 read as a
    // refund taking nothing: paid, the payer out of pocket 4,000 for 10,000.
    expect(await receive(id, "r1", 4_000n)).toBe("received");
    expect(await statusOf(id)).toBe("open");
  });

  it("is not paid short by a discount whose failure the code before migration 0069 wrote, while both run", async () => {
    const id = await paidInvoice([6_000n], null, await seller("acct_old_failure"));
    // 6,000 given back before it was paid, counted whole; then 10,000 pays it.
    expect(await refunding(id, 6_000n)).toMatchObject({ ok: true, refund: { status: "succeeded" } });
    expect(await receive(id, "r1", 10_000n)).toBe("applied");
    // 4,000 of its price given back, pending: no excess, all of it a discount.
    const refundId = await pendingRefund(id, 4_000n);
    expect(await discountOf(refundId)).toBe(4_000n);
    // It fails, written as that code writes a failure: what is refunded lowered, the discount on the invoice's
    // `refundable` row left as it was.
    expect(await refundFails(refundId)).toEqual([]);
    await db.query("UPDATE refundable SET discounted = discounted + 4000 WHERE target_id = $1", [id]);
    expect(await applyReversed(deps(), reorg(id, "r1", 10_000n))).toMatchObject({ status: "applied" });
    expect(await statusOf(id)).toBe("reversed");
    // It holds 6,000 less the 6,000 refunded, and 6,000 more: below its 10,000 (the failed refund discounts nothing).
    // Read from the row alone, the 6,000 refunded less the 4,000 left discounted counted 2,000: paid short.
    expect(await receive(id, "r2", 6_000n)).toBe("received");
    expect(await statusOf(id)).toBe("reversed");
    expect(await receive(id, "r3", 4_000n)).toBe("applied");
    expect(await statusOf(id)).toBe("paid");
    expect(await ledgerInvariantProblems(db)).toEqual([]);
  });

  it("stays open while what it holds is below its amount, whatever it received", async () => {
    const id = await paidInvoice([6_000n]);
    expect(await applyReversed(deps(), reorg(id, "r0", 6_000n))).toEqual({
      status: "applied",
      shortfall: 0n,
    });
    expect(await statusOf(id)).toBe("open");
    // Before: paid by 4,000, the 6,000 reorganised away counted as received.
    expect(await receive(id, "r1", 4_000n)).toBe("received");
    expect(await statusOf(id)).toBe("open");
    expect(await receive(id, "r2", 6_000n)).toBe("applied");
    expect(await statusOf(id)).toBe("paid");
  });

  it("is paid, with invoice.paid, when a part-payment a reorg took is mined again after the payer paid the rest", async () => {
    const id = await paidInvoice([6_000n], null, await seller("acct_open_reinstated"));
    expect(await applyReversed(deps(), reorg(id, "r0", 6_000n))).toEqual({
      status: "applied",
      shortfall: 0n,
    });
    expect(await receive(id, "r1", 4_000n)).toBe("received");
    expect(await statusOf(id)).toBe("open");
    // r0 mined again: it holds 10,000 of its 10,000. Before: open, and it took an authorization of all its amount.
    expect(
      await applyReinstated(deps(), { rail: "toy", reference: id, key: "reorg:r0", evidence }),
    ).toMatchObject({ status: "applied", amount: 6_000n });
    expect(await statusOf(id)).toBe("paid");
    expect(await statusesTold(id, "invoice.reinstated")).toEqual(["paid"]);
    expect((await eventsOf(id)).slice(-2)).toEqual(["invoice.reinstated", "invoice.paid"]);
    const [row] = await db.query<{ paid_at: Date | null }>("SELECT paid_at FROM invoices WHERE id = $1", [
      id,
    ]);
    expect(row?.paid_at).toBeInstanceOf(Date);
    expect(await authorize(id)).toMatchObject({ ok: false, refusal: "invoice_not_payable" });
    expect(await posted("acct_open_reinstated")).toBe(10_000n);
    expect(await ledgerInvariantProblems(db)).toEqual([]);
  });

  it("stays open when a part-payment a reorg took is mined again and what it holds is still below its amount", async () => {
    const id = await paidInvoice([6_000n], null, await seller("acct_open_reinstated_short"));
    expect(await applyReversed(deps(), reorg(id, "r0", 6_000n))).toEqual({
      status: "applied",
      shortfall: 0n,
    });
    expect(await receive(id, "r1", 3_000n)).toBe("received");
    expect(
      await applyReinstated(deps(), { rail: "toy", reference: id, key: "reorg:r0", evidence }),
    ).toMatchObject({ status: "applied", amount: 6_000n });
    expect(await statusOf(id)).toBe("open");
    expect(await statusesTold(id, "invoice.reinstated")).toEqual(["open"]);
    expect(await eventsOf(id)).not.toContain("invoice.paid");
  });

  it("stays reversed when a reorg given back leaves it holding less than its amount, what it held refunded meanwhile", async () => {
    const id = await paidInvoice([6_000n, 4_000n], null, await seller("acct_reversed_refunded"));
    expect(await applyReversed(deps(), reorg(id, "r0", 6_000n))).toEqual({
      status: "applied",
      shortfall: 0n,
    });
    expect(await statusOf(id)).toBe("reversed");
    // The 4,000 it holds refunded while it is not paid: no discount, the payer got all of it back.
    expect(await refunding(id, 4_000n)).toMatchObject({ ok: true, refund: { status: "succeeded" } });
    // r0 mined again: it holds 6,000 of its 10,000. Before: paid, no reversal standing, whatever it held (the same
    // money in another order, the refund before the reorg, leaves it open).
    const reinstated = await applyReinstated(deps(), {
      rail: "toy",
      reference: id,
      key: "reorg:r0",
      evidence,
    });
    expect(await statusOf(id)).toBe("reversed");
    expect(reinstated).toEqual({ status: "applied", amount: 6_000n, paidNow: false });
    expect(await statusesTold(id, "invoice.reinstated")).toEqual(["reversed"]);
    expect((await eventsOf(id)).slice(-1)).toEqual(["invoice.reinstated"]);
    // Due again: the payer pays the 4,000 it was given back.
    expect(await authorize(id)).toMatchObject({ ok: true, railReference: `toy_tx_${id}` });
    expect(await receive(id, "r2", 4_000n)).toBe("applied");
    expect(await statusOf(id)).toBe("paid");
    expect(await posted("acct_reversed_refunded")).toBe(10_000n);
    expect(await ledgerInvariantProblems(db)).toEqual([]);
  });

  it("is paid again, with invoice.paid after invoice.reinstated, when the reorg that reversed it is given back", async () => {
    const id = await paidInvoice([6_000n, 4_000n], null, await seller("acct_reversed_reinstated"));
    expect(await applyReversed(deps(), reorg(id, "r0", 6_000n))).toEqual({
      status: "applied",
      shortfall: 0n,
    });
    expect(await statusOf(id)).toBe("reversed");
    const reinstated = await applyReinstated(deps(), {
      rail: "toy",
      reference: id,
      key: "reorg:r0",
      evidence,
    });
    expect(await statusOf(id)).toBe("paid");
    // Told as a refund's failure that pays it tells it: before, only an open invoice paid here was.
    expect((await eventsOf(id)).slice(-2)).toEqual(["invoice.reinstated", "invoice.paid"]);
    expect(reinstated).toEqual({ status: "applied", amount: 6_000n, paidNow: true });
    expect(await eventsOf(id)).toEqual([
      "invoice.payment_received",
      "invoice.payment_received",
      "invoice.paid",
      "invoice.reversed",
      "invoice.reinstated",
      "invoice.paid",
    ]);
  });

  it("stays reversed while a dispute stands though it holds its amount, and is paid once the dispute is given back", async () => {
    const id = await paidInvoice([6_000n, 4_000n], null, await seller("acct_disputed_reinstated"));
    const dispute = { rail: "toy", reference: id, key: "dispute:held", amount: 1_000n, evidence };
    expect(await applyReversed(deps(), dispute)).toEqual({ status: "applied", shortfall: 0n });
    expect(await applyReversed(deps(), reorg(id, "r0", 6_000n))).toEqual({
      status: "applied",
      shortfall: 0n,
    });
    // r0 mined again: it holds 10,000, but the dispute stands.
    const mined = await applyReinstated(deps(), { rail: "toy", reference: id, key: "reorg:r0", evidence });
    expect(await statusOf(id)).toBe("reversed");
    expect(mined).toEqual({ status: "applied", amount: 6_000n, paidNow: false });
    const won = await applyReinstated(deps(), { rail: "toy", reference: id, key: "dispute:held", evidence });
    expect(await statusOf(id)).toBe("paid");
    expect(await statusesTold(id, "invoice.reinstated")).toEqual(["reversed", "paid"]);
    expect((await eventsOf(id)).slice(-2)).toEqual(["invoice.reinstated", "invoice.paid"]);
    expect(won).toEqual({ status: "applied", amount: 1_000n, paidNow: true });
    expect(await posted("acct_disputed_reinstated")).toBe(10_000n);
    expect(await ledgerInvariantProblems(db)).toEqual([]);
  });

  it("is paid again when a dispute of what a refund left is won: the refund of a paid invoice a discount", async () => {
    const id = await paidInvoice([10_000n], null, await seller("acct_refunded_disputed"));
    expect(await refunding(id, 3_000n)).toMatchObject({ ok: true, refund: { status: "succeeded" } });
    const dispute = { rail: "toy", reference: id, key: "dispute:rest", amount: 7_000n, evidence };
    expect(await applyReversed(deps(), dispute)).toEqual({ status: "applied", shortfall: 0n });
    expect(await statusOf(id)).toBe("reversed");
    // It holds its 10,000 again: the 3,000 was given back of its price, a discount.
    const won = await applyReinstated(deps(), { rail: "toy", reference: id, key: "dispute:rest", evidence });
    expect(await statusOf(id)).toBe("paid");
    expect(won).toEqual({ status: "applied", amount: 7_000n, paidNow: true });
    expect((await eventsOf(id)).slice(-2)).toEqual(["invoice.reinstated", "invoice.paid"]);
    expect(await posted("acct_refunded_disputed")).toBe(7_000n);
  });

  it("is paid again when a dispute of what a refund claimed before migration 0069 left is won, the refund counted whole", async () => {
    const id = await paidInvoice([10_000n], null, await seller("acct_old_refund_disputed"));
    expect(await refunding(id, 3_000n)).toMatchObject({ ok: true, refund: { status: "succeeded" } });
    // Claimed as the code before migration 0069 claims it: no discount on the refund nor on the `refundable` row.
    await db.query("UPDATE refunds SET discounted = 0 WHERE invoice_id = $1", [id]);
    await db.query("UPDATE refundable SET discounted = 0 WHERE target_id = $1", [id]);
    const dispute = { rail: "toy", reference: id, key: "dispute:old", amount: 7_000n, evidence };
    expect(await applyReversed(deps(), dispute)).toEqual({ status: "applied", shortfall: 0n });
    expect(await statusOf(id)).toBe("reversed");
    // It holds 7,000 by the count (the 3,000 whole), but it was paid and no reorg took a receipt of it: the 3,000 was
    // the merchant's, given back of it paid. Before: reversed, no invoice.paid, its payer asked for 3,000 more.
    const won = await applyReinstated(deps(), { rail: "toy", reference: id, key: "dispute:old", evidence });
    expect(await statusOf(id)).toBe("paid");
    expect(won).toEqual({ status: "applied", amount: 7_000n, paidNow: true });
    expect((await eventsOf(id)).slice(-2)).toEqual(["invoice.reinstated", "invoice.paid"]);
    expect(await statusesTold(id, "invoice.reinstated")).toEqual(["paid"]);
    expect(await authorize(id)).toMatchObject({ ok: false, refusal: "invoice_not_payable" });
    expect(await posted("acct_old_refund_disputed")).toBe(7_000n);
    expect(await ledgerInvariantProblems(db)).toEqual([]);
  });

  it("is paid again when a refund made at the provider fails: a refund through the API while it stood a discount", async () => {
    const id = await paidInvoice([10_000n], null, await seller("acct_dashboard_failed"));
    const dashboard = { rail: "toy", reference: id, key: "refund:dashboard", amount: 3_000n, evidence };
    expect(await applyReversed(deps(), dashboard)).toEqual({ status: "applied", shortfall: 0n });
    expect(await statusOf(id)).toBe("reversed");
    // It still holds its 10,000 (the dashboard's refund takes no receipt): the 2,000 is given back of its price, a
    // discount, as it is with no refund at the provider standing. Before: counted whole, the invoice not paid.
    expect(await refunding(id, 2_000n)).toMatchObject({ ok: true, refund: { status: "succeeded" } });
    const [claimed] = await db.query<{ discounted: bigint }>(
      "SELECT discounted FROM refunds WHERE invoice_id = $1",
      [id],
    );
    expect(claimed?.discounted).toBe(2_000n);
    // The dashboard's refund failed. Before: reversed holding 8,000 of its 10,000, its payer asked for 2,000 more.
    const failed = await applyReinstated(deps(), {
      rail: "toy",
      reference: id,
      key: "refund:dashboard",
      evidence,
    });
    expect(await statusOf(id)).toBe("paid");
    expect(failed).toEqual({ status: "applied", amount: 3_000n, paidNow: true });
    expect((await eventsOf(id)).slice(-2)).toEqual(["invoice.reinstated", "invoice.paid"]);
    expect(await authorize(id)).toMatchObject({ ok: false, refusal: "invoice_not_payable" });
    expect(await posted("acct_dashboard_failed")).toBe(8_000n);
    expect(await ledgerInvariantProblems(db)).toEqual([]);
  });

  it("stays reversed, nothing refundable, while a dispute stands beside it", async () => {
    const id = await paidInvoice([10_000n]);
    const dispute = { rail: "toy", reference: id, key: "dispute:1", amount: 1_000n, evidence };
    expect(await applyReversed(deps(), dispute)).toEqual({ status: "applied", shortfall: 0n });
    expect(await receive(id, "r1", 2_000n)).toBe("received");
    expect(await statusOf(id)).toBe("reversed");
    expect(await refunding(id, 1_000n)).toMatchObject({ ok: false, refusal: "invoice_not_paid" });
  });
});

describe("a receipt of a split invoice that a crash cuts short", () => {
  it("is credited with its record or not at all, so a reorg's reversal of it leaves no payee its share", async () => {
    // The database and the ledger over it crash once, at the receipt's record (invoice_receipts), as a process that
    // stops there would. Before, the credit and its shares were one ledger request and the record a transaction after
    // it: the crash left the credit without the record, and the reorg's reversal, finding the credit but not the
    // receipt (what the invoice received, and the shares it credited, are read from the records), took all of it
    // from the seller and none from the payees.
    const crashing = crashingOnce(db, "INSERT INTO invoice_receipts");
    const crashingLedger = createLedger({ ...gatewayLedgerParams, db: crashing });
    try {
      const settlement = { ...deps(crashing), ledger: crashingLedger };
      const created = await createInvoice(settlement, { ...params, split: thirds });
      if (!created.ok) throw new Error(created.message);
      const id = created.invoice.id;
      const before = await everyone();
      const receipt = { rail: "toy", reference: id, key: "0xfeed:0#0", amount: 10_001n, evidence };
      await expect(applyReceived(settlement, receipt)).rejects.toThrow();
      // The deposit reorganised away, as the deposit watcher reports it: its reversal names the receipt it takes.
      const reorg = {
        rail: "toy",
        reference: id,
        key: `reorg:${receipt.key}`,
        amount: receipt.amount,
        evidence,
        takes: { receipt: receipt.key },
      };
      const reversed = await applyReversed(settlement, reorg);
      expect(delta(await everyone(), before)).toEqual(untouched);
      expect(reversed).toEqual({ status: "not_received", shortfall: 0n });
      // Credited once it comes whole (its `final` called again), the receipt's reversal takes every share back.
      expect(await applyReceived(settlement, receipt)).toBe("applied");
      expect(delta(await everyone(), before)).toEqual({
        seller: 1n,
        a: 3_333n,
        b: 3_333n,
        c: 3_334n,
        clearing: 10_001n,
      });
      expect(await applyReversed(settlement, reorg)).toEqual({ status: "applied", shortfall: 0n });
      expect(delta(await everyone(), before)).toEqual(untouched);
      expect(await ledgerInvariantProblems(db)).toEqual([]);
    } finally {
      await crashingLedger.close();
    }
  });

  it("is counted once when an earlier version credited it apart from its record, however often it comes again", async () => {
    const settlement = deps();
    const created = await createInvoice(settlement, { ...params, split: thirds });
    if (!created.ok) throw new Error(created.message);
    const id = created.invoice.id;
    const before = await everyone();
    const receipt = { rail: "toy", reference: id, key: "0xbeef:0#0", amount: 10_001n, evidence };
    // The credit and its shares as an earlier version wrote them, one linked chain, its record lost with the
    // transaction after it.
    const receiptId = receiptLedgerId(id, receipt.key);
    const legs = [
      {
        id: receiptId,
        from: "acct_clearing_toy",
        to: "acct_seller",
        amount: 10_001n,
        code: transferCodes.invoices.received,
      },
      ...(
        [
          ["acct_payee_a", 3_333n],
          ["acct_payee_b", 3_333n],
          ["acct_payee_c", 3_334n],
        ] as const
      ).map(([payee, amount]) => ({
        id: receiptShareLedgerId(receiptId, payee),
        from: "acct_seller",
        to: payee,
        amount,
        code: transferCodes.invoices.share,
      })),
    ];
    const written = await ledger.createTransfers(
      legs.map((leg, i) => ({
        id: leg.id,
        debitAccountId: ledgerIds.get(leg.from)!,
        creditAccountId: ledgerIds.get(leg.to)!,
        amount: leg.amount,
        ledger: assets.BTC.ledger,
        code: leg.code,
        flags: i < legs.length - 1 ? TransferFlags.linked : 0,
        userData128: derivedLedgerId(id, "invoice"),
        evidence: evidenceForLedger(evidence),
      })),
    );
    expect(written.map((result) => result.status)).toEqual(legs.map(() => "created"));
    const credited = { seller: 1n, a: 3_333n, b: 3_333n, c: 3_334n, clearing: 10_001n };
    expect(delta(await everyone(), before)).toEqual(credited);
    // Come again, it is recorded once (its row, what the invoice received, its event), and credited nothing twice.
    expect(await applyReceived(settlement, receipt)).toBe("applied");
    expect(await applyReceived(settlement, receipt)).toBe("duplicate");
    expect(delta(await everyone(), before)).toEqual(credited);
    expect(await db.query("SELECT key, amount FROM invoice_receipts WHERE invoice_id = $1", [id])).toEqual([
      { key: receipt.key, amount: 10_001n },
    ]);
    expect(await db.query("SELECT status, received_amount FROM invoices WHERE id = $1", [id])).toEqual([
      { status: "paid", received_amount: 10_001n },
    ]);
    const events = await db.query<{ type: string }>(
      "SELECT type FROM outbox WHERE payload->>'invoice_id' = $1 ORDER BY id",
      [id],
    );
    expect(events.map((event) => event.type)).toEqual(["invoice.payment_received", "invoice.paid"]);
    expect(await ledgerInvariantProblems(db)).toEqual([]);
  });
});

/** `database`, running `then` once after the first statement whose text holds `fragment`, before its rows return. */
function afterOnce(database: Db, fragment: string, then: () => Promise<void>): Db {
  let done = false;
  return {
    ...database,
    async query<R extends Row = Row>(text: string, values?: readonly unknown[]): Promise<R[]> {
      const rows = await database.query<R>(text, values);
      if (!done && text.includes(fragment)) {
        done = true;
        await then();
      }
      return rows;
    },
  };
}

/** An account pays `amount` out of the gateway (to an account no test reads). */
async function payOut(accountId: string, amount: bigint): Promise<void> {
  const [result] = await ledger.createTransfers([
    {
      id: derivedLedgerId(`${accountId}:${amount}`, "test-payout"),
      debitAccountId: ledgerIds.get(accountId)!,
      creditAccountId: ledgerIds.get("acct_elsewhere")!,
      amount,
      ledger: assets.BTC.ledger,
      code: transferCodes.payments.funding,
      flags: 0,
    },
  ]);
  expect(result?.status).toBe("created");
}
