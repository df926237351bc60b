// A reversal of a split invoice's money (applyReversed), on PGlite: each payee gives back its part of the shares the
// invoice's receipts actually credited it — never more, however many reversals come — and the legs, the seller's
// and the payees', are one linked ledger chain. (The split itself and a reversal's shares: invoice-split.test.ts.)
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { assets } from "../../core/index.ts";
import { ledgerInvariantProblems } from "../../test/support/ledger-invariants.ts";
import { balanceOf, createAccount, createAccountCache } from "../accounts/index.ts";
import { gatewayMigrations } from "../app.ts";
import { type Db, migrate, openPglite } from "../db/index.ts";
import { createLedger, type Ledger, ledgerMigrations, TransferFlags } from "../ledger/index.ts";
import { createTenant } from "../tenants/index.ts";
import {
  applyReceived,
  applyReversed,
  createInvoice,
  createOpenInvoiceMemory,
  type ReceivingRail,
  type SettlementDeps,
} from "./index.ts";
import { reversalShareLedgerId } from "./split-reversal.ts";

let db: Db;
let ledger: Ledger;
const tenantId = "ten_split_reversal";
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
  ledger = createLedger({ db });
  await createTenant(db, { id: tenantId, name: "Split reversal" });
  for (const id of ["acct_seller", "acct_payee_a", "acct_payee_b"]) {
    const account = await createAccount(
      { sql: db, ledger },
      { tenantId, kind: "customer", asset: assets.BTC, name: id, id },
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

async function paidInvoice(receipts: readonly bigint[]): Promise<string> {
  const settlement = deps();
  const created = await createInvoice(settlement, params);
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
});
