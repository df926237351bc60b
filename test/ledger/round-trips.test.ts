// What a lone batch costs on PostgreSQL, in statements: a payment that arrives when nothing else is being written
// waits for every round trip its batch makes (issue #19: single-postgres against a bare commit). With no batch in
// flight there is no commit to overlap, so the batch is the callers' statements and one of its own (transfers, clock,
// balances), in one transaction — not the pipelined four (insert, callers', clock lock, balances). And the statements
// of a transaction travel together (pipeline mode): a lone batch's go before the first of them is answered, and a
// batch behind another sends its balances right behind its clock lock, so that the next batch's turn on the server
// follows this one's commit without a round trip to the gateway in between.
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { Db, Row, Sql } from "../../core/index.ts";
import { migrate, openPostgres } from "../../gateway/db/index.ts";
import { createLedger, type Ledger, ledgerMigrations } from "../../gateway/ledger/index.ts";
import { createTestDatabase } from "../support/postgres.ts";
import { transfer } from "./two-accounts.ts"; // between the same two accounts as below (1 and 2)

/** A statement of a transaction sent, or its answer come back (`n`: its place in the transaction). */
type StatementEvent = { tx: number; n: number; what: "sent" | "answered" | "failed"; text: string };

/** The database, counting the transactions opened and the statements run inside them. */
function counting(db: Db) {
  const counts = { transactions: 0, statements: [] as string[], events: [] as StatementEvent[] };
  const wrapped: Db = {
    kind: db.kind,
    connectionsMax: db.connectionsMax,
    query: (text, params) => db.query(text, params),
    queryAll: (statements) => db.queryAll(statements),
    exec: (script) => db.exec(script),
    session: (fn) => db.session(fn),
    close: () => db.close(),
    transaction: (fn) =>
      db.transaction((tx) => {
        counts.transactions += 1;
        const t = counts.transactions;
        let sentCount = 0;
        const countingTx: Sql = {
          query: <R extends Row>(text: string, params?: readonly unknown[]) => {
            const n = sentCount++;
            counts.statements.push(text);
            counts.events.push({ tx: t, n, what: "sent", text });
            const answer = tx.query<R>(text, params);
            // Registered before the caller's own handlers: noted as soon as the answer is in.
            answer.then(
              () => counts.events.push({ tx: t, n, what: "answered", text }),
              () => counts.events.push({ tx: t, n, what: "failed", text }),
            );
            return answer;
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
    const [before] = await ledger.lookupAccounts([debit]); // the file's other tests move the same accounts
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
    expect(debited!.debitsPosted - before!.debitsPosted).toBe(6n); // 3 × 2: every lone batch applied once
  });
});

/** The events of transaction `tx` as "sent n" / "answered n". */
const eventsOf = (events: readonly StatementEvent[], tx: number) =>
  events.filter((event) => event.tx === tx).map((event) => `${event.what} ${event.n}`);

describe("a batch's statements on PostgreSQL (pipeline mode)", () => {
  it("a lone batch sends its statements together: the second goes before the first is answered", async () => {
    counts.events = [];
    counts.transactions = 0;
    await ledger.createTransfersWith([transfer(20n)], {
      statement: () => ({ text: "SELECT txid_current()::text AS tx", params: [] }),
    });
    // Before: sent 0, answered 0, sent 1, answered 1 (a round trip each, and one more for the COMMIT).
    expect(eventsOf(counts.events, 1)).toEqual(["sent 0", "sent 1", "answered 0", "answered 1"]);
  });

  it("a batch behind another sends its balances right behind its clock lock, before the lock is answered", async () => {
    counts.events = [];
    counts.transactions = 0;
    // Four callers at once: two batches of two (the queue split over the pipeline's depth); the second goes behind
    // the first (its transfers inserted on their own, its clock locked once the first has it).
    const results = await Promise.all(
      [30n, 31n, 32n, 33n].map((id) =>
        ledger.createTransfersWith([transfer(id)], {
          statement: () => ({ text: "SELECT txid_current()::text AS tx", params: [] }),
        }),
      ),
    );
    expect(results.map(({ results }) => results[0]!.status)).toEqual([
      "created",
      "created",
      "created",
      "created",
    ]);
    const locking = counts.events.find((event) => event.what === "sent" && event.text.includes("FOR UPDATE"));
    expect(locking).toBeDefined(); // a batch went behind another, or this tests nothing
    const events = eventsOf(counts.events, locking!.tx);
    const lock = locking!.n;
    // The balances (the statement after the lock) are sent before the lock's answer: before, a round trip apart.
    expect(events.indexOf(`sent ${lock + 1}`)).toBeGreaterThan(-1);
    expect(events.indexOf(`sent ${lock + 1}`)).toBeLessThan(events.indexOf(`answered ${lock}`));
  });
});
