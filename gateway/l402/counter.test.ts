// The request counter's leases on PGlite: most requests served without a statement, the row's count exact once the
// leases are given back, never beyond a token's bound across two counters on one database (two processes), the tail
// of a token not stranded, an attenuated bound judged against what was served, a revoked token refused within a
// lease's lifetime.
import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { gatewayMigrations } from "../app.ts";
import { type Db, migrate, openPglite, type Sql } from "../db/index.ts";
import { ledgerMigrations } from "../ledger/index.ts";
import {
  type CountResult,
  createRequestCounter,
  type RequestCounter,
  requestCounterDefaults,
} from "./counter.ts";
import { revokeToken, takeRequests } from "./tokens.ts";

const tenantId = "ten_counter";
const hexOf = (text: string) => createHash("sha256").update(text).digest("hex");

let db: Db;
let tokens = 0;

beforeAll(async () => {
  db = await openPglite(undefined);
  await migrate(db, [ledgerMigrations, gatewayMigrations]);
  await db.query("INSERT INTO tenants (id, name) VALUES ($1, 'counter')", [tenantId]);
  await db.query(
    `INSERT INTO accounts (id, tenant_id, kind, asset, ledger_account_id, name)
     VALUES ('acc_counter', $1, 'merchant', 'BTC', 1, 'counter')`,
    [tenantId],
  );
  await db.query(
    `INSERT INTO invoices (id, tenant_id, account_id, asset, amount, rail, status, description, rail_reference)
     VALUES ('inv_counter', $1, 'acc_counter', 'BTC', 1000, 'lightning', 'paid', 'counter', $2)`,
    [tenantId, hexOf("payment")],
  );
});
afterAll(async () => {
  await db.close();
});

/** A fresh token row of `requestsMax` (null: uncounted): its key. */
async function token(requestsMax: number | null): Promise<string> {
  tokens += 1;
  const keyId = hexOf(`token ${tokens}`);
  await db.query(
    `INSERT INTO l402_tokens (key_id, tenant_id, root_key, payment_hash, invoice_id, paywall_id, service, requests_max, valid_until)
     VALUES ($1, $2, $3, $4, 'inv_counter', 'pw_counter', 'counter', $5, now() + interval '1 hour')`,
    [keyId, tenantId, hexOf("root"), hexOf("payment"), requestsMax],
  );
  return keyId;
}

async function used(keyId: string): Promise<number> {
  const [row] = await db.query<{ requests_used: number }>(
    "SELECT requests_used FROM l402_tokens WHERE key_id = $1",
    [keyId],
  );
  return Number(row!.requests_used);
}

/** `db` that counts the statements run through it. */
function counted(sql: Sql): { sql: Sql; statements: () => number } {
  let statements = 0;
  return {
    sql: {
      ...sql,
      query: (text: string, params?: unknown[]) => {
        statements += 1;
        return sql.query(text, params);
      },
    } as Sql,
    statements: () => statements,
  };
}

const ask = (keyId: string, requestsMax: number | null, rowRequestsMax = requestsMax) => ({
  tenantId,
  keyId,
  requestsMax,
  rowRequestsMax,
});
const served = (results: readonly CountResult[]) => results.filter((r) => r.ok).length;

