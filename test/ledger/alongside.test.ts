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
});
