// Ledger statements on PostgreSQL reach the rows they want through their index, not by reading the whole table.
// A lookup of ledger rows by id is planned each time it runs (gateway/db plannedEachTime), not kept as a prepared
// statement whose generic plan was made once: made while the table was nearly empty, that plan read the whole table
// from then on, however it grew (two gateway processes on a young database spent 2 to 6 ms of every locked batch,
// the clock held, scanning ledger_transfers). A batch's balance update of up to 256 accounts names them for the index
// itself (store-batch.ts): joined to its deltas alone, a thousand accounts were read on every batch, the clock held.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Db, Sql } from "../../gateway/db/index.ts";
import { selectTransfersWithStatus } from "../../gateway/ledger/index.ts";
import { lockClock } from "../../gateway/ledger/store.ts";
import { writeBatch } from "../../gateway/ledger/store-batch.ts";
import { balanceRows } from "../../gateway/ledger/store-params.ts";
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

/** Sequential scans of `table` (ledger_transfers unless said) in this transaction so far. */
const seqScans = async (sql: Sql, table = "ledger_transfers") =>
  Number(
    (
      await sql.query<{ n: string }>(
        "SELECT seq_scan::text AS n FROM pg_stat_xact_user_tables WHERE relname = $1",
        [table],
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

describe("a batch's balance update on PostgreSQL", () => {
  it("updates its accounts through their index among a thousand others", async () => {
    await db.transaction(async (tx) => {
      // As internal-postgres-many has them (100 tenants of 10 accounts, and the platform's own), stats known.
      await tx.query(
        `INSERT INTO ledger_accounts (id, ledger, code, flags, timestamp)
         SELECT lpad(to_hex(n), 32, '0')::uuid, 1, 1, 0, n FROM generate_series(1, 1100) AS n`,
      );
      await tx.query("ANALYZE ledger_accounts");
      const clock = await lockClock(tx);
      /** A batch crediting 1 to each of 80 accounts, from the `first`th on, every 13th. */
      const batch = (first: number) =>
        writeBatch(tx, {
          transfers: { count: 0, params: [], hasEvidence: false },
          expectedToken: clock.token,
          clock,
          balances: balanceRows(
            Array.from({ length: 80 }, (_, i) => ({
              id: BigInt(first + 13 * i),
              debitsPending: 0n,
              debitsPosted: 0n,
              creditsPending: 0n,
              creditsPosted: 1n,
              flags: 0,
            })),
          ),
          pendingOpened: [],
          pendingResolved: [],
          history: [],
          transferTimestampMax: 0n,
        });
      // More than the five runs after which PostgreSQL may keep one generic plan for a prepared statement.
      for (let run = 1; run <= 8; run += 1) await batch(run);
      const before = await seqScans(tx, "ledger_accounts");
      await batch(9);
      // Before: a hash join over a sequential scan of all 1,100 accounts, for the 80 the batch changes.
      expect((await seqScans(tx, "ledger_accounts")) - before).toBe(0);
      // Nine batches of 80 accounts each, none in two (a first account from 1 to 9, then every 13th).
      const credited = await tx.query<{ accounts: string; credits: string }>(
        "SELECT count(*)::text AS accounts, sum(credits_posted)::text AS credits FROM ledger_accounts WHERE credits_posted > 0",
      );
      expect(credited[0]).toEqual({ accounts: "720", credits: "720" });
    });
  });
});
