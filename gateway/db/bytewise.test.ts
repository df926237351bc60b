// bytewiseText on a database whose default collation is already C (PGlite's): nothing to change, nothing changed.
// On a linguistic one (ICU en-US on PostgreSQL): test/http/collation.test.ts.
import { afterAll, beforeAll, expect, it } from "vitest";
import { bytewiseText } from "./bytewise.ts";
import { type Db, openPglite } from "./index.ts";

let db: Db;

beforeAll(async () => {
  db = await openPglite(undefined);
  await db.exec("CREATE TABLE notes (id text PRIMARY KEY, body text)");
}, 120_000);

afterAll(async () => {
  await db?.close();
});

it("changes nothing where the database's default collation is C", async () => {
  const [database] = await db.query<{ collate: string }>(
    "SELECT datcollate AS collate FROM pg_database WHERE datname = current_database()",
  );
  expect(database!.collate).toBe("C");
  const everything = { namespace: "notes", directory: "/nowhere", tables: () => true };
  expect(await bytewiseText(db, [everything])).toEqual([]);
  const columns = await db.query<{ name: string; collation: string }>(
    `SELECT a.attname AS name, co.collname AS collation FROM pg_attribute a JOIN pg_collation co ON co.oid = a.attcollation
     WHERE a.attrelid = 'notes'::regclass AND a.attnum > 0 ORDER BY a.attnum`,
  );
  expect(columns).toEqual([
    { name: "id", collation: "default" },
    { name: "body", collation: "default" },
  ]);
});
