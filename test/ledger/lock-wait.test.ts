// A locked batch that waits out a lock another process holds: the server gives up its statement (57014 query_canceled
// at the statement timeout, or 55P03 lock_not_available at a lock_timeout, retried first). The database is busy, no
// caller is to blame: every caller of the batch hears the store failure at once, after one wait (or one per retry),
// rather than the batch being run again each job alone (each job waiting out the timeout again: N timeouts, with the
// clock locked by this writer between them). Callers retry with the same ids once the lock is gone; nothing of the
// batch was written. Held by a second connection:
// - the ledger's clock row (another gateway process's batch in the middle of its write);
// - the table the callers' statements written alongside insert into (every caller's statement waits: blaming the one
//   that timed out and writing the others again would wait once per caller).
// Pipelined (the default depth), the same: the batches in flight wait for the clock one after another, and once the
// server gives up the first one's wait, every failed batch's callers hear it, rather than each batch being run again,
// locked, waiting out the timeout once more (writer-loop.ts drain). But a 57014 of one caller's own statement written
// alongside is no shared lock: the batches behind it, which gave up their turn, are run again, locked, and commit.
import { performance } from "node:perf_hooks";
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { type Db, openPostgres, type Statement } from "../../gateway/db/index.ts";
import { AlongsideStatementError, LedgerStoreError } from "../../gateway/ledger/errors.ts";
import { idToUuid } from "../../gateway/ledger/id.ts";
import {
  createLedger,
  defaultLedgerLimits,
  type Ledger,
  type LedgerLimits,
} from "../../gateway/ledger/index.ts";
import { noteStatements } from "../support/recording-db.ts";
import { ledgerDatabase, transfer, twoAccounts } from "./two-accounts.ts";

/** Short, so that N of them would show; ample for the ledger's statements on a busy (CI) machine. */
const statementTimeoutMs = 500;
/** Callers in the one batch: N timeouts before the fix. */
const callerCount = 6;
const clockLock = "FROM ledger_clock WHERE singleton FOR UPDATE";
/** The pipeline's default depth: a pool of one connection more lets the ledger use all of it. */
const pipelineDepth = defaultLedgerLimits.pipelineDepthMax;

let url: string;
let direct: Db;
let holder: pg.Client | undefined;
let db: Db | undefined;
let ledger: Ledger | undefined;
/** The statements the ledger sent (full text). */
let sent: string[];

beforeAll(async () => {
  ({ url, direct } = await ledgerDatabase(inject("postgresUrl"), "lockwait"));
  const setup = createLedger({ db: direct, limits: { pipelineDepthMax: 0, expiryIntervalMs: 0 } });
  await setup.createAccounts(twoAccounts);
  await setup.close();
});

afterEach(async () => {
  await holder?.end();
  await ledger?.close();
  await db?.close();
  holder = undefined;
  ledger = undefined;
  db = undefined;
});

afterAll(async () => {
  await direct?.close();
});

/**
 * A ledger whose batches all run locked (one batch: every request queued) unless `limits` say otherwise, on a pool
 * with a short statement timeout, of a connection more than the pipeline's depth; `poolUrl` may carry session settings.
 */
function openLedger(limits: Partial<LedgerLimits> = {}, poolUrl = url): Ledger {
  sent = [];
  const poolSizeMax = Math.max(limits.pipelineDepthMax ?? 0, 1) + 1;
  const pool = openPostgres({ url: poolUrl, poolSizeMax, statementTimeoutMs });
  db = noteStatements(pool, (texts) => sent.push(...texts));
  ledger = createLedger({ db, limits: { pipelineDepthMax: 0, expiryIntervalMs: 0, ...limits } });
  return ledger;
}

/** A second connection, in a transaction that has run `statements` (and holds their locks until ROLLBACK). */
async function hold(...statements: string[]): Promise<pg.Client> {
  holder = new pg.Client({ connectionString: url });
  await holder.connect();
  await holder.query("BEGIN");
  for (const statement of statements) await holder.query(statement);
  return holder;
}

const insertKey = (key: string): Statement => ({
  text: "INSERT INTO caller_keys (key) VALUES ($1) RETURNING key",
  params: [key],
});
const idsFrom = (first: bigint) => Array.from({ length: callerCount }, (_, i) => first + BigInt(i));

/** Every caller's request at once (one batch), each with its statement written alongside; and how long it took. */
async function submit(ledger: Ledger, ids: readonly bigint[]) {
  const started = performance.now();
  const settled = await Promise.allSettled(
    ids.map((id) => ledger.createTransfersWith([transfer(id)], { statement: () => insertKey(`k${id}`) })),
  );
  return { settled, elapsedMs: performance.now() - started };
}

