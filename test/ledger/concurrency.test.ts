// Several gateway processes on one PostgreSQL: two OS processes and two ledgers in this process (each with its own
// connection pool) hammer shared accounts, one hot account, limited accounts, linked chains, two-phase pairs and
// ids that every process submits. Afterwards: every ledger balances, every balance equals the sum of its postings,
// no limit was broken, every transfer reported created exists exactly once, and each shared id was created once.
import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type Db, migrate, openPostgres } from "../../gateway/db/index.ts";
import {
  AccountFlags,
  createLedger,
  ledgerId,
  ledgerMigrations,
  selectLedgerTotals,
} from "../../gateway/ledger/index.ts";
import { createTestDatabase } from "../support/postgres.ts";
import { type HammerOutcome, type HammerPlan, hammer } from "./hammer.ts";

const execFileAsync = promisify(execFile);
const childTimeoutMs = 150_000;

// One piece by nature: a vitest suite, whose tests share the store opened in its beforeAll; each test is short.
describe("ledger under concurrent writers on PostgreSQL", () => {
  let url: string;
  let db: Db;
  const accounts = Array.from({ length: 40 }, () => ledgerId());
  const limited = Array.from({ length: 6 }, () => ledgerId());
  const funding = ledgerId();
  const sharedIds = Array.from({ length: 50 }, () => ledgerId());

  beforeAll(async () => {
    url = await createTestDatabase(inject("postgresUrl"), "concurrency");
    db = openPostgres({ url, poolSizeMax: 4, statementTimeoutMs: 60_000 });
    await migrate(db, [ledgerMigrations]);
    const ledger = createLedger({ db, limits: { expiryIntervalMs: 0 } });
    const created = await ledger.createAccounts([
      ...accounts.map((id) => ({ id, ledger: 1, code: 1 })),
      ...limited.map((id) => ({ id, ledger: 1, code: 2, flags: AccountFlags.debitsMustNotExceedCredits })),
      { id: funding, ledger: 1, code: 3 },
    ]);
    expect(created.every((r) => r.status === "created")).toBe(true);
    const funded = await ledger.createTransfers(
      limited.map((id) => ({
        id: ledgerId(),
        debitAccountId: funding,
        creditAccountId: id,
        amount: 300n,
        ledger: 1,
        code: 3,
      })),
    );
    expect(funded.every((r) => r.status === "created")).toBe(true);
    await ledger.close();
  });
  afterAll(async () => {
    await db.close();
  });

  it("stays exact with two OS processes and two in-process writers", async () => {
    const plan = (name: string): HammerPlan => ({
      url,
      name,
      accounts: accounts.map(String),
      limited: limited.map(String),
      sharedIds: sharedIds.map(String),
      requests: 150,
      callers: 6,
      transfersPerRequest: 20,
      poolSizeMax: 3,
    });
    const child = async (name: string): Promise<HammerOutcome> => {
      const { stdout } = await execFileAsync(
        process.execPath,
        [path.join(import.meta.dirname, "hammer.ts"), JSON.stringify(plan(name))],
        { timeout: childTimeoutMs, maxBuffer: 64 * 1024 * 1024 },
      );
      return JSON.parse(stdout.trim().split("\n").at(-1)!) as HammerOutcome;
    };
    const inProcess = (name: string) => hammer(plan(name));
    const outcomes = await Promise.all([
      child("process-a"),
      child("process-b"),
      inProcess("pool-c"),
      inProcess("pool-d"),
    ]);

    // Every writer did real work, and the limits were hit (so the limit check below means something).
    for (const outcome of outcomes) expect(outcome.created.length, outcome.name).toBeGreaterThan(500);
    const statuses: Record<string, number> = {};
    for (const outcome of outcomes)
      for (const [status, n] of Object.entries(outcome.statuses))
        statuses[status] = (statuses[status] ?? 0) + n;
    expect(statuses.exceeds_credits ?? 0).toBeGreaterThan(0);
    expect(statuses.exists ?? 0).toBeGreaterThan(0);
    expect(Object.keys(statuses).sort()).toEqual(expect.arrayContaining(["created"]));
    // Only the statuses this traffic can produce: nothing surfaced from deadlocks or races.
    for (const status of Object.keys(statuses))
      expect(["created", "exists", "exceeds_credits", "linked_event_failed"]).toContain(status);

    // No transfer lost or applied twice: the rows are exactly the ones reported created, once each.
    const reported = outcomes.flatMap((o) => o.created);
    expect(new Set(reported).size).toBe(reported.length);
    const [{ count }] = (await db.query<{ count: bigint }>(
      "SELECT count(*)::int8 AS count FROM ledger_transfers WHERE code <> 3 AND timestamp <> 0",
    )) as [{ count: bigint }];
    expect(count).toBe(BigInt(reported.length));
    const shared = new Set(sharedIds.map(String));
    const sharedCreated = reported.filter((id) => shared.has(id));
    expect(new Set(sharedCreated).size).toBe(sharedCreated.length);

    // Books balance, balances equal their postings, limits hold.
    for (const total of await selectLedgerTotals(db)) {
      expect(total.debitsPosted).toBe(total.creditsPosted);
      expect(total.debitsPending).toBe(total.creditsPending);
    }
    const mismatches = await db.query(
      `WITH postings AS (
         SELECT debit_account_id AS account, amount AS dpo, 0::int8 AS cpo, 0::int8 AS dpe, 0::int8 AS cpe
           FROM ledger_transfers WHERE (flags & (2 | 8)) = 0
         UNION ALL
         SELECT credit_account_id, 0, amount, 0, 0 FROM ledger_transfers WHERE (flags & (2 | 8)) = 0
         UNION ALL
         SELECT t.debit_account_id, 0, 0, t.amount, 0 FROM ledger_transfers t JOIN ledger_pending_open o ON o.id = t.id
         UNION ALL
         SELECT t.credit_account_id, 0, 0, 0, t.amount FROM ledger_transfers t JOIN ledger_pending_open o ON o.id = t.id
       ), sums AS (
         SELECT account, sum(dpo) AS dpo, sum(cpo) AS cpo, sum(dpe) AS dpe, sum(cpe) AS cpe FROM postings GROUP BY account
       )
       SELECT a.id FROM ledger_accounts a LEFT JOIN sums s ON s.account = a.id
        WHERE a.debits_posted <> coalesce(s.dpo, 0) OR a.credits_posted <> coalesce(s.cpo, 0)
           OR a.debits_pending <> coalesce(s.dpe, 0) OR a.credits_pending <> coalesce(s.cpe, 0)`,
    );
    expect(mismatches).toEqual([]);
    const broken = await db.query(
      "SELECT id FROM ledger_accounts WHERE (flags & 2) <> 0 AND debits_pending + debits_posted > credits_posted",
    );
    expect(broken).toEqual([]);
  });
});
