// Two gateway processes on one PostgreSQL database (two pools, two ledgers) giving back the same refused netted
// payout at once: a flush that stopped after the rail refused the payee, before the money went back, leaves it to
// whichever flush comes next, and here two come together. The payer is credited once, the payment fails once, one
// payment.failed is queued, and neither flush reports an error.
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { assets } from "../../core/index.ts";
import { gatewayMigrations } from "../../gateway/app.ts";
import { type Db, migrate, openPostgres } from "../../gateway/db/index.ts";
import { createLedger, type Ledger, ledgerMigrations, transferCodes } from "../../gateway/ledger/index.ts";
import { gatewayLedgerParams } from "../../gateway/ledger-params.ts";
import {
  accruePayout,
  flushNetting,
  type NettingDeps,
  NettingResumeError,
} from "../../gateway/payments/batch-payouts.ts";
import { latch } from "../support/latch.ts";
import { ledgerStoppingAtReturn, type NettingFixture, nettingFixture } from "../support/netting.ts";
import { createTestDatabase } from "../support/postgres.ts";

const refusedPayee = "0x00000000000000000000000000000000000000dd" as const;
const processesCount = 2;

let dbs: Db[] = [];
let ledgers: Ledger[] = [];
let netting: NettingFixture;

beforeAll(async () => {
  const url = await createTestDatabase(inject("postgresUrl"), "netting_refusals");
  dbs = Array.from({ length: processesCount }, () =>
    openPostgres({ url, poolSizeMax: 4, statementTimeoutMs: 30_000 }),
  );
  await migrate(dbs[0]!, [ledgerMigrations, gatewayMigrations]);
  ledgers = dbs.map((db) => createLedger({ ...gatewayLedgerParams, db }));
  netting = await nettingFixture(dbs[0]!, ledgers[0]!, "netting_refusals", 100n);
}, 120_000);

afterAll(async () => {
  for (const ledger of ledgers) await ledger.close();
  for (const db of dbs) await db.close();
});

/** Netting in process `i`, its rail refusing every batch that pays refusedPayee (naming it) and paying the rest. */
const processDeps = (i: number, ledger: Ledger = ledgers[i]!): NettingDeps => ({
  ...netting.deps(),
  db: dbs[i]!,
  ledger,
  payer: {
    id: "evm",
    asset: assets.USDC,
    payoutBatch: async (batch) => {
      const refused = batch.payouts.flatMap(({ destination }, index) =>
        destination.kind === "evm_address" && destination.address === refusedPayee
          ? [{ index, code: "rejected" as const, message: "blacklisted" }]
          : [],
      );
      if (refused.length > 0) return { status: "failed", code: "rejected", message: "reverted", refused };
      return {
        status: "succeeded",
        evidence: { rail: "external", railId: "evm", reference: batch.reference },
        fee: 0n,
      };
    },
  },
});

describe("a refused payout given back by two processes at once, on PostgreSQL", () => {
  it("credits the payer once and fails the payment once", async () => {
    const id = "pay_refused_twice";
    await netting.insertPayment(id);
    expect(await accruePayout(processDeps(0), netting.payout(id, 30n, refusedPayee))).toBe("accrued");
    const before = await netting.customerPosted();
    // Process 0's flush stops after the refusal, before the money goes back.
    const ledger = ledgers[0]!;
    const stopping = ledgerStoppingAtReturn(ledger);
    await expect(flushNetting(processDeps(0, stopping), { force: true })).rejects.toBeInstanceOf(
      NettingResumeError,
    );
    expect(await netting.customerPosted()).toBe(before);

    // Both flushes find it to give back, and both write their return once the other has found it too.
    const reached = dbs.map(() => latch());
    const racing = ledgers.map(
      (ledger, i): Ledger => ({
        ...ledger,
        createTransfersWith: async (...args: Parameters<Ledger["createTransfersWith"]>) => {
          if (args[0].some((transfer) => transfer.code === transferCodes.netting.returned)) {
            reached[i]!.release();
            await Promise.all(reached.map((each) => each.done));
          }
          return ledger.createTransfersWith(...args);
        },
      }),
    );
    const results = await Promise.all(dbs.map((_, i) => flushNetting(processDeps(i, racing[i]))));
    expect(results.map((result) => result.refused)).toEqual([1, 1]); // the second's repeat changed nothing
    expect(await netting.customerPosted()).toBe(before + 30n);
    const db = dbs[0]!;
    const [payment] = await db.query<{ status: string; failure_code: string }>(
      "SELECT status, failure_code FROM payments WHERE id = $1",
      [id],
    );
    expect(payment).toEqual({ status: "failed", failure_code: "rejected" });
    const events = await db.query(
      "SELECT 1 FROM outbox WHERE type = 'payment.failed' AND payload->>'payment_id' = $1",
      [id],
    );
    expect(events).toHaveLength(1);
  });
});