/** The store failure each caller hears: the server's given-up wait (`sqlState`), blaming no caller's statement. */
function expectBusyFailure(settled: PromiseSettledResult<unknown>, sqlState: string): void {
  expect(settled.status).toBe("rejected");
  const reason = (settled as PromiseRejectedResult).reason;
  expect(reason).not.toBeInstanceOf(AlongsideStatementError);
  expect(reason).toBeInstanceOf(LedgerStoreError);
  expect((reason as LedgerStoreError).sqlState).toBe(sqlState);
}

async function storedKeys(ids: readonly bigint[]): Promise<string[]> {
  const rows = await direct.query<{ key: string }>(
    "SELECT key FROM caller_keys WHERE key = ANY($1::text[]) ORDER BY key",
    [`{${ids.map((id) => `k${id}`).join(",")}}`],
  );
  return rows.map((r) => r.key);
}

async function storedTransferCount(ids: readonly bigint[]): Promise<number> {
  const rows = await direct.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM ledger_transfers WHERE id = ANY($1::uuid[])",
    [`{${ids.map(idToUuid).join(",")}}`],
  );
  return rows[0]!.n;
}

/** Nothing of the batch is in; once the lock is gone, the callers' retry with the same ids writes it all. */
async function expectRetrySucceeds(ledger: Ledger, ids: readonly bigint[]): Promise<void> {
  expect(await storedKeys(ids)).toEqual([]);
  expect(await storedTransferCount(ids)).toBe(0);
  const retried = await submit(ledger, ids);
  expect(
    retried.settled.map((one) =>
      one.status === "fulfilled" ? one.value.results[0]!.status : String(one.reason),
    ),
  ).toEqual(ids.map(() => "created"));
  expect(await storedKeys(ids)).toEqual(ids.map((id) => `k${id}`).sort());
  expect(await storedTransferCount(ids)).toBe(ids.length);
}

describe("a locked batch whose wait for a lock the server gives up", () => {
  // The table: SHARE blocks every INSERT, so each caller's statement would wait out the timeout in turn, and no
  // caller is to blame.
  it.each([
    ["the clock row another connection holds", `SELECT token ${clockLock}`, 100n],
    ["the table every caller's statement inserts into", "LOCK TABLE caller_keys IN SHARE MODE", 200n],
  ])(
    "on %s: every caller hears the store failure after one timeout, not one per caller",
    async (_, lock, first) => {
      const ledger = openLedger();
      const ids = idsFrom(first);
      const held = await hold(lock);
      const { settled, elapsedMs } = await submit(ledger, ids);
      for (const one of settled) expectBusyFailure(one, "57014");
      // One wait: the batch locked the clock once and was not run again, each job alone.
      expect(sent.filter((text) => text.includes(clockLock))).toHaveLength(1);
      expect(elapsedMs).toBeLessThan(3 * statementTimeoutMs);
      await held.query("ROLLBACK");
      await expectRetrySucceeds(ledger, ids);
    },
  );

  it("with a lock_timeout (55P03): retried up to retryAttemptsMax, then every caller hears it, not each job alone", async () => {
    const lockTimeoutMs = 150;
    const retryAttemptsMax = 2;
    const withLockTimeout = new URL(url);
    withLockTimeout.searchParams.set("options", `-c lock_timeout=${lockTimeoutMs}`);
    const ledger = openLedger({ retryAttemptsMax }, withLockTimeout.toString());
    const ids = idsFrom(300n);
    const held = await hold(`SELECT token ${clockLock}`);
    const { settled } = await submit(ledger, ids);
    for (const one of settled) expectBusyFailure(one, "55P03");
    // The batch's own attempts only: each job alone would have locked the clock retryAttemptsMax times more.
    expect(sent.filter((text) => text.includes(clockLock))).toHaveLength(retryAttemptsMax);
    await held.query("ROLLBACK");
    await expectRetrySucceeds(ledger, ids);
  });
});

