// A batch whose PostgreSQL connection goes silent (a half-open socket, a partition, a frozen server): the client gives
// up after the statement timeout + a margin (DbQueryTimeoutError, gateway/db/index.ts). That is the connection's
// fault, not any caller's: between the ledger's pool and a private PostgreSQL sits a TCP proxy
// (test/support/silent-proxy.ts) that silences the one connection over which given bytes are sent.
// - Silent at a caller's statement written alongside: every caller of the batch hears a store failure, none an
//   AlongsideStatementError blaming its own statement; nothing is written, and the callers' retry succeeds.
// - The same in a pipelined batch sent behind another (writeBatchClaimFirst): its callers hear the store failure and
//   it is not run again, locked (its abandoned transaction would still hold their rows: the rerun would wait out the
//   server's statement timeout and blame a caller).
// - Reset at a caller's statement (before any COMMIT: the server rolls back): no caller is blamed; the jobs run again,
//   each alone, and commit.
// - Silent once the COMMIT has reached the server (it commits; only its answer is lost), or its connection reset
//   then, pipelined and locked: the callers hear that the outcome is unknown, and the batch is not run again (which
//   would refuse callers whose statements did commit: their keys are taken by their own rows).
// - A transaction whose connection is lost mid-statement rejects; the client's 'error' event is logged, not thrown.
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import type { Logger } from "../../core/logger.ts";
import {
  type Db,
  DbCommitOutcomeUnknownError,
  openPostgres,
  type Row,
  type Statement,
} from "../../gateway/db/index.ts";
import {
  AlongsideStatementError,
  commitOutcomeUnknown,
  connectionWentSilent,
  LedgerStoreError,
} from "../../gateway/ledger/errors.ts";
import { idToUuid } from "../../gateway/ledger/id.ts";
import { createLedger, type Ledger } from "../../gateway/ledger/index.ts";
import { noteStatements } from "../support/recording-db.ts";
import { type SilentProxy, startSilentProxy } from "../support/silent-proxy.ts";
import { ledgerDatabase, transfer, twoAccounts } from "./two-accounts.ts";

/** Small, so that a silence is quick to wait out; ample for the ledger's statements on a busy (CI) machine. */
const statementTimeoutMs = 2_000;

let url: string;
let direct: Db;
let proxy: SilentProxy;
let db: Db | undefined;
let ledger: Ledger | undefined;
/** The statements the ledger sent (full text). */
let sent: string[];

beforeAll(async () => {
  ({ url, direct } = await ledgerDatabase(inject("postgresUrl"), "silentledger"));
  proxy = await startSilentProxy(url);
});

afterEach(async () => {
  proxy.hangUpSilenced();
  await ledger?.close();
  await db?.close();
  ledger = undefined;
  db = undefined;
});

afterAll(async () => {
  await proxy?.close();
  await direct?.close();
});

/**
 * A ledger over the proxy (expiry off: its batches would send statements of their own). Its pool has 2 connections
 * unless told: the writer keeps one for reads, so a pipelined writer then has depth 1 (every batch writeBatchAlone);
 * with 3, depth 2, a batch sent behind another in flight goes writeBatchClaimFirst.
 */
async function openLedger(pipelineDepthMax: number, poolSizeMax = 2): Promise<Ledger> {
  sent = [];
  const pool = openPostgres({ url: proxy.url, poolSizeMax, statementTimeoutMs });
  db = noteStatements(pool, (texts) => sent.push(...texts));
  ledger = createLedger({ db, limits: { pipelineDepthMax, expiryIntervalMs: 0 } });
  await ledger.createAccounts(twoAccounts);
  return ledger;
}

/** A caller's statement written alongside: its key, inserted (`marked`: with a comment the proxy watches for). */
const insertKey = (key: string, marked = false): Statement => ({
  text: `INSERT INTO caller_keys (key) VALUES ($1) RETURNING key${marked ? " /* goes silent */" : ""}`,
  params: [key],
});

async function storedTransferCount(ids: readonly bigint[]): Promise<number> {
  const rows = await direct.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM ledger_transfers WHERE id = ANY($1::uuid[])",
    [`{${ids.map(idToUuid).join(",")}}`],
  );
  return rows[0]!.n;
}

async function storedKeys(): Promise<string[]> {
  return (await direct.query<{ key: string }>("SELECT key FROM caller_keys ORDER BY key")).map((r) => r.key);
}

/** The store failure every caller hears: the connection's, not its statement's. */
function expectSilentStoreFailure(settled: PromiseSettledResult<unknown>): unknown {
  const reason = expectStoreFailure(settled);
  expect(connectionWentSilent(reason)).toBe(true);
  return reason;
}

