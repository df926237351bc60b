// What a lone batch costs on PostgreSQL, in statements: a payment that arrives when nothing else is being written
// waits for every round trip its batch makes (issue #19: single-postgres against a bare commit). With no batch in
// flight there is no commit to overlap, so the batch is the callers' statements and one of its own (transfers, clock,
// balances), in one transaction — not the pipelined four (insert, callers', clock lock, balances).
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { Db, Sql } from "../../core/index.ts";
import { migrate, openPostgres } from "../../gateway/db/index.ts";
import { createLedger, type Ledger, ledgerMigrations } from "../../gateway/ledger/index.ts";
import { createTestDatabase } from "../support/postgres.ts";

/** The database, counting the transactions opened and the statements run inside them. */
function counting(db: Db) {
  const counts = { transactions: 0, statements: [] as string[] };
  const wrapped: Db = {
    kind: db.kind,
    connectionsMax: db.connectionsMax,
    query: (text, params) => db.query(text, params),
    queryAll: (statements) => db.queryAll(statements),
    exec: (script) => db.exec(script),
    close: () => db.close(),
    transaction: (fn) =>
      db.transaction((tx) => {
        counts.transactions += 1;
        const countingTx: Sql = {
          query: (text, params) => {
            counts.statements.push(text);
            return tx.query(text, params);
          },
        };
        return fn(countingTx);
      }),
  };
  return { db: wrapped, counts };
}

let raw: Db;
let ledger: Ledger;
let counts: ReturnType<typeof counting>["counts"];
const debit = 1n;
const credit = 2n;

beforeAll(async () => {
  raw = openPostgres({
    url: await createTestDatabase(inject("postgresUrl"), "round_trips"),
    poolSizeMax: 4,
    statementTimeoutMs: 10_000,
  });
  await migrate(raw, [ledgerMigrations]);
  const wrapped = counting(raw);
  counts = wrapped.counts;
  ledger = createLedger({ db: wrapped.db });
  await ledger.createAccounts([
    { id: debit, ledger: 1, code: 1, flags: 0 },
    { id: credit, ledger: 1, code: 1, flags: 0 },
  ]);
  // The first batch runs locked (the writer learns the clock); the ones after may be pipelined.
  await ledger.createTransfers([
    { id: 1n, debitAccountId: debit, creditAccountId: credit, amount: 1n, ledger: 1, code: 1 },
  ]);
});
afterAll(async () => {
  await ledger?.close();
  await raw?.close();
});

describe("a lone batch on PostgreSQL", () => {
  it("is one transaction of two statements: the caller's, then the batch's", async () => {
    for (const id of [10n, 11n, 12n]) {
      counts.transactions = 0;
      counts.statements = [];
      const { results, rows } = await ledger.createTransfersWith(
        [{ id, debitAccountId: debit, creditAccountId: credit, amount: 2n, ledger: 1, code: 1 }],
        { statement: () => ({ text: "SELECT txid_current()::text AS tx", params: [] }) },
      );
      expect(results.map((result) => result.status)).toEqual(["created"]);
      expect(rows).toHaveLength(1);
      expect(counts.transactions).toBe(1);
      expect(counts.statements).toHaveLength(2);
      expect(counts.statements[0]).toBe("SELECT txid_current()::text AS tx");
    }
    const [debited] = await ledger.lookupAccounts([debit]);
    expect(debited!.debitsPosted).toBe(7n); // 1 + 3 × 2: every lone batch applied once
  });
});
