// A PostgreSQL connection that goes silent (a half-open socket, a partition, a frozen server) must not park its
// callers forever. Between the pool and a private PostgreSQL sits a small TCP proxy that can swallow every byte in
// both directions without closing a socket. With it swallowing, a statement — on its own, inside a transaction, and
// under the authenticator's shared lookup of one key — rejects with DbQueryTimeoutError within the client-side bound
// (statement timeout + queryTimeoutMarginMs); once bytes pass again, the pool serves again on a fresh connection
// (the silent one was not handed back), and a later check of the same key looks it up afresh and succeeds.
import { performance } from "node:perf_hooks";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, inject, it } from "vitest";
import { gatewayMigrations } from "../../gateway/app.ts";
import {
  createLocalChangeBus,
  type Db,
  DbQueryTimeoutError,
  migrate,
  openPostgres,
  queryTimeoutMarginMs,
} from "../../gateway/db/index.ts";
import { ledgerMigrations } from "../../gateway/ledger/index.ts";
import { createApiKey, createAuthenticator, createTenant } from "../../gateway/tenants/index.ts";
import { buildBareServer } from "../support/bare-server.ts";
import { createTestDatabase } from "../support/postgres.ts";
import { recordStatements } from "../support/recording-db.ts";
import { type SilentProxy, startSilentProxy } from "../support/silent-proxy.ts";

/** Small, so that the bound is quick to wait out. */
const statementTimeoutMs = 200;
const queryTimeoutMs = statementTimeoutMs + queryTimeoutMarginMs;
/** Room for a busy 2-core machine (what a ROLLBACK waited out would add is checked by its bytes, not by time). */
const slackMs = queryTimeoutMs;
/** How long a test waits for an answer before it calls the statement parked. */
const parkedAfterMs = queryTimeoutMs * 4;
const tenant = { id: "ten_silent", name: "Silent" };

// ---- outcomes within a deadline

type Outcome<T> =
  | { kind: "answered"; value: T; elapsedMs: number }
  | { kind: "rejected"; error: unknown; elapsedMs: number }
  | { kind: "parked"; elapsedMs: number };

/** What `pending` came to within `waitMs`, timed from `startedAt`: "parked" if it had not settled by then. */
async function outcomeOf<T>(pending: Promise<T>, startedAt = performance.now()): Promise<Outcome<T>> {
  let timer: NodeJS.Timeout | undefined;
  const settled = await Promise.race([
    pending.then(
      (value) => ({ kind: "answered" as const, value }),
      (error: unknown) => ({ kind: "rejected" as const, error }),
    ),
    new Promise<{ kind: "parked" }>((resolve) => {
      timer = setTimeout(() => resolve({ kind: "parked" }), parkedAfterMs);
    }),
  ]);
  clearTimeout(timer);
  return { ...settled, elapsedMs: performance.now() - startedAt };
}

/**
 * A rejection with DbQueryTimeoutError, given by the client's own timer (the server hears nothing: its statement
 * timeout cannot answer), and within the bound.
 */
function expectTimedOutInBound(outcome: Outcome<unknown>): void {
  expect(outcome.kind).toBe("rejected");
  if (outcome.kind !== "rejected") return;
  expect(outcome.error).toBeInstanceOf(DbQueryTimeoutError);
  expect(outcome.elapsedMs).toBeGreaterThanOrEqual(queryTimeoutMs - 20);
  expect(outcome.elapsedMs).toBeLessThan(queryTimeoutMs + slackMs);
}

// ---- the tests

let direct: Db;
let proxy: SilentProxy;
let db: Db;
let statements: string[];

beforeAll(async () => {
  const url = await createTestDatabase(inject("postgresUrl"), "silent");
  direct = openPostgres({ url, poolSizeMax: 2, statementTimeoutMs: 10_000 });
  await migrate(direct, [ledgerMigrations, gatewayMigrations]);
  await createTenant(direct, tenant);
  proxy = await startSilentProxy(url);
});

beforeEach(() => {
  // One connection: whatever serves after a silence is a fresh one, or the silent one handed back.
  statements = [];
  db = recordStatements(openPostgres({ url: proxy.url, poolSizeMax: 1, statementTimeoutMs }), statements);
});

afterEach(async () => {
  proxy.pass();
  // Bounded: a pool with a statement parked for good (without a client-side bound) would never end.
  expect((await outcomeOf(db.close())).kind).toBe("answered");
});

afterAll(async () => {
  await proxy?.close();
  await direct?.close();
});

/** The pool's one connection open and answering, before the proxy goes silent. */
async function connected(): Promise<void> {
  expect(await db.query<{ n: number }>("SELECT 1 AS n")).toEqual([{ n: 1 }]);
}

