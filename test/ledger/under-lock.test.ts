// A caller's statement written alongside a pipelined batch runs before the batch takes the ledger's clock, beside the
// batches still in flight ahead of it: it does not see what their statements wrote, though the ledger orders it after
// them. One that must (Alongside.underLock: a shortfall's collection checks that no reversal recorded a shortfall
// since it read them, settlement/shortfalls.ts) runs locked, after the batches ahead of it have committed. On
// PostgreSQL, one writer, the clock held by another connection so that a batch stays in flight.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type Db, openPostgres } from "../../gateway/db/index.ts";
import { createLedger, type Ledger } from "../../gateway/ledger/index.ts";
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

/** A session waiting for a lock (`text` null), or one whose statement (its first kilobyte) starts with `text`. */
async function seen(text: string | null, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const [row] = await direct.query<{ count: bigint }>(
      `SELECT count(*)::int8 AS count FROM pg_stat_activity
       WHERE datname = current_database() AND pid <> pg_backend_pid()
         AND CASE WHEN $1::text IS NULL THEN wait_event_type = 'Lock' ELSE starts_with(query, $1) END`,
      [text],
    );
    if ((row?.count ?? 0n) > 0n) return true;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return false;
}

/**
 * Batch A (a caller's row inserted alongside) held in flight at the clock; then batch B, whose statement counts those
 * rows, `underLock` or not. Returns what B's statement counted.
 */
async function countBehindInFlight(key: string, ids: [bigint, bigint], underLock: boolean): Promise<number> {
  const holder = new pg.Client({ connectionString: url });
  await holder.connect();
  try {
    await holder.query("BEGIN");
    await holder.query("SELECT 1 FROM ledger_clock WHERE singleton FOR UPDATE");
    const inserted = ledger.createTransfersWith([transfer(ids[0])], {
      statement: () => ({ text: "INSERT INTO caller_keys (key) VALUES ($1)", params: [key] }),
    });
    expect(await seen(null, 10_000), "batch A waits for the clock").toBe(true);
    const count = `SELECT count(*)::int AS n FROM caller_keys WHERE key = $1 -- ${key}`;
    const counted = ledger.createTransfersWith([transfer(ids[1])], {
      statement: () => ({ text: count, params: [key] }),
      underLock,
    });
    // Pipelined, B's statement runs now; under the lock it waits for A (a bounded wait: nothing to see then).
    expect(await seen(count, 1_000), "B's statement runs while A is still in flight").toBe(!underLock);
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
