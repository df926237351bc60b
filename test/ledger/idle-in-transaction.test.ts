// A client lost in the middle of a transaction (a partition: its bytes dropped, no socket closed) leaves the
// transaction open on the server, which waits for its next statement and sends nothing: without a bound, the
// transaction's locks — the ledger's clock among them — stay held until the server's TCP keepalive gives up (two
// hours by default). The pool's sessions carry idle_in_transaction_session_timeout (gateway/db/index.ts,
// idleInTransactionTimeoutMsOf): the server ends such a session, and another connection gets the clock.
// - A transaction pausing between statements as long as a pipelined batch may wait for its turn (claimWaitMaxMs, plus
//   room) commits: the bound is above the gaps of an honest transaction, even under a small statement timeout.
// - Through a TCP proxy that goes silent (test/support/silent-proxy.ts) after the pool's transaction locked the clock,
//   a direct connection waiting for the clock gets it about that timeout after the lost transaction's last statement.
import { performance } from "node:perf_hooks";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import {
  type Db,
  DbQueryTimeoutError,
  idleInTransactionTimeoutMsOf,
  migrate,
  openPostgres,
  queryTimeoutMarginMs,
} from "../../gateway/db/index.ts";
import { defaultLedgerLimits, ledgerMigrations } from "../../gateway/ledger/index.ts";
import { createTestDatabase } from "../support/postgres.ts";
import { type SilentProxy, startSilentProxy } from "../support/silent-proxy.ts";

/** Small: the timeout under test is then its floor, idleInTransactionTimeoutMinMs. */
const statementTimeoutMs = 1_000;
const idleTimeoutMs = idleInTransactionTimeoutMsOf(statementTimeoutMs);
/** When the pool gives up a statement and closes its socket (gateway/db/index.ts): well before idleTimeoutMs. */
const queryTimeoutMs = statementTimeoutMs + queryTimeoutMarginMs;
/** How late past the idle timeout the clock may come free on a busy (CI) machine. */
const slackMs = 3_000;
const clockLock = "SELECT token FROM ledger_clock WHERE singleton FOR UPDATE";

let url: string;
let direct: Db;
let proxy: SilentProxy;

beforeAll(async () => {
  url = await createTestDatabase(inject("postgresUrl"), "idleintx");
  direct = openPostgres({ url, poolSizeMax: 2, statementTimeoutMs: 10_000 });
  await migrate(direct, [ledgerMigrations]);
  proxy = await startSilentProxy(url);
});

afterAll(async () => {
  await proxy?.close();
  await direct?.close();
});

describe("a pool's session idle in a transaction", () => {
  it("is bounded by the server: idle_in_transaction_session_timeout is set from the statement timeout", async () => {
    const pool = openPostgres({ url, poolSizeMax: 1, statementTimeoutMs });
    try {
      const rows = await pool.query<{ setting: string }>(
        "SELECT setting FROM pg_settings WHERE name = 'idle_in_transaction_session_timeout'",
      );
      expect(rows).toEqual([{ setting: String(idleTimeoutMs) }]);
    } finally {
      await pool.close();
    }
  });

  it("pausing between statements as long as a pipelined batch may wait for its turn: it commits", async () => {
    const pauseMs = defaultLedgerLimits.claimWaitMaxMs + 1_000;
    expect(pauseMs).toBeLessThan(idleTimeoutMs);
    const pool = openPostgres({ url, poolSizeMax: 1, statementTimeoutMs });
    try {
      const token = await pool.transaction(async (tx) => {
        await tx.query(clockLock);
        await new Promise((resolve) => setTimeout(resolve, pauseMs));
        const rows = await tx.query<{ token: bigint }>(clockLock);
        return rows[0]!.token;
      });
      expect(typeof token).toBe("bigint");
    } finally {
      await pool.close();
    }
  });

  it("lost mid-transaction holding the clock: the server ends it, and another connection gets the clock", async () => {
    const pool = openPostgres({ url: proxy.url, poolSizeMax: 1, statementTimeoutMs });
    // Waits for the clock longer than the bound and its slack: without the bound, it would time out instead.
    const waiter = new pg.Client({
      connectionString: url,
      statement_timeout: idleTimeoutMs + 2 * slackMs,
    });
    await waiter.connect();
    try {
      let lockedAt = 0;
      const lost = pool.transaction(async (tx) => {
        await tx.query(clockLock);
        lockedAt = performance.now(); // the server's session is idle in its transaction from about now
        proxy.swallow(); // a partition: neither this statement nor any answer passes, no socket is closed
        await tx.query("SELECT 1");
      });
      const settled = Promise.allSettled([lost]);
      await until(() => lockedAt > 0, "the pool's transaction to lock the clock");
      await waiter.query(clockLock.replace("SELECT", "BEGIN; SELECT"));
      const waitedMs = performance.now() - lockedAt;
      await waiter.query("ROLLBACK");
      // The pool gave up on its statement long before (its query timeout), and closed its socket; the server, which
      // never heard of that, ended the session at the idle timeout.
      const [outcome] = await settled;
      expect(outcome.status).toBe("rejected");
      expect((outcome as PromiseRejectedResult).reason).toBeInstanceOf(DbQueryTimeoutError);
      // Not the pool's giving up (queryTimeoutMs) that freed the clock, but the server: a bound below idleTimeoutMs,
      // as lockedAt is stamped once the answer has crossed the proxy and the event loop, after the server's idle
      // clock started (on a loaded machine, by more than a few hundred ms).
      expect(queryTimeoutMs + 500).toBeLessThan(idleTimeoutMs);
      expect(waitedMs).toBeGreaterThan(queryTimeoutMs + 500);
      expect(waitedMs).toBeLessThan(idleTimeoutMs + slackMs);
    } finally {
      proxy.pass();
      await waiter.end();
      await pool.close();
    }
  });
});

/** Waits for `condition`, at most `timeoutMs`; then fails saying what it waited for. */
async function until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`waited ${timeoutMs} ms for ${what}, in vain`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
