// A caller's statement written alongside a batch that fails fails its own caller only: the other requests of the
// batch are written again together, in one transaction (issue #19: one bad item never fails its neighbours, nor
// takes their batch from them). On PostgreSQL, where the ledger knows which statement failed.
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type Db, migrate, openPostgres } from "../../gateway/db/index.ts";
import {
  AlongsideStatementError,
  createLedger,
  type Ledger,
  ledgerMigrations,
} from "../../gateway/ledger/index.ts";
import { createTestDatabase } from "../support/postgres.ts";
import { transfer, twoAccounts } from "./two-accounts.ts";

let db: Db;
let ledger: Ledger;

beforeAll(async () => {
  db = openPostgres({
    url: await createTestDatabase(inject("postgresUrl"), "alongside"),
    poolSizeMax: 4,
    statementTimeoutMs: 10_000,
  });
  await migrate(db, [ledgerMigrations]);
  // Locked batches only: a batch is then everything queued, so the three requests below are one batch.
  ledger = createLedger({ db, limits: { pipelineDepthMax: 0 } });
  await ledger.createAccounts(twoAccounts);
});
afterAll(async () => {
  await ledger?.close();
  await db?.close();
});

const inTransaction = { text: "SELECT txid_current()::text AS tx", params: [] };
const failing = { text: "SELECT 1 / 0 AS never", params: [] };

describe("a statement written alongside that fails", () => {
  it("rejects its own request only; the others of its batch commit, together", async () => {
    // Submitted in one turn: one batch of the writer.
    const [left, bad, right] = await Promise.allSettled([
      ledger.createTransfersWith([transfer(100n)], { statement: () => inTransaction }),
      ledger.createTransfersWith([transfer(101n)], { statement: () => failing }),
      ledger.createTransfersWith([transfer(102n)], { statement: () => inTransaction }),
    ]);
    expect(bad.status).toBe("rejected");
    expect((bad as PromiseRejectedResult).reason).toBeInstanceOf(AlongsideStatementError);
    expect(left.status).toBe("fulfilled");
    expect(right.status).toBe("fulfilled");
    const txOf = (r: PromiseSettledResult<{ rows: unknown[] | null }>) =>
      ((r as PromiseFulfilledResult<{ rows: { tx: string }[] | null }>).value.rows ?? [])[0]?.tx;
    expect(txOf(left)).toBeDefined();
    expect(txOf(left)).toBe(txOf(right));
    const found = await ledger.lookupTransfers([100n, 101n, 102n]);
    expect(found.map((t) => t.id)).toEqual([100n, 102n]);
  });

  it("a statement the client cannot send (a parameter it cannot serialize) fails its own request only", async () => {
    const unsendable = { text: "SELECT $1::text AS never", params: [{ amount: 1n }] };
    const [left, bad, right] = await Promise.allSettled([
      ledger.createTransfersWith([transfer(300n)], { statement: () => inTransaction }),
      ledger.createTransfersWith([transfer(301n)], { statement: () => unsendable }),
      ledger.createTransfersWith([transfer(302n)], { statement: () => inTransaction }),
    ]);
    // Before: the client's own error read as a lost connection, and every request after it in the batch heard it.
    expect([left.status, bad.status, right.status]).toEqual(["fulfilled", "rejected", "fulfilled"]);
    const found = await ledger.lookupTransfers([300n, 301n, 302n]);
    expect(found.map((t) => t.id)).toEqual([300n, 302n]);
  });

  it("a key its caller's table already holds fails its own request at the first try: the batch is not run again for it", async () => {
    // A sequence is not rolled back: its value counts how many times the statement ran.
    await db.query("CREATE TABLE alongside_keys (key int PRIMARY KEY)");
    await db.query("CREATE SEQUENCE alongside_runs");
    await db.query("INSERT INTO alongside_keys VALUES (1)");
    const taken = {
      text: "INSERT INTO alongside_keys SELECT 1 WHERE nextval('alongside_runs') > 0",
      params: [],
    };
    const [left, bad, right] = await Promise.allSettled([
      ledger.createTransfersWith([transfer(200n)], { statement: () => inTransaction }),
      ledger.createTransfersWith([transfer(201n)], { statement: () => taken }),
      ledger.createTransfersWith([transfer(202n)], { statement: () => inTransaction }),
    ]);
    expect([left.status, bad.status, right.status]).toEqual(["fulfilled", "rejected", "fulfilled"]);
    const reason = (bad as PromiseRejectedResult).reason;
    expect([reason instanceof AlongsideStatementError, reason.sqlState]).toEqual([true, "23505"]);
    const [runs] = await db.query<{ last_value: bigint }>("SELECT last_value FROM alongside_runs");
    expect(runs!.last_value).toBe(1n);
    const found = await ledger.lookupTransfers([200n, 201n, 202n]);
    expect(found.map((t) => t.id)).toEqual([200n, 202n]);
  });
});
