// Migrations marked to run outside a transaction (gateway/db outsideTransaction) on PostgreSQL: an index built
// concurrently does not hold the writes of the version still serving while `npm run migrate` runs ahead of the next.
// Before, migration 0051 built its indexes on webhook_deliveries inside the migration's transaction: waiting for a
// payment's open outbox write, its CREATE INDEX queued a lock that every later payment's write then queued behind.
import { cp, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { gatewayMigrations } from "../../gateway/app.ts";
import { type Db, migrate, openPostgres, outsideTransaction } from "../../gateway/db/index.ts";
import { ledgerMigrations } from "../../gateway/ledger/index.ts";
import { createTestDatabase } from "../support/postgres.ts";

let url: string;
let db: Db;
const folders: string[] = [];

/** A folder of the gateway's migrations whose number is below `below`. */
async function migrationsBelow(below: number): Promise<string> {
  const folder = await mkdtemp(path.join(tmpdir(), "switchyard-migrations-"));
  folders.push(folder);
  for (const file of await readdir(gatewayMigrations.directory))
    if (/^\d{4}_.*\.sql$/.test(file) && Number(file.slice(0, 4)) < below)
      await cp(path.join(gatewayMigrations.directory, file), path.join(folder, file));
  return folder;
}

async function connected(): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  return client;
}

beforeAll(async () => {
  url = await createTestDatabase(inject("postgresUrl"), "migrate_outside");
  db = openPostgres({ url, poolSizeMax: 4, statementTimeoutMs: 30_000 });
});
afterAll(async () => {
  await db?.close();
  for (const folder of folders) await rm(folder, { recursive: true, force: true });
});

describe("a migration outside a transaction", () => {
  it("builds 0051's indexes while a payment's outbox write is open, without holding the writes behind it", async () => {
    const namespace = gatewayMigrations.namespace;
    await migrate(db, [ledgerMigrations, { namespace, directory: await migrationsBelow(51) }]);
    // A payment's transaction that has written to the outbox and not committed yet.
    const open = await connected();
    const later = await connected();
    const watcher = await connected();
    try {
      await open.query("BEGIN");
      await open.query("LOCK TABLE webhook_deliveries IN ROW EXCLUSIVE MODE");
      const migrating = migrate(db, [ledgerMigrations, { namespace, directory: await migrationsBelow(52) }]);
      migrating.catch(() => undefined);
      // The index build waits for that transaction, as either kind of build must.
      await expect
        .poll(
          async () =>
            (
              await watcher.query(
                `SELECT count(*)::int AS n FROM pg_stat_activity
                 WHERE wait_event_type = 'Lock' AND query ILIKE '%CREATE INDEX%webhook_deliveries_endpoint_due%'`,
              )
            ).rows[0].n,
          { timeout: 20_000, interval: 50 },
        )
        .toBe(1);
      // The next payment's outbox write meanwhile. Before: queued behind the build's lock, refused at lock_timeout.
      await later.query("SET lock_timeout = '3s'");
      await later.query("BEGIN");
      await later.query("LOCK TABLE webhook_deliveries IN ROW EXCLUSIVE MODE");
      await later.query("COMMIT");
      await open.query("COMMIT");
      expect(await migrating).toEqual([`${namespace}/0051_webhook_claim_indexes.sql`]);
      const indexes = await watcher.query(
        `SELECT c.relname AS name, i.indisvalid AS valid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
         WHERE c.relname IN ('webhook_deliveries_endpoint_due', 'webhook_deliveries_claimed') ORDER BY 1`,
      );
      expect(indexes.rows).toEqual([
        { name: "webhook_deliveries_claimed", valid: true },
        { name: "webhook_deliveries_endpoint_due", valid: true },
      ]);
    } finally {
      await open.query("ROLLBACK").catch(() => undefined);
      await later.query("ROLLBACK").catch(() => undefined);
      for (const client of [open, later, watcher]) await client.end();
    }
  });

  it("is not recorded when a statement fails, and runs again from its start: its invalid index rebuilt", async () => {
    const folder = await mkdtemp(path.join(tmpdir(), "switchyard-migrations-"));
    folders.push(folder);
    await writeFile(
      path.join(folder, "0001_table.sql"),
      "CREATE TABLE outside_t (a int NOT NULL);\nINSERT INTO outside_t VALUES (1), (1), (2);\n",
    );
    await writeFile(
      path.join(folder, "0002_unique.sql"),
      `${outsideTransaction}\nDROP INDEX CONCURRENTLY IF EXISTS outside_t_a;\nCREATE UNIQUE INDEX CONCURRENTLY outside_t_a ON outside_t (a);\n`,
    );
    const source = { namespace: "outside_test", directory: folder };
    // The duplicate fails the build, which leaves its index behind, invalid.
    await expect(migrate(db, [source])).rejects.toThrow(/could not create unique index/);
    const validity = async () =>
      (
        await db.query<{ valid: boolean }>(
          "SELECT i.indisvalid AS valid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = 'outside_t_a'",
        )
      ).map((row) => row.valid);
    expect(await validity()).toEqual([false]);
    expect(
      await db.query("SELECT name FROM schema_migrations WHERE name = 'outside_test/0002_unique.sql'"),
    ).toEqual([]);
    // The lock was given back with the failed session: the next run takes it, and applies the migration whole.
    await db.query("DELETE FROM outside_t WHERE a = 1");
    expect(await migrate(db, [source])).toEqual(["outside_test/0002_unique.sql"]);
    expect(await validity()).toEqual([true]);
    expect(await migrate(db, [source])).toEqual([]);
  });

  it("gives its connection back to the pool with the pool's settings: the statement timeout, no lock timeout", async () => {
    const one = openPostgres({ url, poolSizeMax: 1, statementTimeoutMs: 12_000 });
    try {
      await migrate(one, [ledgerMigrations]);
      expect(
        await one.query(
          "SELECT current_setting('statement_timeout') AS statement, current_setting('lock_timeout') AS lock",
        ),
      ).toEqual([{ statement: "12s", lock: "0" }]);
    } finally {
      await one.close();
    }
  });
});
