// API-key authentication with the per-process memory of valid keys, on PGlite: the memory answers without a
// query while its ttlMs lasts, a revocation announced on its change bus is refused at once (one it never hears of
// once ttlMs has passed), an unknown key is never remembered, concurrent checks of one key share one lookup (not one
// that began before a revocation was heard). Across processes on PostgreSQL:
// test/http/api-key-revocation.test.ts.
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { manualChangeFeed } from "../../test/support/manual-change-feed.ts";
import { recordStatements } from "../../test/support/recording-db.ts";
import { gatewayMigrations } from "../app.ts";
import {
  type ChangeBus,
  type ChangeEvent,
  createLocalChangeBus,
  type Db,
  migrate,
  openPglite,
  type Sql,
} from "../db/index.ts";
import { ledgerMigrations } from "../ledger/index.ts";
import {
  apiKeySecretOf,
  authenticate,
  createApiKey,
  createAuthenticator,
  createTenant,
  revokeApiKey,
} from "./index.ts";

let db: Db;
/** This process's bus: what revokeApiKey announces on, and what the memories below hear. */
let changes: ChangeBus;
const tenantId = "ten_auth";

beforeAll(async () => {
  db = await openPglite(undefined);
  changes = createLocalChangeBus();
  await migrate(db, [ledgerMigrations, gatewayMigrations]);
  await createTenant(db, { id: tenantId, name: "Auth" });
  await createTenant(db, { id: "ten_other", name: "Other" });
}, 120_000);

afterAll(async () => {
  await changes?.close();
  await db?.close();
});

/** The database, counting the statements that reach it. */
function counting(): { sql: Sql; queries: () => number } {
  const statements: string[] = [];
  return { sql: recordStatements(db, statements), queries: () => statements.length };
}

/**
 * counting(), each answer held back until `release` (the query itself reaches the database at once); `firstRead`
 * resolves once the first query has been answered by it.
 */
function heldAnswers() {
  const { sql: counted, queries } = counting();
  let read = () => {};
  const firstRead = new Promise<void>((resolve) => {
    read = resolve;
  });
  let release = () => {};
  const held = new Promise<void>((resolve) => {
    release = resolve;
  });
  const sql: Sql = {
    query: async (text, params) => {
      const rows = await counted.query(text, params);
      read();
      await held;
      return rows as never;
    },
  };
  return { sql, queries, firstRead, release };
}

function clock() {
  const now = { ms: 1_000_000 };
  return { nowMs: () => now.ms, advance: (ms: number) => (now.ms += ms) };
}

