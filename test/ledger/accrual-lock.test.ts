// A netted payout's accrual racing a failure of its payment for funds, on PostgreSQL (two connections: PGlite has
// one, and the race cannot happen there). The failure takes the payment's row lock and finds no queued payout; the
// accrual's statement, written by the ledger's group commit on another connection, locks the same row (FOR UPDATE in
// its CTE), so it waits for the failure to commit and then finds the payment no longer processing: its debit rolls
// back with it. Without the lock, the accrual queued the payout (and debited the payer) of a payment answered failed,
// and the next batch paid it.
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { assets } from "../../core/index.ts";
import { balanceOf, createAccount } from "../../gateway/accounts/index.ts";
import { gatewayMigrations } from "../../gateway/app.ts";
import { type Db, migrate, openPostgres } from "../../gateway/db/index.ts";
import { createLedger, type Ledger, ledgerMigrations, transferCodes } from "../../gateway/ledger/index.ts";
import {
  accruedUnderLock,
  accruePayout,
  isPaymentNotProcessing,
  type NettingDeps,
} from "../../gateway/payments/batch-payouts.ts";
import { finishPayment } from "../../gateway/payments/store.ts";
import { createTenant } from "../../gateway/tenants/index.ts";
import { createTestDatabase } from "../support/postgres.ts";

const tenantId = "ten_accrual_lock";
let db: Db;
let ledger: Ledger;
let customerLedgerId: bigint;

const deps = (): NettingDeps => ({
  db,
  ledger,
  payer: {
    id: "evm",
    asset: assets.USDC,
    payoutBatch: async () => ({ status: "failed", code: "rail_unavailable", message: "not in this test" }),
  },
  config: { maxFeeShareBps: 1_000, threshold: { total: 1_000n }, intervalMs: 60_000 },
  nowMs: Date.now,
});

beforeAll(async () => {
  const url = await createTestDatabase(inject("postgresUrl"), "accrual_lock");
  db = openPostgres({ url, poolSizeMax: 4, statementTimeoutMs: 30_000 });
  await migrate(db, [ledgerMigrations, gatewayMigrations]);
  ledger = createLedger({ db });
  await createTenant(db, { id: tenantId, name: "Accrual lock" });
  const customer = await createAccount(
    { sql: db, ledger },
    { tenantId, kind: "customer", asset: assets.USDC, name: "c", id: "acct_lock_customer" },
  );
  const clearing = await createAccount(
    { sql: db, ledger },
    {
      tenantId: null,
      kind: "clearing",
      asset: assets.USDC,
      name: "evm",
      rail: "evm",
      id: "acct_lock_clearing",
    },
  );
  customerLedgerId = customer.ledgerAccountId;
  await ledger.createTransfers([
    {
      id: 1n,
      debitAccountId: clearing.ledgerAccountId,
      creditAccountId: customer.ledgerAccountId,
      amount: 100n,
      ledger: assets.USDC.ledger,
      code: transferCodes.payments.funding,
    },
  ]);
}, 120_000);

afterAll(async () => {
  await ledger?.close();
  await db?.close();
});

describe("an accrual racing a failure for funds, on PostgreSQL", () => {
  it("waits for the failure holding the payment's row, then writes nothing", async () => {
    const id = "pay_accrual_lock";
    await db.query(
      `INSERT INTO payments (id, tenant_id, status, asset, amount, source_account_id, destination, policy)
       VALUES ($1, $2, 'processing', 'USDC', 40, 'acct_lock_customer', '{}', '{}')`,
      [id, tenantId],
    );
    const payout = {
      id,
      tenantId,
      sourceAccountId: "acct_lock_customer",
      payee: "0x00000000000000000000000000000000000000cc" as const,
      amount: 40n,
    };
    let accrual: Promise<unknown> = Promise.resolve();
    await db.transaction(async (tx) => {
      // The failure has looked: nothing queued.
      expect(await accruedUnderLock(tx, id)).toBe(false);
      // Another process's accrual now: it must wait for this transaction.
      accrual = accruePayout(deps(), payout).then(
        (outcome) => outcome,
        (error: unknown) => error,
      );
      await new Promise((resolve) => setTimeout(resolve, 300));
      await finishPayment(tx, {
        id,
        status: "failed",
        rail: null,
        failureCode: "insufficient_funds",
        failureMessage: "short",
      });
    });
    // Before the lock: "accrued", the payout queued and the payer debited for a failed payment.
    expect(isPaymentNotProcessing(await accrual)).toBe(true);
    expect(await db.query("SELECT 1 FROM netted_payouts WHERE payment_id = $1", [id])).toEqual([]);
    const [customer] = await ledger.lookupAccounts([customerLedgerId]);
    expect(balanceOf("customer", customer!).posted).toBe(100n);
  });
});
