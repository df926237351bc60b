// On a database whose default collation is linguistic (ICU en-US here; en_US.UTF-8 is the default of the official
// PostgreSQL image), the gateway's text columns compare as bytes once it has started (gateway/db/bytewise.ts): their
// B-tree indexes call memcmp, not the locale's collation. The payment path, the lists, the events (the merged list
// too) and an Idempotency-Key's replay then work on the columns changed and the views made again; a table of
// another application in the same schema is left as it was.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { gatewayMigrations } from "../../gateway/app.ts";
import { bytewiseText } from "../../gateway/db/bytewise.ts";
import { createTestDatabase } from "../support/postgres.ts";
import { startTestGateway, type TestGateway } from "./support.ts";

describe("on a database whose default collation is ICU's en-US", () => {
  let gw: TestGateway;

  beforeAll(async () => {
    const url = await createTestDatabase(inject("postgresUrl"), "collation", { icuLocale: "en-US" });
    // Another application's table, there before the gateway's first start.
    const other = new pg.Client({ connectionString: url });
    await other.connect();
    await other.query("CREATE TABLE their_notes (body text)");
    await other.end();
    gw = await startTestGateway({ database: "postgres", databaseUrl: url });
  });
  afterAll(async () => {
    await gw?.app.close();
  });

  /** The schema's collatable columns and index keys not in C, as table.column (index: name.position). */
  async function notBytewise(): Promise<string[]> {
    const columns = await gw.app.db.query<{ name: string }>(
      `SELECT c.relname || '.' || a.attname AS name
       FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
       WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p') AND a.attnum > 0
         AND NOT a.attisdropped AND a.attcollation NOT IN (0, 'pg_catalog."C"'::regcollation)
       ORDER BY 1`,
    );
    const keys = await gw.app.db.query<{ name: string }>(
      `SELECT i.indexrelid::regclass::text || '.' || k.place AS name
       FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid, unnest(i.indcollation::oid[]) WITH ORDINALITY AS k (coll, place)
       WHERE c.relnamespace = current_schema()::regnamespace AND k.coll NOT IN (0, 'pg_catalog."C"'::regcollation)
       ORDER BY 1`,
    );
    return [...columns, ...keys].map((row) => row.name);
  }

  it("makes every text column of the gateway's tables, and their indexes, C; another application's keeps the default", async () => {
    const [database] = await gw.app.db.query<{ provider: string; a_before_b: boolean }>(
      `SELECT datlocprovider AS provider, 'a' < 'B' AS a_before_b FROM pg_database WHERE datname = current_database()`,
    );
    // The database sorts linguistically (bytes would put 'B' first): the test means something.
    expect(database).toEqual({ provider: "i", a_before_b: true });
    expect(await notBytewise()).toEqual(["their_notes.body"]);
    // The gateway's columns now sort by bytes ('B' before 'a'); the database's default puts 'a' first.
    const [order] = await gw.app.db.query<{ ids: string[] }>(
      "SELECT array_agg(id ORDER BY id) AS ids FROM (SELECT id FROM tenants UNION ALL SELECT 'B' UNION ALL SELECT 'a') AS t (id) WHERE id IN ('a', 'B')",
    );
    expect(order!.ids).toEqual(["B", "a"]);
    // The triggers that name a column (x402's payer holds follow an authorization's status) were made again.
    const triggers = await gw.app.db.query<{ name: string }>(
      "SELECT tgname AS name FROM pg_trigger WHERE tgrelid = 'x402_authorizations'::regclass AND NOT tgisinternal ORDER BY 1",
    );
    expect(triggers.map((trigger) => trigger.name)).toEqual([
      "x402_payer_holds_claimed",
      "x402_payer_holds_follow_delete",
      "x402_payer_holds_follow_update",
    ]);
  });

  it("pays, lists, shows events (merged and by type) and replays a key on the changed columns and views", async () => {
    const key = "collation-replay-1";
    const body = {
      amount: "0.01",
      asset: "USDC",
      source: { account: gw.app.demo!.customer.id },
      destination: { type: "account", account: gw.app.demo!.merchant.id },
    } as const;
    const first = await gw.client.POST("/v1/payments", {
      body,
      params: { header: { "Idempotency-Key": key } },
    });
    expect(first.response.status).toBe(201);
    const again = await gw.client.POST("/v1/payments", {
      body,
      params: { header: { "Idempotency-Key": key } },
    });
    expect(again.data!.id).toBe(first.data!.id);
    const shown = await gw.client.GET("/v1/payments/{id}", { params: { path: { id: first.data!.id } } });
    expect(shown.data).toMatchObject({ id: first.data!.id, status: "succeeded" });
    const list = await gw.client.GET("/v1/payments", { params: { query: { limit: 5 } } });
    expect(list.data!.data.map((payment) => payment.id)).toContain(first.data!.id);
    const events = await gw.client.GET("/v1/events", {});
    expect(events.data!.data.map((event) => event.data.object.payment_id)).toContain(first.data!.id);
    const typed = await gw.client.GET("/v1/events", { params: { query: { type: "payment.succeeded" } } });
    expect(typed.data!.data.map((event) => event.id)).toEqual(
      events.data!.data.filter((event) => event.type === "payment.succeeded").map((event) => event.id),
    );
  });

  it("changes a column a later migration adds at the next start, and nothing when nothing is left", async () => {
    await gw.app.db.query("ALTER TABLE payments ADD COLUMN later_note text");
    expect(await notBytewise()).toEqual(["payments.later_note", "their_notes.body"]);
    expect(await bytewiseText(gw.app.db, [gatewayMigrations])).toEqual(["payments.later_note"]);
    expect(await bytewiseText(gw.app.db, [gatewayMigrations])).toEqual([]);
    expect(await notBytewise()).toEqual(["their_notes.body"]);
    await gw.app.db.query("ALTER TABLE payments DROP COLUMN later_note");
  });
});
