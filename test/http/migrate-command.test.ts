// `npm run migrate` (gateway/migrate.ts) as a deploy runs it, a process of its own: on a fresh database whose default
// collation is ICU's en-US it applies every migration and makes the gateway's text columns C, then exits 0; run
// again it has nothing to apply; with no database configured (PGlite in memory) it says so and exits 2.
import { execFile } from "node:child_process";
import { readdir } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { describe, expect, inject, it } from "vitest";
import { migrationSources } from "../../gateway/app.ts";
import { createTestDatabase } from "../support/postgres.ts";

const root = path.resolve(import.meta.dirname, "../..");
const execFileAsync = promisify(execFile);

async function runMigrate(env: Record<string, string | undefined>) {
  try {
    const { stdout, stderr } = await execFileAsync(
      process.execPath,
      [path.join(root, "gateway/migrate.ts")],
      {
        cwd: root,
        env,
        timeout: 120_000,
      },
    );
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: failed.code ?? -1, stdout: failed.stdout ?? "", stderr: failed.stderr ?? "" };
  }
}

describe("npm run migrate", () => {
  it("applies every migration to a new database and makes its text columns C, then has nothing to do", async () => {
    const url = await createTestDatabase(inject("postgresUrl"), "migrate", { icuLocale: "en-US" });
    const env = { ...process.env, DATABASE_URL: url, PGLITE_DIR: undefined };
    const files = (
      await Promise.all(
        migrationSources.map(async (source) =>
          (await readdir(source.directory)).filter((name) => name.endsWith(".sql")),
        ),
      )
    ).flat();
    const first = await runMigrate(env);
    expect(first).toMatchObject({ code: 0 });
    expect(first.stdout).toMatch(
      new RegExp(`^switchyard migrate: applied ${files.length} in \\d+ ms: ledger/`),
    );
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      const { rows } = await client.query<{ name: string }>(
        `SELECT c.relname || '.' || a.attname AS name
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
         WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r' AND a.attnum > 0
           AND NOT a.attisdropped AND a.attcollation NOT IN (0, 'pg_catalog."C"'::regcollation)`,
      );
      expect(rows).toEqual([]);
      const { rows: text } = await client.query<{ count: string }>(
        `SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
         WHERE c.relname = 'payments' AND a.atttypid = 'text'::regtype AND a.attcollation = 'pg_catalog."C"'::regcollation`,
      );
      expect(Number(text[0]!.count)).toBeGreaterThan(5);
    } finally {
      await client.end();
    }
    const again = await runMigrate(env);
    expect(again).toMatchObject({ code: 0 });
    expect(again.stdout).toMatch(/^switchyard migrate: up to date \(\d+ ms\)\n$/);
  });

  it("with no database configured, says so and exits 2", async () => {
    const nothing = await runMigrate({ ...process.env, DATABASE_URL: undefined, PGLITE_DIR: undefined });
    expect(nothing.code).toBe(2);
    expect(nothing.stderr).toContain("no database to migrate: set DATABASE_URL (or PGLITE_DIR)");
    expect(nothing.stdout).toBe("");
  });
});
