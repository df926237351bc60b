// A netted payout's accrual racing a failure of its payment for funds, on PostgreSQL (two connections: PGlite has
// one, and the race cannot happen there). The failure takes the payment's row lock and finds no queued payout; the
// accrual's statement, written by the ledger's group commit on another connection, locks the same row (FOR UPDATE in
// its CTE), so it waits for the failure to commit and then finds the payment no longer processing: its debit rolls
// back with it. Without the lock, the accrual queued the payout (and debited the payer) of a payment answered failed,
// and the next batch paid it.
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { gatewayMigrations } from "../../gateway/app.ts";
import { type Db, migrate, openPostgres } from "../../gateway/db/index.ts";
import { createLedger, type Ledger, ledgerMigrations } from "../../gateway/ledger/index.ts";
import { gatewayLedgerParams } from "../../gateway/ledger-params.ts";
import {
  accruedUnderLock,
  accruePayout,
  isPaymentNotProcessing,
} from "../../gateway/payments/batch-payouts.ts";
import { finishPayment } from "../../gateway/payments/store.ts";
import { type NettingFixture, nettingFixture } from "../support/netting.ts";
import { createTestDatabase } from "../support/postgres.ts";

let db: Db;
let ledger: Ledger;
let netting: NettingFixture;

beforeAll(async () => {
  const url = await createTestDatabase(inject("postgresUrl"), "accrual_lock");
  db = openPostgres({ url, poolSizeMax: 4, statementTimeoutMs: 30_000 });
  await migrate(db, [ledgerMigrations, gatewayMigrations]);
  ledger = createLedger({ ...gatewayLedgerParams, db });
  netting = await nettingFixture(db, ledger, "accrual_lock", 100n);
}, 120_000);

afterAll(async () => {
  await ledger?.close();
  await db?.close();
});

describe("an accrual racing a failure for funds, on PostgreSQL", () => {
  it("waits for the failure holding the payment's row, then writes nothing", async () => {
    const id = "pay_accrual_lock";
    await netting.insertPayment(id);
    const payout = netting.payout(id, 40n, "0x00000000000000000000000000000000000000cc");
    let accrual: Promise<unknown> = Promise.resolve();
    await db.transaction(async (tx) => {
      // The failure has looked: nothing queued.
      expect(await accruedUnderLock(tx, id)).toBe(false);
      // Another process's accrual now: it must wait for this transaction.
      accrual = accruePayout(netting.deps(), payout).then(
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
    expect(await netting.customerPosted()).toBe(100n);
  });
});