/** A store failure, blaming no caller's statement. */
function expectStoreFailure(settled: PromiseSettledResult<unknown>): unknown {
  expect(settled.status).toBe("rejected");
  const reason = (settled as PromiseRejectedResult).reason;
  expect(reason).not.toBeInstanceOf(AlongsideStatementError);
  expect(reason).toBeInstanceOf(LedgerStoreError);
  return reason;
}

/** The statements sent since `before` that contain `text`. */
const sentSince = (before: number, text: string) => sent.slice(before).filter((sql) => sql.includes(text));
const clockLock = "FROM ledger_clock WHERE singleton FOR UPDATE";

/** Waits for `condition`, at most `timeoutMs`; then fails saying what it waited for. */
async function until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`waited ${timeoutMs} ms for ${what}, in vain`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe("a ledger batch whose connection goes silent", () => {
  it("at a caller's statement: every caller hears a store failure, none is blamed; nothing is written", async () => {
    const ledger = await openLedger(0); // locked: the three requests below are one batch
    await direct.query("DELETE FROM caller_keys");
    const before = sent.length;
    proxy.silenceAt("goes silent");
    const settled = await Promise.allSettled([
      ledger.createTransfersWith([transfer(100n)], { statement: () => insertKey("k100") }),
      ledger.createTransfersWith([transfer(101n)], { statement: () => insertKey("k101", true) }),
      ledger.createTransfersWith([transfer(102n)], { statement: () => insertKey("k102") }),
    ]);
    expect(proxy.silenced()).toBe(true);
    for (const one of settled) expect(commitOutcomeUnknown(expectSilentStoreFailure(one))).toBe(false);
    // One attempt, not split to find a culprit: the batch's clock lock was taken once.
    const clockLocks = sent
      .slice(before)
      .filter((text) => text.includes("FROM ledger_clock WHERE singleton FOR UPDATE"));
    expect(clockLocks).toHaveLength(1);
    // No COMMIT was sent: nothing of the batch is in, and the callers' retry writes it all.
    proxy.hangUpSilenced(); // the server's TCP gives up at last: it rolls back, and the clock's lock goes
    expect(await storedKeys()).toEqual([]);
    expect(await storedTransferCount([100n, 101n, 102n])).toBe(0);
    const retried = await Promise.all(
      [100n, 101n, 102n].map((id) =>
        ledger.createTransfersWith([transfer(id)], { statement: () => insertKey(`k${id}`) }),
      ),
    );
    expect(retried.map((r) => r.results[0]!.status)).toEqual(["created", "created", "created"]);
    expect(await storedKeys()).toEqual(["k100", "k101", "k102"]);
  });

  it("reset at a caller's statement: no caller is blamed; the batch's jobs run again, each alone, and commit", async () => {
    const ledger = await openLedger(0); // locked: the three requests below are one batch
    await direct.query("DELETE FROM caller_keys");
    const before = sent.length;
    proxy.silenceAt("goes silent");
    const ids = [110n, 111n, 112n];
    const settling = Promise.allSettled(
      ids.map((id) =>
        ledger.createTransfersWith([transfer(id)], { statement: () => insertKey(`k${id}`, id === 111n) }),
      ),
    );
    // The marked statement never reached the server (no COMMIT was sent either): the reset rolls the batch back.
    await until(() => proxy.silenced(), "the marked statement");
    proxy.resetSilenced();
    const settled = await settling;
    // The connection's failure, not k111's caller's: before, that caller got AlongsideStatementError.
    for (const one of settled)
      if (one.status === "rejected") expect(one.reason).not.toBeInstanceOf(AlongsideStatementError);
    expect(settled.map((one) => one.status)).toEqual(["fulfilled", "fulfilled", "fulfilled"]);
    expect(
      settled.map(
        (one) => (one as PromiseFulfilledResult<{ results: { status: string }[] }>).value.results[0]!.status,
      ),
    ).toEqual(["created", "created", "created"]);
    // The batch once (reset), then each job alone on a connection of its own.
    expect(sentSince(before, clockLock)).toHaveLength(1 + ids.length);
    expect(await storedKeys()).toEqual(["k110", "k111", "k112"]);
    expect(await storedTransferCount(ids)).toBe(3);
  });

  it("reset at a caller's statement with the server gone: one job alone finds it, the rest hear its failure at once", async () => {
    const ledger = await openLedger(0); // locked: one batch
    await direct.query("DELETE FROM caller_keys");
    proxy.silenceAt("goes silent");
    const ids = [120n, 121n, 122n];
    const settling = Promise.allSettled(
      ids.map((id) =>
        ledger.createTransfersWith([transfer(id)], { statement: () => insertKey(`k${id}`, id === 121n) }),
      ),
    );
    await until(() => proxy.silenced(), "the marked statement");
    const connectionsBefore = proxy.connectionsMade();
    proxy.refuseNew(true); // the server goes down: every connection reset, a new one refused
    try {
      proxy.resetAll();
      const settled = await settling;
      for (const one of settled) {
        expect(one.status).toBe("rejected");
        expect((one as PromiseRejectedResult).reason).not.toBeInstanceOf(AlongsideStatementError);
      }
      // The first job alone tried a new connection (the pool may try once more for its own reasons); the other two
      // did not each wait for one of their own.
      expect(proxy.connectionsMade() - connectionsBefore).toBeLessThan(ids.length);
    } finally {
      proxy.refuseNew(false);
    }
    expect(await storedKeys()).toEqual([]);
    // Their retry, with the same ids, once the server is back.
    const retried = await Promise.all(
      ids.map((id) =>
        ledger.createTransfersWith([transfer(id)], { statement: () => insertKey(`k${id}`, false) }),
      ),
    );
    expect(retried.map((one) => one.results[0]!.status)).toEqual(["created", "created", "created"]);
  });

  it("at a caller's statement, pipelined behind another batch: its callers hear a store failure; not run again", async () => {
    const ledger = await openLedger(2, 3); // depth 2: the second batch is sent while the first is in flight
    await direct.query("DELETE FROM caller_keys");
    await ledger.createTransfers([transfer(400n)]); // a batch goes pipelined only behind one this writer saw commit
    const before = sent.length;
    proxy.silenceAt("goes silent");
    // Four callers at once: two batches of two (the queue split over the depth).
    const ids = [401n, 402n, 403n, 404n];
    const settled = await Promise.allSettled(
      ids.map((id) =>
        ledger.createTransfersWith([transfer(id)], { statement: () => insertKey(`k${id}`, id === 404n) }),
      ),
    );
    expect(proxy.silenced()).toBe(true);
    // The second batch went writeBatchClaimFirst (its transfers inserted on their own, before its callers' rows).
    expect(
      sentSince(before, "INSERT INTO ledger_transfers").some((sql) => sql.trimStart().startsWith("INSERT")),
    ).toBe(true);
    expect(settled.slice(0, 2).map((one) => one.status)).toEqual(["fulfilled", "fulfilled"]);
    for (const one of settled.slice(2))
      expect(commitOutcomeUnknown(expectSilentStoreFailure(one))).toBe(false);
    // Not run again, locked: the clock was never locked (its abandoned transaction still holds k403 and the
    // transfers, which a rerun would wait on until the server's statement timeout, and fail with that).
    expect(sentSince(before, clockLock)).toHaveLength(0);
    expect(sentSince(before, "INSERT INTO caller_keys")).toHaveLength(4);
    proxy.hangUpSilenced(); // the server rolls back the silent batch
    expect(await storedKeys()).toEqual(["k401", "k402"]);
    expect(await storedTransferCount(ids)).toBe(2);
    const retried = await Promise.all(
      [403n, 404n].map((id) =>
        ledger.createTransfersWith([transfer(id)], { statement: () => insertKey(`k${id}`) }),
      ),
    );
    expect(retried.map((r) => r.results[0]!.status)).toEqual(["created", "created"]);
    expect(await storedKeys()).toEqual(["k401", "k402", "k403", "k404"]);
  });

  for (const [path, depth, lost] of [
    ["pipelined", 2, "silent"],
    ["locked", 0, "silent"],
    ["pipelined", 2, "reset"],
    ["locked", 0, "reset"],
  ] as const) {
    it(`once its COMMIT reached the server (${path}, connection ${lost}): its callers hear the outcome is unknown, and it is not run again`, async () => {
      const ledger = await openLedger(depth);
      await direct.query("DELETE FROM caller_keys");
      // A batch committed as usual first (a batch goes pipelined only behind one this writer saw commit).
      const base = (depth === 0 ? 300n : 200n) + (lost === "reset" ? 500n : 0n);
      await ledger.createTransfers([transfer(base)]);
      const before = sent.length;
      proxy.silenceAt("COMMIT", { markerPasses: true });
      const ids = [base + 1n, base + 2n];
      const settling = Promise.allSettled(
        ids.map((id) => ledger.createTransfersWith([transfer(id)], { statement: () => insertKey(`k${id}`) })),
      );
      if (lost === "reset") {
        // The COMMIT reached the server, which answered it (committed; the answer dropped); then the connection resets
        // (pg: ECONNRESET).
        await until(() => proxy.silenced(), "the COMMIT");
        await until(() => proxy.silencedAnswered("COMMIT"), "the server's answer to the COMMIT");
        proxy.resetSilenced();
      }
      const settled = await settling;
      expect(proxy.silenced()).toBe(true);
      for (const one of settled) {
        const reason = lost === "silent" ? expectSilentStoreFailure(one) : expectStoreFailure(one);
        expect(commitOutcomeUnknown(reason)).toBe(true);
      }
      // The COMMIT was applied: the transfers and the callers' rows are in. Run again, the batch would have found
      // its transfers `exists` and its callers' keys taken, and refused those callers.
      expect(await storedKeys()).toEqual(ids.map((id) => `k${id}`));
      expect(await storedTransferCount(ids)).toBe(2);
      const written = sent.slice(before).filter((text) => text.includes("INSERT INTO caller_keys"));
      expect(written).toHaveLength(2); // each caller's statement written once: the batch was not run again
      // pipelined (depth 1 over 2 connections: writeBatchAlone): never locked, nor run again locked
      expect(sentSince(before, clockLock)).toHaveLength(depth === 0 ? 1 : 0);
      // The callers retry with the same ids: their transfers exist, and they choose no statement this time.
      const retried = await Promise.all(
        ids.map((id) =>
          ledger.createTransfersWith([transfer(id)], {
            statement: (results) => (results[0]!.status === "created" ? insertKey(`k${id}`) : null),
          }),
        ),
      );
      expect(retried.map((r): [string, Row[] | null] => [r.results[0]!.status, r.rows])).toEqual([
        ["exists", null],
        ["exists", null],
      ]);
    });
  }

  it("the proxy's 'answered' means the COMMIT's own answer, not one to a statement sent before it in its chunk", async () => {
    // The reset cases above reset once the server answered the COMMIT. The statements sent with it are answered
    // first, each flushed at its own Sync: taking any answer for the COMMIT's reset it before the server had read
    // the COMMIT, now and then on a busy machine, and the transaction rolled back (a flake seen in CI).
    await direct.query("DELETE FROM caller_keys");
    const pool = openPostgres({ url: proxy.url, poolSizeMax: 1, statementTimeoutMs, logger: warnLogger([]) });
    try {
      proxy.silenceAt("COMMIT", { markerPasses: true });
      const settled = Promise.allSettled([
        pool.transaction(async (tx) => {
          void tx.query("INSERT INTO caller_keys (key) VALUES ('kproxy')");
          void tx.query("SELECT pg_sleep(0.3)"); // the COMMIT behind it waits unread meanwhile
        }),
      ]);
      await until(() => proxy.silencedAnswered("INSERT 0 1"), "the INSERT's answer");
      expect(proxy.silencedAnswered("COMMIT")).toBe(false);
      await until(() => proxy.silencedAnswered("COMMIT"), "the COMMIT's answer");
      expect(await storedKeys()).toEqual(["kproxy"]);
      proxy.resetSilenced();
      const [outcome] = await settled;
      expect(outcome.status).toBe("rejected");
      expect((outcome as PromiseRejectedResult).reason).toBeInstanceOf(DbCommitOutcomeUnknownError);
    } finally {
      await pool.close();
    }
  });

  it("lost mid-transaction: the transaction rejects, the client's 'error' event is logged, nothing thrown uncaught", async () => {
    const warnings: string[] = [];
    const uncaught: unknown[] = [];
    const onUncaught = (error: unknown) => uncaught.push(error);
    process.on("uncaughtException", onUncaught);
    const pool = openPostgres({
      url: proxy.url,
      poolSizeMax: 1,
      statementTimeoutMs,
      logger: warnLogger(warnings),
    });
    try {
      proxy.silenceAt("/* lost */");
      const lost = pool.transaction(async (tx) => {
        await tx.query("SELECT 1");
        await tx.query("SELECT 2 /* lost */");
      });
      const settled = Promise.allSettled([lost]);
      await until(() => proxy.silenced(), "the marked statement");
      proxy.resetSilenced();
      const [outcome] = await settled;
      expect(outcome.status).toBe("rejected");
      // A reset: ECONNRESET, then the connection's end ("Connection terminated unexpectedly") if pg sees it first.
      expect(String((outcome as PromiseRejectedResult).reason)).toMatch(/ECONNRESET|Connection terminated/);
      await new Promise((resolve) => setTimeout(resolve, 50)); // any event emitted late
      expect(uncaught).toEqual([]);
      // pg emits 'error' for the reset and may again for the end it then sees: one warning or two, each the same.
      expect(warnings.length).toBeGreaterThanOrEqual(1);
      expect(warnings.length).toBeLessThanOrEqual(2);
      for (const warning of warnings) expect(warning).toContain("a connection in use was lost");
      // The pool closed that connection and serves on a new one.
      expect(await pool.query<{ n: number }>("SELECT 3 AS n")).toEqual([{ n: 3 }]);
    } finally {
      process.off("uncaughtException", onUncaught);
      await pool.close();
    }
  });
});

/** A logger keeping the messages of its warnings. */
function warnLogger(warnings: string[]): Logger {
  const ignore = () => undefined;
  const logger: Logger = {
    error: ignore,
    warn: (first: unknown, message?: string) => void warnings.push(message ?? String(first)),
    info: ignore,
    debug: ignore,
    child: () => logger,
  };
  return logger;
}
