// A caller's statement written alongside a pipelined batch runs before the batch takes the ledger's clock, beside the
// batches still in flight ahead of it: it does not see what their statements wrote, though the ledger orders it after
// them. One that must (Alongside.underLock: a shortfall's collection checks that no reversal recorded a shortfall
// since it read them, settlement/shortfalls.ts) runs locked, after the batches ahead of it have committed. On
// PostgreSQL, one writer, the clock held by another connection so that a batch stays in flight.
// Run locked, such a statement locks its rows after the clock, where another process's pipelined batch locks its
// callers' rows before it: a wait of the statement on such a row, that batch waiting for the clock, is a cycle
// PostgreSQL finds only after its deadlock_timeout, so the statement gives its wait up soon (underLockWaitMaxMs) and
// its batch runs again once the other has had the clock.
import { performance } from "node:perf_hooks";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type Db, openPostgres } from "../../gateway/db/index.ts";
import { createLedger, defaultLedgerLimits, type Ledger } from "../../gateway/ledger/index.ts";
import { noteStatements } from "../support/recording-db.ts";
import { ledgerDatabase, transfer, twoAccounts } from "./two-accounts.ts";

let url: string;
let direct: Db;
let db: Db;
let ledger: Ledger;

beforeAll(async () => {
  ({ url, direct } = await ledgerDatabase(inject("postgresUrl"), "underlock"));
  db = openPostgres({ url, poolSizeMax: 4, statementTimeoutMs: 10_000 });
  // Pipelined (the default depth, 2); no expiry sweep to take the writer in between.
  ledger = createLedger({ db, limits: { expiryIntervalMs: 0 } });
  await ledger.createAccounts(twoAccounts);
  // The writer's first batch runs locked; those after it are pipelined.
  await ledger.createTransfers([transfer(1n)]);
});
afterAll(async () => {
  await ledger?.close();
  await db?.close();
  await direct?.close();
});

/**
 * Whether, within `timeoutMs`, a session of `sql`'s database waits for a lock the session `blockedBy` (a backend's
 * pid) holds, or runs or last ran a statement whose first kilobyte starts with `text`.
 */
async function seen(
  sql: Db,
  what: { blockedBy: number } | { text: string },
  timeoutMs: number,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const [row] = await sql.query<{ count: bigint }>(
      `SELECT count(*)::int8 AS count FROM pg_stat_activity
       WHERE datname = current_database() AND pid <> pg_backend_pid()
         AND CASE WHEN $1::int4 IS NOT NULL THEN pg_blocking_pids(pid) @> ARRAY[$1::int4]
                  ELSE starts_with(query, $2) END`,
      "blockedBy" in what ? [what.blockedBy, null] : [null, what.text],
    );
    if ((row?.count ?? 0n) > 0n) return true;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return false;
}

/** A session of its own on `url`'s database, and its backend's pid. */
async function session(url: string): Promise<{ client: pg.Client; pid: number }> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const { rows } = await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid");
  return { client, pid: rows[0]!.pid };
}

/**
 * Batch A (a caller's row inserted alongside) held in flight at the clock; then batch B, whose statement counts those
 * rows, `underLock` or not. Returns what B's statement counted.
 */
async function countBehindInFlight(key: string, ids: [bigint, bigint], underLock: boolean): Promise<number> {
  const { client: holder, pid } = await session(url);
  try {
    await holder.query("BEGIN");
    await holder.query("SELECT 1 FROM ledger_clock WHERE singleton FOR UPDATE");
    const inserted = ledger.createTransfersWith([transfer(ids[0])], {
      statement: () => ({ text: "INSERT INTO caller_keys (key) VALUES ($1)", params: [key] }),
    });
    expect(await seen(direct, { blockedBy: pid }, 10_000), "batch A waits for the clock").toBe(true);
    const count = `SELECT count(*)::int AS n FROM caller_keys WHERE key = $1 -- ${key}`;
    const counted = ledger.createTransfersWith([transfer(ids[1])], {
      statement: () => ({ text: count, params: [key] }),
      underLock,
    });
    // Pipelined, B's statement runs now (seen as soon as it is); under the lock it waits for A (a bounded wait:
    // nothing to see then).
    expect(
      await seen(direct, { text: count }, underLock ? 1_000 : 10_000),
      "B's statement runs while A is still in flight",
    ).toBe(!underLock);
    await holder.query("ROLLBACK");
    await inserted;
    const { rows } = await counted;
    return (rows as { n: number }[])[0]!.n;
  } finally {
    await holder.end();
  }
}