describe("the API-key memory", () => {
  it("answers a valid key from memory while ttlMs lasts, then asks again", async () => {
    const key = await createApiKey(db, { tenantId, mode: "test" });
    const { sql, queries } = counting();
    const time = clock();
    const auth = createAuthenticator({ sql, nowMs: time.nowMs, changes }, { entriesMax: 10, ttlMs: 5_000 });
    expect(await auth.authenticate(key.secret)).toEqual({ id: tenantId, name: "Auth" });
    expect(await auth.authenticate(key.secret)).toEqual({ id: tenantId, name: "Auth" });
    expect(queries()).toBe(1);
    time.advance(5_000);
    expect(await auth.authenticate(key.secret)).toEqual({ id: tenantId, name: "Auth" });
    expect(queries()).toBe(2);
  });

  it("refuses a revoked key once ttlMs has passed since it was last looked up", async () => {
    const key = await createApiKey(db, { tenantId, mode: "live" });
    const time = clock();
    // A memory that never hears of the revocation (its bus is not the one it is announced on): ttlMs is the net.
    const deaf = createLocalChangeBus();
    const auth = createAuthenticator(
      { sql: db, nowMs: time.nowMs, changes: deaf },
      { entriesMax: 10, ttlMs: 3_000 },
    );
    expect(await auth.authenticate(key.secret)).not.toBeNull();
    expect(await revokeApiKey({ db, changes }, { tenantId, id: key.id })).toBe(true);
    expect(await revokeApiKey({ db, changes }, { tenantId, id: key.id })).toBe(false); // already revoked
    expect(await authenticate(db, key.secret)).toBeNull(); // the database refuses at once
    time.advance(2_999);
    expect(await auth.authenticate(key.secret)).not.toBeNull(); // the memory, for at most ttlMs
    time.advance(1);
    expect(await auth.authenticate(key.secret)).toBeNull();
    expect(await auth.authenticate(key.secret)).toBeNull();
  });

  it("trusts a key looked up for ttlMs from when its query began, not from when its answer was handled", async () => {
    const key = await createApiKey(db, { tenantId, mode: "live" });
    const time = clock();
    const { sql, firstRead, release } = heldAnswers();
    // The revocation is announced where this memory does not hear it: only ttlMs bounds it.
    const auth = createAuthenticator(
      { sql, nowMs: time.nowMs, changes: createLocalChangeBus() },
      { entriesMax: 10, ttlMs: 3_000 },
    );
    const checking = auth.authenticate(key.secret);
    await firstRead; // the row is read: the key was valid then
    expect(await revokeApiKey({ db, changes }, { tenantId, id: key.id })).toBe(true);
    time.advance(1_000); // the answer handled a second later
    release();
    expect(await checking).not.toBeNull();
    time.advance(2_000); // ttlMs after the query began. Before: trusted until 3 s after the answer, 4 s in all.
    expect(await auth.authenticate(key.secret)).toBeNull();
  });

  it("only the key's own tenant can revoke it", async () => {
    const key = await createApiKey(db, { tenantId, mode: "test" });
    expect(await revokeApiKey({ db, changes }, { tenantId: "ten_other", id: key.id })).toBe(false);
    expect(await authenticate(db, key.secret)).toEqual({ id: tenantId, name: "Auth" });
  });

  it("never remembers an unknown key, and refuses a malformed one without a query", async () => {
    const { sql, queries } = counting();
    const auth = createAuthenticator(
      { sql, nowMs: clock().nowMs, changes },
      { entriesMax: 10, ttlMs: 60_000 },
    );
    const unknown = apiKeySecretOf("test", "A".repeat(36)); // well-formed, its checksum right: looked up
    expect(await auth.authenticate(unknown)).toBeNull();
    expect(await auth.authenticate(unknown)).toBeNull();
    expect(queries()).toBe(2);
    expect(await auth.authenticate("sk_test_short")).toBeNull();
    expect(await auth.authenticate(`${unknown} `)).toBeNull();
    expect(queries()).toBe(2);
  });

  it("refuses a key of the right shape whose checksum is wrong without a query (a made-up or mistyped key)", async () => {
    const real = await createApiKey(db, { tenantId, mode: "test" });
    const { sql, queries } = counting();
    const auth = createAuthenticator(
      { sql, nowMs: clock().nowMs, changes },
      { entriesMax: 10, ttlMs: 60_000 },
    );
    // The probe's made-up key: sk_test_ and 43 URL-safe characters.
    expect(await auth.authenticate(`sk_test_${"A".repeat(43)}`)).toBeNull();
    // A real key with one character changed, in its random part or in its checksum; its mode changed.
    const flip = (text: string, at: number) =>
      `${text.slice(0, at)}${text[at] === "A" ? "B" : "A"}${text.slice(at + 1)}`;
    expect(await auth.authenticate(flip(real.secret, 10))).toBeNull();
    expect(await auth.authenticate(flip(real.secret, real.secret.length - 1))).toBeNull();
    expect(await authenticate(sql, real.secret.replace("sk_test_", "sk_live_"))).toBeNull();
    expect(await authenticate(sql, flip(real.secret, 20))).toBeNull();
    expect(queries()).toBe(0);
    expect(await auth.authenticate(real.secret)).toEqual({ id: tenantId, name: "Auth" });
    expect(queries()).toBe(1);
  });

  it("holds at most entriesMax keys, forgetting the least recently checked", async () => {
    const keys = await Promise.all([0, 1, 2].map(() => createApiKey(db, { tenantId, mode: "test" })));
    const { sql, queries } = counting();
    const auth = createAuthenticator(
      { sql, nowMs: clock().nowMs, changes },
      { entriesMax: 2, ttlMs: 60_000 },
    );
    await auth.authenticate(keys[0]!.secret);
    await auth.authenticate(keys[1]!.secret);
    await auth.authenticate(keys[0]!.secret); // from memory; key 1 is now the least recent
    expect(queries()).toBe(2);
    await auth.authenticate(keys[2]!.secret); // forgets key 1
    await auth.authenticate(keys[0]!.secret);
    expect(queries()).toBe(3);
    await auth.authenticate(keys[1]!.secret);
    expect(queries()).toBe(4);
  });
});

