// The per-process account memory on PGlite: it answers from memory after the first read, never across
// tenants, never remembers an account that was not found, and holds at most entriesMax records; with a change
// bus it forgets an account announced as changed, and everything on resync.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { assets } from "../../core/index.ts";
import { manualChangeFeed } from "../../test/support/manual-change-feed.ts";
import { recordStatements } from "../../test/support/recording-db.ts";
import { gatewayMigrations } from "../app.ts";
import { createLocalChangeBus, type Db, migrate, openPglite, type Sql } from "../db/index.ts";
import { createLedger, type Ledger, ledgerMigrations } from "../ledger/index.ts";
import { gatewayLedgerParams } from "../ledger-params.ts";
import { createTenant } from "../tenants/index.ts";
import { createAccount, createAccountCache } from "./index.ts";

let db: Db;
let ledger: Ledger;

beforeAll(async () => {
  db = await openPglite(undefined);
  await migrate(db, [ledgerMigrations, gatewayMigrations]);
  ledger = createLedger({ ...gatewayLedgerParams, db });
  await createTenant(db, { id: "ten_a", name: "A" });
  await createTenant(db, { id: "ten_b", name: "B" });
  for (const [tenantId, id] of [
    ["ten_a", "acct_a1"],
    ["ten_a", "acct_a2"],
    ["ten_a", "acct_a3"],
    ["ten_b", "acct_b1"],
  ] as const) {
    await createAccount(
      { sql: db, ledger },
      { tenantId, kind: "customer", asset: assets.USDC, name: id, id },
    );
  }
  await createAccount(
    { sql: db, ledger },
    {
      tenantId: null,
      kind: "clearing",
      asset: assets.USDC,
      name: "toy",
      rail: "toy",
      id: "acct_clearing_toy",
    },
  );
}, 120_000);

afterAll(async () => {
  await ledger?.close();
  await db?.close();
});

function counting(): { sql: Sql; queries: () => number } {
  const statements: string[] = [];
  return { sql: recordStatements(db, statements), queries: () => statements.length };
}