describe("a statement written alongside, behind a batch in flight", () => {
  it("pipelined, does not see what the batch ahead of it wrote", async () => {
    expect(await countBehindInFlight("pipelined", [10n, 11n], false)).toBe(0);
  });

  it("under the lock (underLock), sees it: its batch runs locked, after the one ahead has committed", async () => {
    expect(await countBehindInFlight("locked", [20n, 21n], true)).toBe(1);
    const found = await ledger.lookupTransfers([20n, 21n]);
    expect(found.map((t) => t.id)).toEqual([20n, 21n]);
  });
});

describe("a statement under the lock waiting on a row another process's pipelined batch holds", () => {
  // The other process's batch, as its statements run: its caller's statement updates a row, then it waits for the
  // clock. Both sessions with a deadlock_timeout long enough that PostgreSQL's detector could not be what ends the
  // cycle in time (the test server's is 200 ms).
  const deadlockTimeoutMs = 10_000;
  const row = "UPDATE caller_keys SET key = key WHERE key = $1 RETURNING key";
  let cycleUrl: string;
  let cycleDirect: Db;
  let pool: Db;
  let cycleLedger: Ledger;
  /** The statements the ledger sent (full text). */
  const sent: string[] = [];

  beforeAll(async () => {
    const made = await ledgerDatabase(inject("postgresUrl"), "underlockcycle");
    cycleDirect = made.direct;
    const withTimeout = new URL(made.url);
    withTimeout.searchParams.set("options", `-c deadlock_timeout=${deadlockTimeoutMs}`);
    cycleUrl = withTimeout.toString();
    pool = openPostgres({ url: cycleUrl, poolSizeMax: 4, statementTimeoutMs: 60_000 });
    cycleLedger = createLedger({
      db: noteStatements(pool, (texts) => sent.push(...texts)),
      // Attempts enough that however long the test takes to join the cycle, the statement's batch is not given up.
      limits: { expiryIntervalMs: 0, retryAttemptsMax: 1_000 },
    });
    await cycleLedger.createAccounts(twoAccounts);
    await cycleDirect.query("INSERT INTO caller_keys (key) VALUES ('shared')");
  });
  afterAll(async () => {
    await cycleLedger?.close();
    await pool?.close();
    await cycleDirect?.close();
  });

  it("gives the wait up well within deadlock_timeout, and its batch commits once the other batch has", async () => {
    const { client: other, pid } = await session(cycleUrl);
    try {
      expect((await other.query("SHOW deadlock_timeout")).rows[0].deadlock_timeout).toBe("10s");
      await other.query("BEGIN");
      await other.query(row, ["shared"]);
      const underLock = cycleLedger.createTransfersWith([transfer(40n)], {
        statement: () => ({ text: row, params: ["shared"] }),
        underLock: true,
      });
      expect(
        await seen(cycleDirect, { blockedBy: pid }, 10_000),
        "the statement, its batch holding the clock, waits for the row",
      ).toBe(true);
      // The other batch waits for the clock now: a cycle, unless the statement has given its wait up already.
      const started = performance.now();
      await other.query("SELECT 1 FROM ledger_clock WHERE singleton FOR UPDATE");
      const waitedMs = performance.now() - started;
      await other.query("COMMIT");
      const { results, rows } = await underLock;
      expect(results.map((result) => result.status)).toEqual(["created"]);
      expect(rows).toEqual([{ key: "shared" }]);
      // Given up at its bound (50 ms), not broken by the detector after deadlock_timeout.
      expect(defaultLedgerLimits.underLockWaitMaxMs).toBeLessThan(deadlockTimeoutMs / 100);
      expect(waitedMs, "how long the other batch waited for the clock (ms)").toBeLessThan(
        deadlockTimeoutMs / 2,
      );
      // Run again after the other batch: the statement sent at least twice, the bound set before each.
      const statements = sent.filter((text) => text === row);
      expect(statements.length).toBeGreaterThanOrEqual(2);
      expect(sent.filter((text) => text.includes("'lock_timeout'"))).toHaveLength(statements.length);
    } finally {
      await other.end();
    }
    expect((await cycleLedger.lookupTransfers([40n])).map((found) => found.id)).toEqual([40n]);
  });
});
