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

/** A connection of its own to the database at `to`. */
async function connected(to: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: to });
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
  it.each([
    {
      number: 47,
      table: "outbox",
      building: "outbox_tenant_type_list_by_id",
      built: ["outbox_tenant_type_list"],
    },
    {
      number: 51,
      table: "webhook_deliveries",
      building: "webhook_deliveries_endpoint_due",
      built: ["webhook_deliveries_claimed", "webhook_deliveries_endpoint_due"],
    },
  ])(
    "$number builds its indexes on $table while a payment's write is open, without holding the writes behind it",
    async ({ number, table, building, built }) => {
      const namespace = gatewayMigrations.namespace;
      const freshUrl = await createTestDatabase(inject("postgresUrl"), `migrate_outside_${number}`);
      const fresh = openPostgres({ url: freshUrl, poolSizeMax: 2, statementTimeoutMs: 30_000 });
      const [open, later, watcher] = [
        await connected(freshUrl),
        await connected(freshUrl),
        await connected(freshUrl),
      ];
      try {
        await migrate(fresh, [ledgerMigrations, { namespace, directory: await migrationsBelow(number) }]);
        // A payment's transaction that has written to the table and not committed yet.
        await open.query("BEGIN");
        await open.query(`LOCK TABLE ${table} IN ROW EXCLUSIVE MODE`);
        const migrating = migrate(fresh, [
          ledgerMigrations,
          { namespace, directory: await migrationsBelow(number + 1) },
        ]);
        migrating.catch(() => undefined);
        // The migration's index statement waits for that transaction, as any must.
        await expect
          .poll(
            async () =>
              (
                await watcher.query(
                  `SELECT count(*)::int AS n FROM pg_stat_activity
                 WHERE wait_event_type = 'Lock' AND query ILIKE '%INDEX%' || $1 || '%'`,
                  [table],
                )
              ).rows[0].n,
            { timeout: 20_000, interval: 50 },
          )
          .toBe(1);
        // The next payment's write meanwhile. Before: queued behind the build's lock, refused at lock_timeout.
        await later.query("SET lock_timeout = '3s'");
        await later.query("BEGIN");
        await later.query(`LOCK TABLE ${table} IN ROW EXCLUSIVE MODE`);
        await later.query("COMMIT");
        await open.query("COMMIT");
        expect((await migrating).filter((name) => name.startsWith(`${namespace}/00${number}_`))).toHaveLength(
          1,
        );
        const indexes = await watcher.query(
          `SELECT c.relname AS name, i.indisvalid AS valid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
         WHERE c.relname = ANY($1::text[]) ORDER BY 1`,
          [[...built, building]],
        );
        expect(indexes.rows).toEqual(built.map((name) => ({ name, valid: true })));
      } finally {
        await open.query("ROLLBACK").catch(() => undefined);
        await later.query("ROLLBACK").catch(() => undefined);
        for (const client of [open, later, watcher]) await client.end();
        await fresh.close();
      }
    },
  );

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
