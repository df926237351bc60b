import { fork } from "node:child_process";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { assets } from "../../core/index.ts";
import { balanceOf, createAccount } from "../../gateway/accounts/index.ts";
import { gatewayMigrations } from "../../gateway/app.ts";
import { type Db, migrate, openPostgres } from "../../gateway/db/index.ts";
import { createLedger, type Ledger, ledgerMigrations, transferCodes } from "../../gateway/ledger/index.ts";
import { gatewayLedgerParams } from "../../gateway/ledger-params.ts";
import { createTenant } from "../../gateway/tenants/index.ts";
import { createTestDatabase } from "../support/postgres.ts";

const kills = 8;
let url: string;
let db: Db;
let ledger: Ledger;
let customerLedgerId: bigint;

beforeAll(async () => {
  url = await createTestDatabase(inject("postgresUrl"), "crash");
  db = openPostgres({ url, poolSizeMax: 2, statementTimeoutMs: 10_000 });
  await migrate(db, [ledgerMigrations, gatewayMigrations]);
  await db.exec(`CREATE TABLE toy_payouts (attempt_id text PRIMARY KEY, payment_id text NOT NULL, rail text NOT NULL, amount bigint NOT NULL,
    outcome text NOT NULL CHECK (outcome IN ('paid', 'refused')))`);
  ledger = createLedger({ ...gatewayLedgerParams, db });
  await createTenant(db, { id: "ten_crash", name: "crash" });
  const customer = await createAccount(
    { sql: db, ledger },
    { tenantId: "ten_crash", kind: "customer", asset: assets.USDC, name: "c", id: "acct_crash_customer" },
  );
  customerLedgerId = customer.ledgerAccountId;
  const funding: bigint[] = [];
  for (const rail of ["cheap", "dear"]) {
    const clearing = await createAccount(
      { sql: db, ledger },
      { tenantId: null, kind: "clearing", asset: assets.USDC, name: rail, rail, id: `acct_clearing_${rail}` },
    );
    funding.push(clearing.ledgerAccountId);
  }
  const results = await ledger.createTransfers(
    funding.map((clearing, i) => ({
      id: 900n + BigInt(i),
      debitAccountId: clearing,
      creditAccountId: customerLedgerId,
      amount: 10_000_000n,
      ledger: 1,
      code: transferCodes.payments.funding,
    })),
  );
  expect(results.map((r) => r.status)).toEqual(["created", "created"]);
});
afterAll(async () => {
  await ledger?.close();
  await db?.close();
});

/** Runs the worker; kills it with SIGKILL after `killAfterMs` once it has recovered, or lets it finish. */
function runWorker(runId: string, count: number, killAfterMs: number | null): Promise<"killed" | "done"> {
  return new Promise((resolve, reject) => {
    const child = fork(path.join(import.meta.dirname, "worker.ts"), [url, runId, String(count)], {
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    let killed = false;
    child.on("message", (message) => {
      if (message === "recovered" && killAfterMs !== null) {
        setTimeout(() => {
          killed = true;
          child.kill("SIGKILL");
        }, killAfterMs);
      }
    });
    child.on("error", reject);
    child.on("exit", (code) => {
      if (killed) resolve("killed");
      else if (code === 0) resolve("done");
      else reject(new Error(`worker ${runId} exited with ${code}`));
    });
  });
}

describe("a gateway killed between any two steps", () => {
  it("never pays one payment twice, on one rail or across two, and settles every payment exactly once", async () => {
    for (let i = 0; i < kills; i += 1) {
      expect(await runWorker(`run${i}`, 1_000, 150 + Math.floor(Math.random() * 500))).toBe("killed");
    }
    // A last process recovers everything and makes a few more payments undisturbed.
    expect(await runWorker("final", 3, null)).toBe("done");

    const payouts = await db.query<{ payment_id: string; paid: bigint; refused: bigint }>(
      `SELECT payment_id, count(*) FILTER (WHERE outcome = 'paid') AS paid, count(*) FILTER (WHERE outcome = 'refused') AS refused
       FROM toy_payouts GROUP BY payment_id`,
    );
    const payments = await db.query<{ id: string; status: string; amount: bigint }>(
      "SELECT id, status, amount FROM payments",
    );
    expect(payments.length).toBeGreaterThan(kills);
    const paidBy = new Map(payouts.map((row) => [row.payment_id, row.paid]));
    for (const payment of payments) {
      expect({ id: payment.id, status: payment.status }).toEqual({ id: payment.id, status: "succeeded" });
      expect({ id: payment.id, paid: paidBy.get(payment.id) }).toEqual({ id: payment.id, paid: 1n });
    }
    expect(payouts.some((row) => row.refused > 0n)).toBe(true); // failovers did happen

    // Each payment's Idempotency-Key: answered in the write that ended the payment (201, the payment, no body), or
    // left unanswered by a request killed before its end (recovery ends the payment without answering the key:
    // a repeat then reads the payment). Never an answer with a payment that had not ended.
    const keys = await db.query<{
      key: string;
      status: number | null;
      payment_id: string | null;
      body: string | null;
      paid_id: string;
    }>(
      `SELECT k.key, k.response_status AS status, k.payment_id, k.response_body::text AS body, p.id AS paid_id
       FROM idempotency_keys k JOIN payments p ON p.tenant_id = k.tenant_id AND p.idempotency_key = k.key`,
    );
    expect(keys.length).toBe(payments.length);
    const answered = keys.filter((row) => row.status !== null);
    for (const row of answered)
      expect(row).toEqual({
        key: row.key,
        status: 201,
        payment_id: row.paid_id,
        body: null,
        paid_id: row.paid_id,
      });
    for (const row of keys.filter((r) => r.status === null))
      expect(row).toMatchObject({ payment_id: null, body: null });
    expect(answered.length).toBeGreaterThan(0);

    // The ledger agrees: the customer paid exactly the payments, and nothing is left reserved.
    const [account] = await ledger.lookupAccounts([customerLedgerId]);
    const balance = balanceOf("customer", account!);
    const total = payments.reduce((sum, p) => sum + p.amount, 0n);
    expect(balance.pendingOut).toBe(0n);
    expect(balance.posted).toBe(20_000_000n - total);
  });
});
