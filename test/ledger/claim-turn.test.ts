// A wait PostgreSQL cannot see. A pipelined batch (c2) has inserted its transfers and waits, in this process, for the
// batch before it (c1) to take the clock. c1 waits for the clock, which another writer's locked batch (L) holds; L
// inserts a transfer id c2 inserted too, and so waits for c2's transaction. Three waits in a cycle, one of them in
// JavaScript: PostgreSQL's deadlock detector never fires, and without a bound it lasts until a statement timeout.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Db } from "../../gateway/db/index.ts";
import { ClaimTurnError } from "../../gateway/ledger/errors.ts";
import { idToUuid } from "../../gateway/ledger/id.ts";
import { createLedger, ledgerId, type Transfer } from "../../gateway/ledger/index.ts";
import { lockClock } from "../../gateway/ledger/store.ts";
import { type BatchWrites, writeBatch, writeBatchClaimFirst } from "../../gateway/ledger/store-batch.ts";
import { balanceRows, transferRows } from "../../gateway/ledger/store-params.ts";
import { openStore } from "./stores.ts";

// One piece by nature: a vitest suite, whose tests share the store opened in its beforeAll; each test is short.
describe("a pipelined batch waiting for its turn on PostgreSQL", () => {
  let db: Db;
  const debit = ledgerId();
  const credit = ledgerId();

  beforeAll(async () => {
    db = await openStore("postgres", { poolSizeMax: 4 });
    const ledger = createLedger({ db, limits: { expiryIntervalMs: 0 } });
    const created = await ledger.createAccounts([
      { id: debit, ledger: 1, code: 1 },
      { id: credit, ledger: 1, code: 1 },
    ]);
    expect(created.map((r) => r.status)).toEqual(["created", "created"]);
    await ledger.close();
  });
  afterAll(async () => {
    await db.close();
  });

  const writesOf = (transfer: Transfer, expectedToken: bigint): BatchWrites => ({
    transfers: transferRows([transfer]),
    expectedToken,
    clock: { timestampLast: transfer.timestamp, token: 7n },
    balances: balanceRows([]),
    pendingOpened: [],
    pendingResolved: [],
    history: [],
    transferTimestampMax: transfer.timestamp,
  });

  it("gives way after waitMaxMs, so the cycle through another writer's locked batch breaks", async () => {
    const transfer: Transfer = {
      id: ledgerId(),
      debitAccountId: debit,
      creditAccountId: credit,
      amount: 5n,
      ledger: 1,
      code: 1,
      flags: 0,
      pendingId: 0n,
      timeout: 0,
      userData128: 0n,
      userData64: 0n,
      userData32: 0,
      timestamp: BigInt(Date.now()) * 1_000_000n,
      evidence: null,
    };
    let lHoldsClock: () => void = () => {};
    const clockTaken = new Promise<void>((resolve) => {
      lHoldsClock = resolve;
    });
    let c2Inserted: () => void = () => {};
    const inserted = new Promise<void>((resolve) => {
      c2Inserted = resolve;
    });

    // L: another writer's locked batch: the clock first, then the same transfer c2 has inserted.
    const locked = db.transaction(async (tx) => {
      const clock = await lockClock(tx);
      lHoldsClock();
      await inserted;
      await writeBatch(tx, writesOf(transfer, clock.token));
    });
    await clockTaken;
    // c1: the batch before c2, waiting for the clock L holds.
    const c1Claimed = db.transaction(async (tx) => {
      await lockClock(tx);
    });
    // c2: inserts, then waits for c1 to have the clock.
    const startedAt = performance.now();
    const c2 = writeBatchClaimFirst(
      db,
      writesOf(transfer, 0n),
      { after: c1Claimed, claimed: () => undefined, waitMaxMs: 300 },
      [],
    );
    const c2Outcome = c2.then(
      () => "committed",
      (error: unknown) => error,
    );
    // Once c2 sits idle in its transaction after the insert, L inserts the same id and waits for c2.
    for (;;) {
      const [row] = await db.query<{ waiting: bigint }>(
        `SELECT count(*)::int8 AS waiting FROM pg_stat_activity
          WHERE datname = current_database() AND state = 'idle in transaction' AND query LIKE 'INSERT INTO ledger_transfers%'`,
      );
      if ((row?.waiting ?? 0n) > 0n) break;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    c2Inserted();

    const outcome = await c2Outcome;
    expect(outcome).toBeInstanceOf(ClaimTurnError);
    expect(performance.now() - startedAt).toBeGreaterThanOrEqual(290);
    // c2 rolled back: L's insert goes through and commits, then c1 gets the clock.
    await locked;
    await c1Claimed;
    const rows = await db.query<{ amount: bigint }>("SELECT amount FROM ledger_transfers WHERE id = $1", [
      idToUuid(transfer.id),
    ]);
    expect(rows).toEqual([{ amount: 5n }]);
  }, 20_000);
});
