// A lookup of ledger rows by id is planned each time it runs (gateway/db plannedEachTime), not kept as a prepared
// statement whose generic plan was made once: made while the table was nearly empty, that plan read the whole table
// from then on, however it grew (two gateway processes on a young database spent 2 to 6 ms of every locked batch,
// the clock held, scanning ledger_transfers).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Db, Sql } from "../../gateway/db/index.ts";
import { selectTransfersWithStatus } from "../../gateway/ledger/index.ts";
import { openStore } from "./stores.ts";

let db: Db;
beforeAll(async () => {
  db = await openStore("postgres", { poolSizeMax: 1 }); // one connection: the one the statement is kept on
});
afterAll(async () => {
  await db?.close();
});

/** Transfers with ids `from` … `to` (the id's 128 bits are the number). */
const fill = (sql: Sql, from: number, to: number) =>
  sql.query(
    `INSERT INTO ledger_transfers (id, debit_account_id, credit_account_id, amount, timestamp, ledger, code, flags)
     SELECT lpad(to_hex(n), 32, '0')::uuid, lpad('a', 32, '0')::uuid, lpad('b', 32, '0')::uuid, 1, n, 1, 1, 0
       FROM generate_series($1::int, $2::int) AS n`,
    [from, to],
  );

/** Sequential scans of ledger_transfers in this transaction so far. */
const seqScans = async (sql: Sql) =>
  Number(
    (
      await sql.query<{ n: string }>(
        "SELECT seq_scan::text AS n FROM pg_stat_xact_user_tables WHERE relname = 'ledger_transfers'",
      )
    )[0]?.n ?? 0,
  );

describe("ledger lookups by id on PostgreSQL", () => {
  it("reads transfers by their index once the table grew, though first asked while it was nearly empty", async () => {
    await db.transaction(async (tx) => {
      await fill(tx, 1, 10);
      const ids = [2n, 7n, 40_000n, 10n ** 12n];
      // More than the five runs after which PostgreSQL may keep one generic plan for a prepared statement.
      for (let run = 0; run < 8; run += 1) expect(await selectTransfersWithStatus(tx, ids)).toHaveLength(2);
      await fill(tx, 11, 60_000);
      const before = await seqScans(tx);
      const found = await selectTransfersWithStatus(tx, ids);
      expect(found.map(({ transfer }) => transfer.id).sort((a, b) => Number(a - b))).toEqual([
        2n,
        7n,
        40_000n,
      ]);
      // Before: the plan made for ten rows (a sequential scan) ran on sixty thousand.
      expect((await seqScans(tx)) - before).toBe(0);
    });
  });
});
