// /v1/events end to end, on PGlite and on PostgreSQL: a change's event written in its transaction with a public id
// that is not a counter (a random UUID's 32 hex digits, or an internal payment's id characters: 80 random bits after
// its time), not shared between tenants, listed newest first with the lists' convention and a type
// filter, retrieved by id, another tenant's not found, and pruned after the retention.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Row } from "../../core/index.ts";
import { listPage, listParams } from "../../gateway/http/lists.ts";
import { eventsList } from "../../gateway/http/resources/events.ts";
import { insertOutboxEvent } from "../../gateway/payments/index.ts";
import { createApiKey, createTenant } from "../../gateway/tenants/index.ts";
import { eventRetentionDays, pruneBatchEventsMax, pruneEvents } from "../../gateway/webhooks/events.ts";
import { latch } from "../support/latch.ts";
import { errorOf, startTestGateway, type TestGateway } from "./support.ts";

const eventIdPattern = /^evt_([0-9a-f]{32}|[0-9a-hjkmnp-tv-z]{26})$/;

describe.each(["pglite", "postgres"] as const)("on %s", (database) => {
  let gw: TestGateway;
  let other: { tenantId: string; key: string };

  beforeAll(async () => {
    gw = await startTestGateway({ database, env: { WEBHOOK_DELIVERY_INTERVAL_MS: "3600000" } });
    const tenant = await createTenant(gw.app.db, { name: "Other" });
    other = {
      tenantId: tenant.id,
      key: (await createApiKey(gw.app.db, { tenantId: tenant.id, mode: "test" })).secret,
    };
  });
  afterAll(async () => {
    await gw?.app.close();
  });

  async function pay(): Promise<string> {
    const payment = await gw.client.POST("/v1/payments", {
      body: {
        amount: "0.01",
        asset: "USDC",
        source: { account: gw.app.demo!.customer.id },
        destination: { type: "account", account: gw.app.demo!.merchant.id },
      },
    });
    expect(payment.response.status).toBe(201);
    return payment.data!.id;
  }

  it("a payment's event is listed and retrieved with its id, type, created and data.object", async () => {
    const before = Math.floor(Date.now() / 1000);
    const paymentId = await pay();
    const list = await gw.client.GET("/v1/events", { params: { query: { type: "payment.succeeded" } } });
    expect(list.response.status).toBe(200);
    const event = list.data!.data.find((item) => item.data.object.payment_id === paymentId);
    expect(event).toMatchObject({ object: "event", type: "payment.succeeded", livemode: false });
    // The payment's facts at its end, an amount in minor units (0.01 USDC), as a refund's event carries its own.
    expect(event!.data.object).toEqual({
      payment_id: paymentId,
      status: "succeeded",
      asset: "USDC",
      amount: "10000",
      source_account: gw.app.demo!.customer.id,
      rail: "internal-usdc",
    });
    // An internal payment's event is named by the payment id's characters (payments/internal.ts).
    expect(event!.id).toBe(`evt_${paymentId.slice("pay_".length)}`);
    expect(event!.created).toBeGreaterThanOrEqual(before);
    expect(event!.created).toBeLessThanOrEqual(Math.floor(Date.now() / 1000));
    const got = await gw.client.GET("/v1/events/{id}", { params: { path: { id: event!.id } } });
    expect(got.data).toEqual(event);
  });

  it("ids are not a counter, and another tenant's events are not found nor listed", async () => {
    for (let i = 0; i < 3; i++) await pay();
    await insertOutboxEvent(gw.app.db, {
      tenantId: other.tenantId,
      type: "payment.succeeded",
      payload: { payment_id: "pay_other" },
    });
    const mine = await gw.client.GET("/v1/events", { params: { query: { limit: 100 } } });
    const ids = mine.data!.data.map((event) => event.id);
    expect(ids.length).toBeGreaterThanOrEqual(3);
    for (const id of ids) expect(id).toMatch(eventIdPattern);
    expect(new Set(ids).size).toBe(ids.length);
    // Two events in a row are not neighbouring numbers: their ids differ past their time (80 random bits).
    expect(ids[0]!.slice(-16)).not.toBe(ids[1]!.slice(-16));
    const serials = await gw.app.db.query<{ id: string }>("SELECT id::text AS id FROM outbox");
    for (const { id } of serials) expect(ids).not.toContain(`evt_${id}`);

    const theirs = gw.clientFor(other.key);
    const theirList = await theirs.GET("/v1/events", {});
    expect(theirList.data!.data.map((event) => event.data.object.payment_id)).toEqual(["pay_other"]);
    const theirId = theirList.data!.data[0]!.id;
    expect(ids).not.toContain(theirId);
    const crossed = await theirs.GET("/v1/events/{id}", { params: { path: { id: ids[0]! } } });
    expect(crossed.response.status).toBe(404);
    expect(errorOf(crossed).code).toBe("event_not_found");
    const back = await gw.client.GET("/v1/events/{id}", { params: { path: { id: theirId } } });
    expect(errorOf(back).code).toBe("event_not_found");
    const cursor = await theirs.GET("/v1/events", { params: { query: { starting_after: ids[0]! } } });
    expect(cursor.response.status).toBe(400);
    expect(errorOf(cursor).code).toBe("parameter_invalid");
    const unknown = await gw.client.GET("/v1/events/{id}", {
      params: { path: { id: `evt_${"0".repeat(32)}` } },
    });
    expect(errorOf(unknown).code).toBe("event_not_found");
  });

  it("pages newest first, filters by type and created, and refuses a bad filter", async () => {
    await pay();
    await pay(); // two pages of one, whatever other tests wrote
    const all = await gw.client.GET("/v1/events", { params: { query: { limit: 100 } } });
    const ids = all.data!.data.map((event) => event.id);
    const firstPage = await gw.client.GET("/v1/events", { params: { query: { limit: 1 } } });
    expect(firstPage.data!.data.map((event) => event.id)).toEqual([ids[0]]);
    expect(firstPage.data!.has_more).toBe(true);
    const next = await gw.client.GET("/v1/events", {
      params: { query: { limit: 1, starting_after: ids[0]! } },
    });
    expect(next.data!.data.map((event) => event.id)).toEqual([ids[1]]);
    const future = await gw.client.GET("/v1/events", {
      params: { query: { "created[gt]": Math.floor(Date.now() / 1000) + 60 } },
    });
    expect(future.data!.data).toEqual([]);
    const none = await gw.client.GET("/v1/events", { params: { query: { type: "invoice.paid" } } });
    expect(none.data!.data).toEqual([]);
    const bad = await gw.call("GET", "/v1/events?type=Not%20a%20type");
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe("parameter_invalid");
  });

  it("without a type, merges each type's page: the same order as one sorted list, at most limit + 1 rows a type", async () => {
    const tenant = await createTenant(gw.app.db, { name: "Merged" });
    const client = gw.clientFor(
      (await createApiKey(gw.app.db, { tenantId: tenant.id, mode: "test" })).secret,
    );
    // 3 types × 40 events, 3 to a creation time (ties across types and within one), interleaved over 40 times,
    // from an hour ago (a list holds only what is older than every open transaction).
    const base = Math.floor(Date.now() / 1000) - 3_600;
    await gw.app.db.query(
      `INSERT INTO outbox (tenant_id, type, payload, created_at)
       SELECT $1, (ARRAY['payment.succeeded', 'payment.failed', 'invoice.paid'])[1 + n % 3], '{}',
              to_timestamp($2::bigint) + make_interval(secs => n / 3)
       FROM generate_series(0, 119) AS n`,
      [tenant.id, base],
    );
    const sorted = async (where = "") =>
      (
        await gw.app.db.query<{ id: string }>(
          `SELECT id FROM events WHERE tenant_id = $1 ${where} ORDER BY created_at DESC, seq DESC`,
          [tenant.id],
        )
      ).map((row) => row.id);
    const expected = await sorted();
    expect(expected).toHaveLength(120);
    type Query = { limit?: number; starting_after?: string; ending_before?: string; type?: string };
    const list = async (query: Query) => {
      const answer = await client.GET("/v1/events", { params: { query } });
      expect(answer.response.status).toBe(200);
      return { ids: answer.data!.data.map((event) => event.id), hasMore: answer.data!.has_more };
    };
    const forward: string[] = [];
    for (
      let page = await list({ limit: 7 });
      ;
      page = await list({ limit: 7, starting_after: forward.at(-1)! })
    ) {
      forward.push(...page.ids);
      if (!page.hasMore) break;
    }
    expect(forward).toEqual(expected);
    const backward: string[] = [];
    for (let page = await list({ limit: 9, ending_before: expected.at(-1)! }); ; ) {
      backward.unshift(...page.ids);
      if (!page.hasMore) break;
      page = await list({ limit: 9, ending_before: backward[0]! });
    }
    expect(backward).toEqual(expected.slice(0, -1));
    const created = base + 20;
    const since = await client.GET("/v1/events", {
      params: { query: { limit: 100, "created[gte]": created } },
    });
    expect(since.data!.data.map((event) => event.id)).toEqual(
      await sorted(`AND created_at >= to_timestamp(${created})`),
    );
    expect((await list({ limit: 100, type: "invoice.paid" })).ids).toEqual(
      await sorted("AND type = 'invoice.paid'"),
    );

    // The page's statement, read back through EXPLAIN ANALYZE: the outbox rows it read, over every scan of it.
    const statements: { text: string; params: readonly unknown[] }[] = [];
    const recording = {
      query: <R extends Row>(text: string, params: readonly unknown[] = []) => {
        statements.push({ text, params });
        return gw.app.db.query<R>(text, params);
      },
    };
    const page = await listPage(recording, eventsList(undefined, false, gw.app.db.kind), {
      tenantId: tenant.id,
      url: "/v1/events",
      params: listParams({ limit: 10, starting_after: expected[30] }),
    });
    expect(page.data.map((event) => event.id)).toEqual(expected.slice(31, 41));
    const listing = statements.at(-1)!;
    const [plan] = await gw.app.db.query<{ "QUERY PLAN": unknown }>(
      `EXPLAIN (ANALYZE, FORMAT JSON) ${listing.text}`,
      listing.params,
    );
    const json = plan!["QUERY PLAN"];
    const rowsRead = (node: Record<string, unknown>): number =>
      (node["Relation Name"] === "outbox" ? Number(node["Actual Rows"]) * Number(node["Actual Loops"]) : 0) +
      ((node.Plans as Record<string, unknown>[] | undefined) ?? []).reduce(
        (sum, child) => sum + rowsRead(child),
        0,
      );
    const read = rowsRead((typeof json === "string" ? JSON.parse(json) : json)[0].Plan);
    // 11 rows a type, the cursor's row, and one a type (and one past the last) to find the types.
    expect(read).toBeGreaterThan(0);
    expect(read).toBeLessThanOrEqual(3 * 11 + 1 + 4);
  });

  it("lists events of one creation time in the order written, and one written later in its millisecond after it", async () => {
    const tenant = await createTenant(gw.app.db, { name: "Ties" });
    const client = gw.clientFor(
      (await createApiKey(gw.app.db, { tenantId: tenant.id, mode: "test" })).secret,
    );
    const list = async (query: { ending_before?: string } = {}) =>
      (await client.GET("/v1/events", { params: { query: { limit: 100, ...query } } })).data!.data.map(
        (event) => [event.id, event.type],
      );
    const insert = (
      sql: Parameters<typeof insertOutboxEvent>[0],
      type: string,
      publicId: string,
      at: string,
    ) =>
      sql.query(
        "INSERT INTO outbox (tenant_id, type, payload, public_id, created_at) VALUES ($1, $2, '{}', $3, $4::timestamptz)",
        [tenant.id, type, publicId, at],
      );
    // Written in one transaction (one created_at), their random ids the other way round.
    const at = new Date(Date.now() - 60_000).toISOString();
    const [received, paid] = [`evt_${"f".repeat(32)}`, `evt_${"1".repeat(32)}`];
    await gw.app.db.transaction(async (tx) => {
      await insert(tx, "invoice.payment_received", received, at);
      await insert(tx, "invoice.paid", paid, at);
    });
    // Before: by their ids, invoice.paid listed as older than the payment it follows.
    expect(await list()).toEqual([
      [paid, "invoice.paid"],
      [received, "invoice.payment_received"],
    ]);
    // Another, written after the list was read, with the same creation time (PGlite's clock has whole
    // milliseconds) and an id below both: the poller's ending_before still finds it.
    const later = `evt_${"0".repeat(32)}`;
    await insert(gw.app.db, "invoice.reversed", later, at);
    expect(await list({ ending_before: paid })).toEqual([[later, "invoice.reversed"]]);
  });

  it("an event is written with its change or not at all: a transaction that fails leaves none", async () => {
    const before = await gw.app.db.query("SELECT 1 FROM outbox");
    await expect(
      gw.app.db.transaction(async (tx) => {
        await insertOutboxEvent(tx, {
          tenantId: gw.app.demo!.tenantId,
          type: "payment.succeeded",
          payload: { payment_id: "pay_rolled_back" },
        });
        throw new Error("the change failed");
      }),
    ).rejects.toThrow("the change failed");
    expect(await gw.app.db.query("SELECT 1 FROM outbox")).toHaveLength(before.length);
  });

  it(`prunes every event older than ${eventRetentionDays} days in one pass, a batch at a time`, async () => {
    // Three more old events than a batch: before, a pass deleted one batch and left the rest for the next hour.
    const oldCount = pruneBatchEventsMax + 3;
    await gw.app.db.query(
      `INSERT INTO outbox (tenant_id, type, payload, created_at)
       SELECT $1, 'payment.succeeded', jsonb_build_object('payment_id', 'pay_old_' || n),
              now() - make_interval(days => $2::int + 1)
         FROM generate_series(1, $3::int) AS n`,
      [gw.app.demo!.tenantId, eventRetentionDays, oldCount],
    );
    const old = await gw.app.db.query<{ id: string }>(
      "SELECT public_id AS id FROM outbox WHERE payload->>'payment_id' = 'pay_old_1'",
    );
    const kept = (await gw.app.db.query("SELECT 1 FROM outbox")).length - oldCount;
    expect((await pruneEvents(gw.app.db)).deleted).toBe(oldCount);
    expect(await gw.app.db.query("SELECT 1 FROM outbox")).toHaveLength(kept);
    const gone = await gw.client.GET("/v1/events/{id}", { params: { path: { id: old[0]!.id } } });
    expect(errorOf(gone).code).toBe("event_not_found");
  });
});