describe("the API-key memory and the change bus", () => {
  it("refuses a key at once when its revocation is announced, without waiting for ttlMs", async () => {
    const key = await createApiKey(db, { tenantId, mode: "test" });
    const other = await createApiKey(db, { tenantId, mode: "test" });
    const { sql, queries } = counting();
    const auth = createAuthenticator(
      { sql, nowMs: clock().nowMs, changes },
      { entriesMax: 10, ttlMs: 60_000 },
    );
    await auth.authenticate(key.secret);
    await auth.authenticate(other.secret);
    expect(queries()).toBe(2);
    const heard: ChangeEvent[] = [];
    const stop = changes.subscribe((event) => heard.push(event));
    expect(await revokeApiKey({ db, changes }, { tenantId, id: key.id })).toBe(true);
    stop();
    // The announcement names the key by its digest, never by the key.
    expect(heard).toEqual([
      { kind: "api_key_revoked", digest: expect.stringMatching(/^[A-Za-z0-9+/]{43}=$/) },
    ]);
    expect(JSON.stringify(heard)).not.toContain(key.secret.slice(8));
    expect(await auth.authenticate(key.secret)).toBeNull(); // no clock moved
    expect(await auth.authenticate(other.secret)).toEqual({ id: tenantId, name: "Auth" }); // still remembered
    expect(queries()).toBe(3);
    // Revoking nothing announces nothing.
    const none: ChangeEvent[] = [];
    const stopNone = changes.subscribe((event) => none.push(event));
    expect(await revokeApiKey({ db, changes }, { tenantId, id: key.id })).toBe(false);
    stopNone();
    expect(none).toEqual([]);
    auth.close();
  });

  it("does not remember a key read just before its revocation was heard", async () => {
    const key = await createApiKey(db, { tenantId, mode: "test" });
    let release = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let hold = true;
    // The lookup reads the key (still valid), then its answer is held back until the revocation has been heard.
    const slow: Sql = {
      query: async (text, params) => {
        const rows = await db.query(text, params);
        if (hold) await held;
        return rows as never;
      },
    };
    const auth = createAuthenticator(
      { sql: slow, nowMs: clock().nowMs, changes },
      { entriesMax: 10, ttlMs: 60_000 },
    );
    const lookup = auth.authenticate(key.secret);
    await new Promise((resolve) => setTimeout(resolve, 20));
    hold = false;
    expect(await revokeApiKey({ db, changes }, { tenantId, id: key.id })).toBe(true);
    release();
    expect(await lookup).toEqual({ id: tenantId, name: "Auth" }); // valid when it was read
    expect(await auth.authenticate(key.secret)).toBeNull(); // but not remembered
    auth.close();
  });

  it("remembers a key whose lookup ran while other keys were revoked: only its own revocation counts", async () => {
    const key = await createApiKey(db, { tenantId, mode: "test" });
    const others = await Promise.all(
      Array.from({ length: 3 }, () => createApiKey(db, { tenantId: "ten_other", mode: "test" })),
    );
    // Every lookup reads the database at once, then its answer is held back until the test releases it.
    const { sql: slow, queries, firstRead, release } = heldAnswers();
    const auth = createAuthenticator(
      { sql: slow, nowMs: clock().nowMs, changes },
      { entriesMax: 10, ttlMs: 60_000 },
    );
    const lookup = auth.authenticate(key.secret);
    await firstRead;
    // Another tenant revokes its keys while this key's lookup runs.
    for (const other of others)
      expect(await revokeApiKey({ db, changes }, { tenantId: "ten_other", id: other.id })).toBe(true);
    const joined = auth.authenticate(key.secret);
    release();
    expect(await lookup).toEqual({ id: tenantId, name: "Auth" });
    expect(await joined).toEqual({ id: tenantId, name: "Auth" });
    expect(queries()).toBe(1); // the later check joined the lookup
    expect(await auth.authenticate(key.secret)).toEqual({ id: tenantId, name: "Auth" });
    expect(queries()).toBe(1); // and its answer was remembered
    auth.close();
  });

  it("forgets everything on resync, and remembers nothing while the bus is not listening", async () => {
    const key = await createApiKey(db, { tenantId, mode: "test" });
    const { feed, publish, setListening, subscriberCount } = manualChangeFeed();
    const { sql, queries } = counting();
    const auth = createAuthenticator(
      { sql, nowMs: clock().nowMs, changes: feed },
      { entriesMax: 10, ttlMs: 60_000 },
    );
    await auth.authenticate(key.secret);
    await auth.authenticate(key.secret);
    expect(queries()).toBe(1);
    setListening(false);
    publish({ kind: "resync" });
    await auth.authenticate(key.secret);
    await auth.authenticate(key.secret);
    expect(queries()).toBe(3); // forgotten, and not remembered again while deaf
    setListening(true);
    await auth.authenticate(key.secret);
    await auth.authenticate(key.secret);
    expect(queries()).toBe(4);
    auth.close();
    expect(subscriberCount()).toBe(0);
  });
});