/** After the silence: the pool answers again, on its own and in a transaction. */
async function servesAgain(): Promise<void> {
  const alone = await outcomeOf(db.query<{ n: number }>("SELECT 2 AS n"));
  expect(alone).toMatchObject({ kind: "answered", value: [{ n: 2 }] });
  const inTransaction = await outcomeOf(db.transaction((tx) => tx.query<{ n: number }>("SELECT 3 AS n")));
  expect(inTransaction).toMatchObject({ kind: "answered", value: [{ n: 3 }] });
}

describe("a PostgreSQL connection gone silent", () => {
  it("fails a statement within the bound, and the pool serves again once bytes pass", async () => {
    await connected();
    proxy.swallow();
    expectTimedOutInBound(await outcomeOf(db.query("SELECT 1")));
    proxy.pass();
    await servesAgain();
  });

  it("fails a transaction's statement within the bound (no ROLLBACK waited out over it), and is not reused", async () => {
    await connected();
    let startedAt = 0;
    const transaction = db.transaction(async (tx) => {
      await tx.query("SELECT 1");
      proxy.swallow();
      startedAt = performance.now();
      return await tx.query("SELECT 2");
    });
    const outcome = await outcomeOf(transaction);
    const elapsedMs = performance.now() - startedAt;
    const sentWhileSilent = proxy.swallowedFromPool();
    proxy.pass();
    await servesAgain();
    expectTimedOutInBound({ ...outcome, elapsedMs });
    expect(sentWhileSilent).toContain("SELECT 2");
    expect(sentWhileSilent).not.toContain("ROLLBACK");
  });

  it("fails the shared lookup of a key for every check awaiting it; a later check looks the key up afresh", async () => {
    const key = await createApiKey(direct, { tenantId: tenant.id, mode: "test" });
    const auth = createAuthenticator(
      { sql: db, nowMs: Date.now, changes: createLocalChangeBus() },
      { entriesMax: 100, ttlMs: 3_600_000 },
    );
    try {
      await connected();
      const before = statements.length;
      proxy.swallow();
      const startedAt = performance.now();
      const [first, second] = await Promise.all([
        outcomeOf(auth.check(key.secret), startedAt),
        outcomeOf(auth.check(key.secret), startedAt),
      ]);
      expectTimedOutInBound(first);
      expectTimedOutInBound(second);
      expect(statements.length).toBe(before + 1); // one lookup, shared
      proxy.pass();
      const later = await outcomeOf(auth.check(key.secret));
      expect(later).toMatchObject({ kind: "answered", value: { ok: true, principal: { tenant } } });
      expect(statements.length).toBe(before + 2); // a fresh lookup, not the failed one again
    } finally {
      auth.close();
    }
  });
});

describe("GET /readyz with the database gone silent or down", () => {
  /** Shorter than the pool's own bound (queryTimeoutMs): the probe's answer does not wait for the pool's. */
  const readinessTimeoutMs = 300;

  it("answers 503 not_ready within its bound while the database does not answer, and 200 ready once it does", async () => {
    const server = await buildBareServer([], { db, readinessTimeoutMs });
    const readiness = async () => {
      const startedAt = performance.now();
      const response = await server.inject({ method: "GET", url: "/readyz" });
      return { response, elapsedMs: performance.now() - startedAt };
    };
    try {
      await connected();
      const ready = await readiness();
      expect(ready.response.statusCode).toBe(200);
      expect(ready.response.json()).toMatchObject({ status: "ready", database: { available: true } });
      // Liveness says nothing of the database: the process is alive while it is away.
      const before = statements.length;
      proxy.swallow();
      const [silent, alongside, alive] = await Promise.all([
        readiness(),
        readiness(),
        server.inject({ method: "GET", url: "/healthz" }),
      ]);
      expect(alive.statusCode).toBe(200);
      for (const answer of [silent, alongside]) {
        expect(answer.response.statusCode).toBe(503);
        expect(answer.response.headers["retry-after"]).toBe("1");
        expect(answer.response.json()).toMatchObject({ status: "not_ready", database: { available: false } });
        expect(answer.elapsedMs).toBeGreaterThanOrEqual(readinessTimeoutMs - 20);
        expect(answer.elapsedMs).toBeLessThan(queryTimeoutMs);
      }
      // Both probes shared one statement, and so does one after them while it is unanswered: a burst of checks
      // costs the database one at a time.
      expect((await readiness()).response.statusCode).toBe(503);
      expect(statements.slice(before)).toEqual(["select"]);
      // The server refusing connections (down) is not ready either; once it serves again, ready.
      proxy.pass();
      proxy.refuseNew(true);
      proxy.resetAll();
      expect((await readiness()).response.statusCode).toBe(503);
      proxy.refuseNew(false);
      await expect.poll(async () => (await readiness()).response.statusCode, { timeout: 5_000 }).toBe(200);
    } finally {
      await server.close();
    }
  });
});