// On PostgreSQL, where transactions commit in another order than they began: an event's created_at is its
// transaction's start, so one committed late lands behind events already listed. A client polling newest first
// (ending_before the newest id it has seen, as it would to catch up on missed webhooks) must still see it.
describe("on postgres, an event committed after a later one", () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({ database: "postgres", env: { WEBHOOK_DELIVERY_INTERVAL_MS: "3600000" } });
  });
  afterAll(async () => {
    await gw?.app.close();
  });

  it("is not passed over by a client polling with ending_before", async () => {
    // A tenant of its own: what it has seen is only what this test wrote, whatever ran before.
    const { id: tenantId } = await createTenant(gw.app.db, { name: "Polling" });
    const client = gw.clientFor((await createApiKey(gw.app.db, { tenantId, mode: "test" })).secret);
    const write = (sql: Parameters<typeof insertOutboxEvent>[0], paymentId: string) =>
      insertOutboxEvent(sql, { tenantId, type: "payment.succeeded", payload: { payment_id: paymentId } });
    const poll = async (endingBefore: string | undefined) => {
      const page = await client.GET("/v1/events", {
        params: {
          query: { limit: 100, ...(endingBefore === undefined ? {} : { ending_before: endingBefore }) },
        },
      });
      expect(page.response.status).toBe(200);
      return page.data!.data;
    };
    await write(gw.app.db, "pay_first");
    await expect.poll(async () => (await poll(undefined)).length).toBe(1);
    let seen = (await poll(undefined)).map((event) => event.data.object.payment_id);
    let newest = (await poll(undefined))[0]!.id;
    // The slow transaction begins and writes its event; a later one writes and commits before it.
    const written = latch();
    const commit = latch();
    const slow = gw.app.db.transaction(async (tx) => {
      await write(tx, "pay_slow");
      written.release();
      await commit.done;
    });
    await written.done;
    await write(gw.app.db, "pay_fast");
    const catchUp = async () => {
      const page = await poll(newest);
      if (page.length > 0) newest = page[0]!.id;
      seen = [...page.map((event) => event.data.object.payment_id), ...seen];
    };
    await catchUp();
    commit.release();
    await slow;
    await expect
      .poll(async () => {
        await catchUp();
        return [...seen].sort();
      })
      .toEqual(["pay_fast", "pay_first", "pay_slow"]);
    // Each once, newest first in the order of their creation.
    expect(seen).toEqual(["pay_fast", "pay_slow", "pay_first"]);
  });

  it("a page toward older events (starting_after) shows every committed one, whatever transaction is open", async () => {
    const { id: tenantId } = await createTenant(gw.app.db, { name: "Backfilling" });
    const client = gw.clientFor((await createApiKey(gw.app.db, { tenantId, mode: "test" })).secret);
    const write = (paymentId: string) =>
      insertOutboxEvent(gw.app.db, {
        tenantId,
        type: "payment.succeeded",
        payload: { payment_id: paymentId },
      });
    // A transaction left open on the database (a backup's, an idle psql session's), begun before both events.
    const opened = latch();
    const close = latch();
    const open = gw.app.db.transaction(async (tx) => {
      await tx.query("SELECT 1");
      opened.release();
      await close.done;
    });
    await opened.done;
    try {
      await new Promise((resolve) => setTimeout(resolve, 5)); // the events' created_at after its start
      await write("pay_older");
      await write("pay_newer");
      const [newer] = await gw.app.db.query<{ id: string }>(
        "SELECT public_id AS id FROM outbox WHERE tenant_id = $1 AND payload->>'payment_id' = 'pay_newer'",
        [tenantId],
      );
      // The client learnt of the newer one (its webhook) and backfills what came before it.
      const page = await client.GET("/v1/events", {
        params: { query: { limit: 100, starting_after: newer!.id } },
      });
      expect(page.response.status).toBe(200);
      // Before: held back by the open transaction's start, though committed and older than the cursor; the walk on
      // from this page never came back to it.
      expect(page.data!.data.map((event) => event.data.object.payment_id)).toEqual(["pay_older"]);
    } finally {
      close.release();
      await open;
    }
  });

  // The horizon is read in a statement of its own, before the page's: read inside it (as it was), a transaction that
  // committed between the page's snapshot and its read of pg_stat_activity was passed over — a race within one
  // statement, which no test can hold open. This pins what the separate read must then do: hold back what begins
  // after it, though nothing was open when it was read.
  it("holds back what began after the horizon was read, though nothing was open then", async () => {
    const tenantId = gw.app.demo!.tenantId;
    const write = (sql: Parameters<typeof insertOutboxEvent>[0], paymentId: string) =>
      insertOutboxEvent(sql, { tenantId, type: "payment.succeeded", payload: { payment_id: paymentId } });
    // Between the horizon's read and the page's: a transaction begins and writes, a later one writes and commits.
    const written = latch();
    const commit = latch();
    let slow: Promise<void> | null = null;
    const interleaving = {
      query: async <R extends Row>(text: string, params: readonly unknown[] = []) => {
        const rows = await gw.app.db.query<R>(text, params);
        if (text.includes("pg_stat_activity") && slow === null) {
          slow = gw.app.db.transaction(async (tx) => {
            await write(tx, "pay_began_after");
            written.release();
            await commit.done;
          });
          await written.done;
          await write(gw.app.db, "pay_committed_after");
        }
        return rows;
      },
    };
    const page = await listPage(interleaving, eventsList(undefined, false, "postgres"), {
      tenantId,
      url: "/v1/events",
      params: listParams({ limit: 100 }),
    });
    commit.release();
    await slow;
    const listed = page.data.map((event) => event.data.object.payment_id);
    // Neither: the one committed after the horizon would have been passed over by the next ending_before.
    expect(listed).not.toContain("pay_committed_after");
    expect(listed).not.toContain("pay_began_after");
    const later = await gw.client.GET("/v1/events", { params: { query: { limit: 100 } } });
    const now = later.data!.data.map((event) => event.data.object.payment_id);
    expect(now).toEqual(expect.arrayContaining(["pay_committed_after", "pay_began_after"]));
  });
});