describe("renewing keys in use", () => {
  // ttlMs 100: the renewal runs every 25 ms of real time; which keys are due is read off the test's clock.
  const limits = { entriesMax: 10, ttlMs: 100, renewUsedWithinMs: 1_000 };

  /** counting(), and a wait until the `n`-th statement has been answered and what awaited it has run. */
  function countingAnswered() {
    const { sql: counted, queries } = counting();
    const answered: Promise<unknown>[] = [];
    const sql: Sql = {
      query: (text, params) => {
        const rows = counted.query(text, params);
        answered.push(rows.catch(() => {}));
        return rows as never;
      },
    };
    const renewed = async (n: number) => {
      await vi.waitFor(() => expect(queries()).toBe(n), { timeout: 5_000 });
      await answered[n - 1];
      await new Promise((resolve) => setTimeout(resolve, 0)); // the renewal's own continuation, after the answer
    };
    return { sql, queries, renewed };
  }

  it("renews a key in use before its trust runs out: a check past the first lookup's ttlMs asks nothing", async () => {
    const key = await createApiKey(db, { tenantId, mode: "test" });
    const { sql, queries, renewed } = countingAnswered();
    const time = clock();
    const auth = createAuthenticator({ sql, nowMs: time.nowMs, changes }, limits);
    expect(await auth.authenticate(key.secret)).toEqual({ id: tenantId, name: "Auth" });
    expect(queries()).toBe(1);
    time.advance(60); // more than half of its trust spent: due
    await renewed(2);
    time.advance(60); // past the lookup's trust (until 100), within the renewal's (until 160)
    expect(await auth.authenticate(key.secret)).toEqual({ id: tenantId, name: "Auth" });
    expect(queries()).toBe(2);
    auth.close();
  });

  it("forgets a key the renewal finds revoked, a revocation its bus never heard", async () => {
    const key = await createApiKey(db, { tenantId, mode: "test" });
    const { sql, queries, renewed } = countingAnswered();
    const time = clock();
    const deaf = createLocalChangeBus();
    const auth = createAuthenticator({ sql, nowMs: time.nowMs, changes: deaf }, limits);
    expect(await auth.authenticate(key.secret)).not.toBeNull();
    expect(await revokeApiKey({ db, changes }, { tenantId, id: key.id })).toBe(true);
    time.advance(60);
    await renewed(2);
    // Within the first lookup's trust, but the renewal read the revocation.
    expect(await auth.authenticate(key.secret)).toBeNull();
    expect(queries()).toBe(3);
    auth.close();
    await deaf.close();
  });

  it("renews a key in use although another key was revoked while the renewal ran", async () => {
    const key = await createApiKey(db, { tenantId, mode: "test" });
    const other = await createApiKey(db, { tenantId: "ten_other", mode: "test" });
    const { sql: counted, queries } = counting();
    let renewing = false;
    const slow: Sql = {
      query: async (text, params) => {
        const rows = await counted.query(text, params);
        // The renewal's query has read the key; another tenant's key is revoked before its answer is used.
        if (renewing && text.includes("unnest")) {
          renewing = false;
          await revokeApiKey({ db, changes }, { tenantId: "ten_other", id: other.id });
        }
        return rows as never;
      },
    };
    const time = clock();
    const auth = createAuthenticator({ sql: slow, nowMs: time.nowMs, changes }, limits);
    expect(await auth.authenticate(key.secret)).not.toBeNull();
    renewing = true;
    time.advance(60); // due
    await vi.waitFor(() => expect(renewing).toBe(false), { timeout: 5_000 });
    await new Promise((resolve) => setTimeout(resolve, 10)); // the renewal's continuation
    time.advance(60); // past the lookup's trust (until 100), within the renewal's (until 160)
    expect(await auth.authenticate(key.secret)).not.toBeNull();
    expect(queries()).toBe(2); // the lookup and the renewal: nothing more
    auth.close();
  });

  it("renews no key unchecked for longer than renewUsedWithinMs", async () => {
    const key = await createApiKey(db, { tenantId, mode: "test" });
    const { sql, queries } = counting();
    const time = clock();
    const auth = createAuthenticator(
      { sql, nowMs: time.nowMs, changes },
      { ...limits, renewUsedWithinMs: 50 },
    );
    expect(await auth.authenticate(key.secret)).not.toBeNull();
    time.advance(60); // due, but last checked 60 ms ago
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(queries()).toBe(1);
    time.advance(40);
    expect(await auth.authenticate(key.secret)).not.toBeNull(); // expired: looked up
    expect(queries()).toBe(2);
    auth.close();
  });
});