describe("pipelined batches whose wait for the clock the server gives up", () => {
  // The first batch in flight waits for the clock another connection holds, until the server gives its statement up
  // (57014); the ones behind it wait for their turn and give it up (ClaimTurnError: claimWaitMaxMs below the
  // statement timeout), or each gets it once the one before has failed and then waits for the clock itself, as long
  // again (57014): one timeout, or one per batch in flight.
  it.each([
    { behind: "gives up its turn", claimWaitMaxMs: statementTimeoutMs / 5, timeouts: 1, ownFailure: false },
    {
      behind: "waits out a timeout of its own",
      claimWaitMaxMs: 4 * statementTimeoutMs,
      timeouts: pipelineDepth,
      ownFailure: true,
    },
  ])("the batch behind $behind: every caller hears the store failure, no batch is run again", async (c) => {
    const ledger = openLedger({ pipelineDepthMax: pipelineDepth, claimWaitMaxMs: c.claimWaitMaxMs });
    const first = c.claimWaitMaxMs < statementTimeoutMs ? 400n : 500n;
    await commitOne(ledger, first);
    const ids = idsFrom(first + 1n);
    const held = await hold(`SELECT token ${clockLock}`);
    sent = [];
    const { settled, elapsedMs } = await submit(ledger, ids);
    for (const one of settled) expectBusyFailure(one, "57014");
    // The last caller's batch went behind the first: having given up its turn, it hears the first one's failure,
    // saying so.
    const lastDetails = ((settled.at(-1) as PromiseRejectedResult).reason as LedgerStoreError).details;
    expect(lastDetails?.includes("another batch in flight")).toBe(!c.ownFailure);
    expectPipelined();
    // A batch behind another sends its apply statement right behind its clock lock (pipeline mode): no wait of its
    // own, it runs only once the lock is held.
    const clockWaits = sent.filter(
      (text) => text.includes("ledger_clock") && !text.trimStart().startsWith("WITH clock AS"),
    );
    // The first batch was pipelined (not locked: no clock lock before its write), or this tests nothing.
    expect(clockWaits[0]).not.toContain(clockLock);
    // At most one wait per batch in flight: none was run again, locked, to wait for the clock once more (the old
    // drain ran each failed batch again: 3 and 4 waits at depth 2).
    expect(clockWaits.length).toBeLessThanOrEqual(pipelineDepth);
    expect(elapsedMs).toBeLessThan(c.timeouts * statementTimeoutMs + 1000);
    await held.query("ROLLBACK");
    await expectRetrySucceeds(ledger, ids);
  });

  // The clock is free; the first caller's statement written alongside runs past the statement timeout on its own
  // (slow, or waiting on a row its application holds elsewhere). Its batch, the first in flight, never takes the
  // clock; the batches behind it give up their turn (ClaimTurnError). That 57014 is no shared lock: those batches
  // are run again, locked, and commit, while the first batch's callers hear the store failure (as a locked batch's
  // would: runLocked rejects a batch whose statement written alongside timed out, blaming no caller).
  it("one caller's statement written alongside times out on its own: the batches behind it run again and commit", async () => {
    const ledger = openLedger({ pipelineDepthMax: pipelineDepth, claimWaitMaxMs: statementTimeoutMs / 5 });
    const first = 600n;
    await commitOne(ledger, first);
    const ids = idsFrom(first + 1n);
    const slow = ids[0]!;
    const sleep: Statement = { text: `SELECT pg_sleep(${(2 * statementTimeoutMs) / 1000})`, params: [] };
    sent = [];
    const settled = await Promise.allSettled(
      ids.map((id) =>
        ledger.createTransfersWith([transfer(id)], {
          statement: () => (id === slow ? sleep : insertKey(`k${id}`)),
        }),
      ),
    );
    expectPipelined();
    // The first batch (the slow caller's) is rejected whole; every batch behind it commits.
    const statuses = settled.map((one) =>
      one.status === "fulfilled" ? one.value.results[0]!.status : "rejected",
    );
    const firstBatch = Math.max(statuses.indexOf("created"), 1);
    expect(statuses).toEqual(ids.map((_, i) => (i < firstBatch ? "rejected" : "created")));
    for (const one of settled.slice(0, firstBatch)) expectBusyFailure(one, "57014");
    const committed = ids.slice(firstBatch);
    expect(await storedKeys(ids)).toEqual(committed.map((id) => `k${id}`).sort());
    expect(await storedTransferCount(ids)).toBe(committed.length);
    // A caller's own slow statement is no reason to stay locked (it would run holding the clock): the next batch,
    // alone, is written without the clock's lock (writeBatchAlone), not under it.
    sent = [];
    await commitOne(ledger, first + 100n);
    expect(sent.filter((text) => text.includes(clockLock))).toEqual([]);
  });
});

/** One batch committed: the writer knows the clock's token, and pipelines from now on. */
async function commitOne(ledger: Ledger, id: bigint): Promise<void> {
  expect((await ledger.createTransfers([transfer(id)]))[0]!.status).toBe("created");
}

/** A batch went behind another one in flight (writeBatchClaimFirst: its transfers inserted on their own). */
function expectPipelined(): void {
  expect(sent.some((text) => text.trimStart().startsWith("INSERT INTO ledger_transfers"))).toBe(true);
}