describe("the account memory", () => {
  it("reads a tenant's account once, then answers from memory", async () => {
    const { sql, queries } = counting();
    const cache = createAccountCache({ sql }, { entriesMax: 10 });
    const first = await cache.tenantAccount({ tenantId: "ten_a", id: "acct_a1" });
    const second = await cache.tenantAccount({ tenantId: "ten_a", id: "acct_a1" });
    expect(first).toMatchObject({ id: "acct_a1", tenantId: "ten_a", kind: "customer", asset: assets.USDC });
    expect(second).toEqual(first);
    expect(queries()).toBe(1);
  });

  it("never answers across tenants, whether the account is remembered or not", async () => {
    const { sql, queries } = counting();
    const cache = createAccountCache({ sql }, { entriesMax: 10 });
    expect(await cache.tenantAccount({ tenantId: "ten_b", id: "acct_a1" })).toBeNull(); // not yet remembered
    expect(await cache.tenantAccount({ tenantId: "ten_a", id: "acct_a1" })).not.toBeNull();
    expect(await cache.tenantAccount({ tenantId: "ten_b", id: "acct_a1" })).toBeNull(); // remembered for ten_a
    expect(await cache.tenantAccount({ tenantId: "ten_b", id: "acct_b1" })).toMatchObject({
      tenantId: "ten_b",
    });
    expect(queries()).toBe(3);
    // A rail's account belongs to no tenant: no tenant finds it by id.
    await cache.railAccount({ kind: "clearing", rail: "toy", asset: assets.USDC });
    expect(await cache.tenantAccount({ tenantId: "ten_a", id: "acct_clearing_toy" })).toBeNull();
  });

  it("does not remember an account that was not found: one created later is found", async () => {
    const cache = createAccountCache({ sql: db }, { entriesMax: 10 });
    expect(await cache.tenantAccount({ tenantId: "ten_a", id: "acct_later" })).toBeNull();
    await createAccount(
      { sql: db, ledger },
      { tenantId: "ten_a", kind: "merchant", asset: assets.BTC, name: "later", id: "acct_later" },
    );
    expect(await cache.tenantAccount({ tenantId: "ten_a", id: "acct_later" })).toMatchObject({
      kind: "merchant",
      asset: assets.BTC,
    });
  });

  it("remembers a rail's account by kind, rail and asset", async () => {
    const { sql, queries } = counting();
    const cache = createAccountCache({ sql }, { entriesMax: 10 });
    const clearing = await cache.railAccount({ kind: "clearing", rail: "toy", asset: assets.USDC });
    expect(clearing).toMatchObject({
      id: "acct_clearing_toy",
      kind: "clearing",
      rail: "toy",
      tenantId: null,
    });
    expect(await cache.railAccount({ kind: "clearing", rail: "toy", asset: assets.USDC })).toEqual(clearing);
    expect(queries()).toBe(1);
    expect(await cache.railAccount({ kind: "payable", rail: "toy", asset: assets.USDC })).toBeNull();
    expect(await cache.railAccount({ kind: "clearing", rail: "toy", asset: assets.BTC })).toBeNull();
    expect(await cache.railAccount({ kind: "clearing", rail: "other", asset: assets.USDC })).toBeNull();
    expect(queries()).toBe(4);
  });

  it("holds at most entriesMax records, forgetting the least recently used", async () => {
    const { sql, queries } = counting();
    const cache = createAccountCache({ sql }, { entriesMax: 2 });
    const get = (id: string) => cache.tenantAccount({ tenantId: "ten_a", id });
    await get("acct_a1");
    await get("acct_a2");
    await get("acct_a1"); // remembered; acct_a2 is now the least recent
    expect(queries()).toBe(2);
    await get("acct_a3"); // forgets acct_a2
    await get("acct_a1");
    expect(queries()).toBe(3);
    expect(await get("acct_a2")).toMatchObject({ id: "acct_a2" });
    expect(queries()).toBe(4);
  });
});

describe("the account memory and the change bus", () => {
  it("forgets an account announced as changed, under its id and as a rail's account", async () => {
    const changes = createLocalChangeBus();
    const { sql, queries } = counting();
    const cache = createAccountCache({ sql, changes }, { entriesMax: 10 });
    const rail = { kind: "clearing", rail: "toy", asset: assets.USDC } as const;
    await cache.tenantAccount({ tenantId: "ten_a", id: "acct_a1" });
    await cache.tenantAccount({ tenantId: "ten_a", id: "acct_a2" });
    await cache.railAccount(rail);
    expect(queries()).toBe(3);
    changes.committed([{ kind: "account_changed", id: "acct_a1" }]);
    changes.committed([{ kind: "account_changed", id: "acct_clearing_toy" }]);
    await cache.tenantAccount({ tenantId: "ten_a", id: "acct_a1" });
    await cache.railAccount(rail);
    expect(queries()).toBe(5);
    await cache.tenantAccount({ tenantId: "ten_a", id: "acct_a2" }); // not this one
    await cache.tenantAccount({ tenantId: "ten_a", id: "acct_a1" }); // remembered again
    expect(queries()).toBe(5);
    await changes.close();
  });

  it("forgets everything on resync and remembers nothing while the bus is not listening", async () => {
    const { feed, publish, setListening } = manualChangeFeed();
    const { sql, queries } = counting();
    const cache = createAccountCache({ sql, changes: feed }, { entriesMax: 10 });
    const get = () => cache.tenantAccount({ tenantId: "ten_a", id: "acct_a1" });
    await get();
    await get();
    expect(queries()).toBe(1);
    setListening(false);
    publish({ kind: "resync" });
    await get();
    await get();
    expect(queries()).toBe(3);
    setListening(true);
    await get();
    await get();
    expect(queries()).toBe(4);
  });
});