describe("one lookup per key at a time", () => {
  it("50 concurrent checks of a key whose memory expired make one query between them", async () => {
    const key = await createApiKey(db, { tenantId, mode: "test" });
    const { sql, queries } = counting();
    const time = clock();
    const auth = createAuthenticator({ sql, nowMs: time.nowMs, changes }, { entriesMax: 10, ttlMs: 1_000 });
    expect(await auth.authenticate(key.secret)).toEqual({ id: tenantId, name: "Auth" });
    time.advance(1_000);
    const tenants = await Promise.all(Array.from({ length: 50 }, () => auth.authenticate(key.secret)));
    expect(tenants).toEqual(Array.from({ length: 50 }, () => ({ id: tenantId, name: "Auth" })));
    expect(queries()).toBe(2);
    expect(await auth.authenticate(key.secret)).toEqual({ id: tenantId, name: "Auth" }); // remembered once more
    expect(queries()).toBe(2);
    auth.close();
  });

  it("a check that arrives after a revocation was heard does not join a lookup that began before it", async () => {
    const key = await createApiKey(db, { tenantId, mode: "test" });
    // Every lookup reads the database at once, then its answer is held back until the test releases it.
    const { sql: slow, queries, firstRead, release } = heldAnswers();
    const auth = createAuthenticator(
      { sql: slow, nowMs: clock().nowMs, changes },
      { entriesMax: 10, ttlMs: 60_000 },
    );
    const before = [auth.authenticate(key.secret), auth.authenticate(key.secret)];
    await firstRead; // the key was read valid
    expect(queries()).toBe(1); // the second check joined the first's lookup
    expect(await revokeApiKey({ db, changes }, { tenantId, id: key.id })).toBe(true);
    const after = [auth.authenticate(key.secret), auth.authenticate(key.secret)];
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(queries()).toBe(2); // a lookup of its own, shared by the check after it
    release();
    expect(await Promise.all(before)).toEqual([
      { id: tenantId, name: "Auth" },
      { id: tenantId, name: "Auth" },
    ]); // valid when it was read
    expect(await Promise.all(after)).toEqual([null, null]);
    expect(await auth.authenticate(key.secret)).toBeNull(); // nothing remembered from the first lookup
    expect(queries()).toBe(3);
    auth.close();
  });

  it("a lookup that fails fails every check that joined it, and the next check asks again", async () => {
    const key = await createApiKey(db, { tenantId, mode: "test" });
    const { sql: counted, queries } = counting();
    let failing = true;
    const flaky: Sql = {
      query: async (text, params) => {
        const rows = await counted.query(text, params);
        if (failing) throw new Error("connection lost");
        return rows as never;
      },
    };
    const auth = createAuthenticator(
      { sql: flaky, nowMs: clock().nowMs, changes },
      { entriesMax: 10, ttlMs: 60_000 },
    );
    const results = await Promise.allSettled(Array.from({ length: 5 }, () => auth.authenticate(key.secret)));
    expect(results.map((result) => result.status)).toEqual(Array.from({ length: 5 }, () => "rejected"));
    expect(queries()).toBe(1);
    failing = false;
    expect(await auth.authenticate(key.secret)).toEqual({ id: tenantId, name: "Auth" });
    expect(queries()).toBe(2);
    auth.close();
  });
});
