// API-key authentication with the per-process memory of valid keys, on PGlite: the memory answers without a
// query while its ttlMs lasts, a revoked key is refused once it has passed, an unknown key is never remembered.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { recordStatements } from "../../test/support/recording-db.ts";
import { gatewayMigrations } from "../app.ts";
import { type Db, migrate, openPglite, type Sql } from "../db/index.ts";
import { ledgerMigrations } from "../ledger/index.ts";
import { authenticate, createApiKey, createAuthenticator, createTenant, revokeApiKey } from "./index.ts";

let db: Db;
const tenantId = "ten_auth";

beforeAll(async () => {
  db = await openPglite(undefined);
  await migrate(db, [ledgerMigrations, gatewayMigrations]);
  await createTenant(db, { id: tenantId, name: "Auth" });
  await createTenant(db, { id: "ten_other", name: "Other" });
}, 120_000);

afterAll(async () => {
  await db?.close();
});

/** The database, counting the statements that reach it. */
function counting(): { sql: Sql; queries: () => number } {
  const statements: string[] = [];
  return { sql: recordStatements(db, statements), queries: () => statements.length };
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
    const auth = createAuthenticator({ sql, nowMs: time.nowMs }, { entriesMax: 10, ttlMs: 5_000 });
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
    const auth = createAuthenticator({ sql: db, nowMs: time.nowMs }, { entriesMax: 10, ttlMs: 3_000 });
    expect(await auth.authenticate(key.secret)).not.toBeNull();
    expect(await revokeApiKey(db, { tenantId, id: key.id })).toBe(true);
    expect(await revokeApiKey(db, { tenantId, id: key.id })).toBe(false); // already revoked
    expect(await authenticate(db, key.secret)).toBeNull(); // the database refuses at once
    time.advance(2_999);
    expect(await auth.authenticate(key.secret)).not.toBeNull(); // the memory, for at most ttlMs
    time.advance(1);
    expect(await auth.authenticate(key.secret)).toBeNull();
    expect(await auth.authenticate(key.secret)).toBeNull();
  });

  it("only the key's own tenant can revoke it", async () => {
    const key = await createApiKey(db, { tenantId, mode: "test" });
    expect(await revokeApiKey(db, { tenantId: "ten_other", id: key.id })).toBe(false);
    expect(await authenticate(db, key.secret)).toEqual({ id: tenantId, name: "Auth" });
  });

  it("never remembers an unknown key, and refuses a malformed one without a query", async () => {
    const { sql, queries } = counting();
    const auth = createAuthenticator({ sql, nowMs: clock().nowMs }, { entriesMax: 10, ttlMs: 60_000 });
    const unknown = `sk_test_${"A".repeat(43)}`;
    expect(await auth.authenticate(unknown)).toBeNull();
    expect(await auth.authenticate(unknown)).toBeNull();
    expect(queries()).toBe(2);
    expect(await auth.authenticate("sk_test_short")).toBeNull();
    expect(await auth.authenticate(`${unknown} `)).toBeNull();
    expect(queries()).toBe(2);
  });

  it("holds at most entriesMax keys, forgetting the least recently checked", async () => {
    const keys = await Promise.all([0, 1, 2].map(() => createApiKey(db, { tenantId, mode: "test" })));
    const { sql, queries } = counting();
    const auth = createAuthenticator({ sql, nowMs: clock().nowMs }, { entriesMax: 2, ttlMs: 60_000 });
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