describe("leases", () => {
  it("serve most requests without a statement; once closed, the row counts exactly the requests served", async () => {
    const keyId = await token(1_000);
    const probe = counted(db);
    const counter = createRequestCounter({ db: probe.sql });
    const results: CountResult[] = [];
    for (let round = 0; round < 20; round += 1)
      results.push(...(await Promise.all(Array.from({ length: 10 }, () => counter.take(ask(keyId, 1_000))))));
    expect(served(results)).toBe(200);
    // Without leases every round is at least one statement (20); with them the lease doubles up to 64.
    expect(probe.statements()).toBeLessThan(12);
    expect(await used(keyId)).toBeGreaterThan(200);
    await counter.close();
    expect(await used(keyId)).toBe(200);
  });

  it("lease uncounted tokens too, and count them exactly once given back", async () => {
    const keyId = await token(null);
    const counter = createRequestCounter({ db });
    for (let i = 0; i < 100; i += 1) expect((await counter.take(ask(keyId, null))).ok).toBe(true);
    await counter.close();
    expect(await used(keyId)).toBe(100);
  });

  it("a request not served is given back, and the count stays exact", async () => {
    const keyId = await token(10);
    const counter = createRequestCounter({ db });
    for (let i = 0; i < 3; i += 1) expect((await counter.take(ask(keyId, 10))).ok).toBe(true);
    await counter.giveBack({ tenantId, keyId });
    await counter.close();
    expect(await used(keyId)).toBe(2);
  });

  it("gives a request not served back to the row, where another counter serves it at once", async () => {
    const keyId = await token(8);
    const [a, b] = [createRequestCounter({ db }), createRequestCounter({ db })];
    // a takes the last requests b does not lease (two served, a lease on the rest up to its quarter rule).
    const taken: boolean[] = [];
    for (let i = 0; i < 8; i += 1) taken.push((await a.take(ask(keyId, 8))).ok);
    expect(taken.every(Boolean)).toBe(true);
    expect(await b.take(ask(keyId, 8))).toEqual({ ok: false, reason: "exhausted" });
    await a.giveBack({ tenantId, keyId });
    expect((await b.take(ask(keyId, 8))).ok).toBe(true);
    await Promise.all([a.close(), b.close()]);
    expect(await used(keyId)).toBe(8);
  });

  it("never hold more than leaseMax of a token, however many requests find its lease empty at once: one statement leases", async () => {
    const keyId = await token(100_000);
    // A frozen clock: nothing is given back for its age during the test.
    const probe = counted(db);
    const counter = createRequestCounter({ db: probe.sql, nowMs: () => 1_000_000 });
    let servedSoFar = 0;
    const take = async () => {
      const result = await counter.take(ask(keyId, 100_000));
      if (result.ok) servedSoFar += 1;
      return result;
    };
    // One request at a time until the lease has grown to its most: 1 + 2, 1 + 8, 1 + 32, 1 + 128, all used up.
    for (let i = 0; i < 174; i += 1) expect((await take()).ok).toBe(true);
    expect(await used(keyId)).toBe(servedSoFar);
    for (const burst of [2, 3, 10, 40]) {
      // Requests that all find the lease empty: one statement takes a lease (256), the others wait for it and are
      // served from it.
      const statements = probe.statements();
      const results = await Promise.all(Array.from({ length: burst }, take));
      expect(results.every((r) => r.ok)).toBe(true);
      expect(probe.statements() - statements).toBe(1);
      expect((await used(keyId)) - servedSoFar).toBeLessThanOrEqual(requestCounterDefaults.leaseMax);
      // Used up one request at a time before the next burst.
      while ((await used(keyId)) > servedSoFar) expect((await take()).ok).toBe(true);
    }
    await counter.close();
    expect(await used(keyId)).toBe(servedSoFar);
  });

  it("two counters on one database never serve beyond the bound, and the tail is served once leases return", async () => {
    const keyId = await token(100);
    const [a, b] = [createRequestCounter({ db }), createRequestCounter({ db })];
    const takes = (counter: RequestCounter, n: number) =>
      Promise.all(Array.from({ length: n }, () => counter.take(ask(keyId, 100))));
    const first = await Promise.all([takes(a, 80), takes(b, 80)]);
    const servedFirst = served(first.flat());
    expect(servedFirst).toBeLessThanOrEqual(100);
    await Promise.all([a.close(), b.close()]);
    expect(await used(keyId)).toBe(servedFirst);
    // What the leases held is back on the row: a third counter serves exactly the rest, then refuses.
    const c = createRequestCounter({ db });
    const rest = await Promise.all(Array.from({ length: 120 }, () => c.take(ask(keyId, 100))));
    expect(served(rest)).toBe(100 - servedFirst);
    expect(rest.filter((r) => !r.ok).every((r) => !r.ok && r.reason === "exhausted")).toBe(true);
    await c.close();
    expect(await used(keyId)).toBe(100);
  });

  it("never lease the last requests of a counted token: the last ones are counted one statement each", async () => {
    const keyId = await token(8);
    const a = createRequestCounter({ db });
    const b = createRequestCounter({ db });
    // a serves 4 (with a lease on some of the rest); b must still find requests on the row.
    for (let i = 0; i < 4; i += 1) expect((await a.take(ask(keyId, 8))).ok).toBe(true);
    expect(8 - (await used(keyId))).toBeGreaterThan(0);
    expect((await b.take(ask(keyId, 8))).ok).toBe(true);
    await Promise.all([a.close(), b.close()]);
    expect(await used(keyId)).toBe(5);
  });

  it("judge an attenuated bound against the requests served, not those leased", async () => {
    const keyId = await token(10);
    const counter = createRequestCounter({ db });
    expect((await counter.take(ask(keyId, 10))).ok).toBe(true);
    expect(await used(keyId)).toBeGreaterThan(1); // one served, more leased
    // A macaroon attenuated to 2 requests: one more is within it (the lease is given back first), the next is not.
    expect((await counter.take(ask(keyId, 2, 10))).ok).toBe(true);
    expect(await counter.take(ask(keyId, 2, 10))).toEqual({ ok: false, reason: "exhausted" });
    await counter.close();
    expect(await used(keyId)).toBe(2);
  });

  it("judge an attenuated ask exactly when a full ask of the same token is counted at the same moment", async () => {
    const keyId = await token(10);
    const counter = createRequestCounter({ db });
    for (let i = 0; i < 3; i += 1) expect((await counter.take(ask(keyId, 10))).ok).toBe(true);
    // Four served once both are: the full ask must not lease what the attenuated one (bound 5) is judged against.
    const [full, tight] = await Promise.all([counter.take(ask(keyId, 10)), counter.take(ask(keyId, 5, 10))]);
    expect([full.ok, tight.ok]).toEqual([true, true]);
    expect(await counter.take(ask(keyId, 5, 10))).toEqual({ ok: false, reason: "exhausted" });
    await counter.close();
    expect(await used(keyId)).toBe(5);
  });

  it("never serve from a lease older than its lifetime, even before the sweep comes by", async () => {
    const keyId = await token(1_000);
    let now = 1_000_000;
    // A lifetime of a minute: the sweep (every 15 s of real time) does not run during the test.
    const counter = createRequestCounter({ db, nowMs: () => now, limits: { leaseLifetimeMs: 60_000 } });
    for (let i = 0; i < 10; i += 1) expect((await counter.take(ask(keyId, 1_000))).ok).toBe(true);
    expect(await revokeToken(db, { tenantId, keyId })).toBe(true);
    expect((await counter.take(ask(keyId, 1_000))).ok).toBe(true); // within the lifetime: the lease serves
    now += 60_000;
    expect(await counter.take(ask(keyId, 1_000))).toEqual({ ok: false, reason: "revoked" });
    await counter.close();
  });

  it("refuse a revoked token once its lease has lived its lifetime", async () => {
    const keyId = await token(1_000);
    const counter = createRequestCounter({ db, limits: { leaseLifetimeMs: 100 } });
    for (let i = 0; i < 10; i += 1) expect((await counter.take(ask(keyId, 1_000))).ok).toBe(true);
    expect(await revokeToken(db, { tenantId, keyId })).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await counter.take(ask(keyId, 1_000))).toEqual({ ok: false, reason: "revoked" });
    await counter.close();
  });

  it("without leases (leaseMax 0) count every request in the row at once", async () => {
    const keyId = await token(50);
    const counter = createRequestCounter({ db, limits: { leaseMax: 0 } });
    for (let i = 0; i < 5; i += 1) expect((await counter.take(ask(keyId, 50))).ok).toBe(true);
    expect(await used(keyId)).toBe(5);
    await counter.close();
  });
});

describe("counting an uncounted token", () => {
  it("saturates at the column's most rather than overflowing it: the token's requests, and another token's in the same statement, are served (an integer out of range failed them all)", async () => {
    const hot = await token(null);
    await db.query("UPDATE l402_tokens SET requests_used = 2147483640 WHERE key_id = $1", [hot]);
    const other = await token(5);
    const asks = [
      ...Array.from({ length: 10 }, () => ({ tenantId, keyId: hot, requestsMax: null })),
      { tenantId, keyId: other, requestsMax: 5 },
    ];
    const results = await takeRequests(db, asks);
    expect(results.every((result) => result.ok)).toBe(true);
    expect(await used(hot)).toBe(2147483647);
    expect(await used(other)).toBe(1);
  });
});
