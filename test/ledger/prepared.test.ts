// On PostgreSQL, reads and writes run as named prepared statements (gateway/db openPostgres): parsed and planned
// once per connection. A statement of another kind (DDL) stays unnamed; one whose table changed under it is parsed
// again.
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type Db, openPostgres } from "../../gateway/db/index.ts";
import { createTestDatabase } from "../support/postgres.ts";

let db: Db;
beforeAll(async () => {
  db = openPostgres({
    url: await createTestDatabase(inject("postgresUrl"), "prepared"),
    poolSizeMax: 1,
    statementTimeoutMs: 10_000,
  });
});
afterAll(async () => {
  await db?.close();
});

const prepared = (sql: Db) =>
  sql.query<{ statement: string }>("SELECT statement FROM pg_prepared_statements ORDER BY prepare_time");

describe("statements on PostgreSQL", () => {
  it("keeps a read or a write parsed on its connection, under one name for one text", async () => {
    await db.query("CREATE TABLE prepared_probe (n int)");
    for (let n = 0; n < 3; n += 1) await db.query("INSERT INTO prepared_probe (n) VALUES ($1)", [n]);
    const rows = await db.query<{ n: number }>("SELECT n FROM prepared_probe WHERE n >= $1 ORDER BY n", [1]);
    expect(rows.map((row) => row.n)).toEqual([1, 2]);
    const statements = (await prepared(db)).map((row) => row.statement);
    expect(statements.filter((text) => text.startsWith("INSERT INTO prepared_probe"))).toHaveLength(1);
    expect(statements).toContain("SELECT n FROM prepared_probe WHERE n >= $1 ORDER BY n");
    expect(statements.some((text) => text.startsWith("CREATE TABLE"))).toBe(false);
  });

  it("parses a statement again once a table under it changed (a migration from another process)", async () => {
    await db.query("CREATE TABLE prepared_changing (n int)");
    await db.query("INSERT INTO prepared_changing (n) VALUES (1)");
    const read = () => db.query<{ n: unknown }>("SELECT * FROM prepared_changing");
    expect(await read()).toEqual([{ n: 1 }]);
    await db.query("ALTER TABLE prepared_changing ALTER COLUMN n TYPE text");
    // The statement kept on the connection no longer fits: that one call fails (as it would have unprepared, had
    // the change come in the middle of it), and the statement is parsed again from the next.
    await read().catch(() => null);
    expect(await read()).toEqual([{ n: "1" }]);
    expect(await read()).toEqual([{ n: "1" }]);
  });
});
