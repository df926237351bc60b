// Delivery per (event, endpoint), against local receivers: one endpoint's failures never make another receive
// the event again; a tenant's hanging endpoints do not delay another tenant's event; backoff per delivery; give-up
// and an endpoint disabled with a webhook_endpoint.disabled event; the endpoint's delivery log and redelivery on
// demand, both tenant-scoped.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../core/index.ts";
import type { Db } from "../../gateway/db/index.ts";
import { createEgress } from "../../gateway/egress/index.ts";
import { createApiKey, createTenant } from "../../gateway/tenants/index.ts";
import { deleteWebhookEndpoint } from "../../gateway/webhooks/endpoints.ts";
import {
  claimDeliveries,
  type DeliveryDeps,
  type DeliveryResponse,
  deliverOutbox,
  fanOutEvents,
  type Send,
  startWebhookDelivery,
  webhookLimitsDefault,
} from "../../gateway/webhooks/index.ts";
import { latch } from "../support/latch.ts";
import { startTestGateway, type TestGateway } from "./support.ts";

type Received = { path: string; body: any; at: number };

/**
 * The rows an explained statement read from `table` (kept or filtered out), over every node and loop of its plan; with
 * `onlyIndex`, those read through that index alone.
 */
function rowsRead(plan: unknown, table: string, onlyIndex?: string): number {
  let read = 0;
  const visit = (node: Record<string, unknown>) => {
    const index = typeof node["Index Name"] === "string" ? (node["Index Name"] as string) : "";
    const counted =
      onlyIndex === undefined
        ? node["Relation Name"] === table || index.startsWith(`${table}_`)
        : index === onlyIndex;
    if (counted) {
      const loops = Number(node["Actual Loops"] ?? 1);
      const rows = Number(node["Actual Rows"] ?? 0) + Number(node["Rows Removed by Filter"] ?? 0);
      read += rows * loops;
    }
    for (const child of (node.Plans as Record<string, unknown>[] | undefined) ?? []) visit(child);
  };
  const explained = (typeof plan === "string" ? JSON.parse(plan) : plan) as {
    Plan: Record<string, unknown>;
  }[];
  for (const statement of explained) visit(statement.Plan);
  return read;
}

/** A receiver: /ok/… answers 204, /fail/… 500 while `failing` holds the path, /hang/… never answers. */
function receiver() {
  const received: Received[] = [];
  const failing = new Set<string>();
  let hanging = 0;
  const server: Server = createServer((request: IncomingMessage, response: ServerResponse) => {
    let body = "";
    request.on("data", (chunk: Buffer) => {
      body += chunk.toString("utf8");
    });
    request.on("end", () => {
      const path = request.url ?? "";
      received.push({ path, body: JSON.parse(body), at: Date.now() });
      if (path.startsWith("/hang/")) {
        hanging += 1;
        return;
      }
      response.statusCode = failing.has(path) ? 500 : 204;
      response.end();
    });
  });
  return {
    server,
    received,
    failing,
    hanging: () => hanging,
    count: (path: string) => received.filter((entry) => entry.path === path).length,
  };
}

describe.each(["pglite", "postgres"] as const)("webhook delivery per endpoint on %s", (database) => {
  let gw: TestGateway;
  let hooks: ReturnType<typeof receiver>;
  let base: string;

  beforeAll(async () => {
    hooks = receiver();
    await new Promise<void>((resolve) => hooks.server.listen(0, "127.0.0.1", resolve));
    const port = (hooks.server.address() as AddressInfo).port;
    base = `http://127.0.0.1:${port}`;
    gw = await startTestGateway({
      database,
      // The background loop stays idle: each test runs its own passes with its own limits.
      env: { WEBHOOK_DELIVERY_INTERVAL_MS: "3600000", EGRESS_ALLOW_HOSTS: `127.0.0.1:${port}` },
    });
  });
  afterAll(async () => {
    await gw?.app.close();
    hooks?.server.closeAllConnections();
    await new Promise((resolve) => hooks?.server.close(resolve));
  });

  /** A tenant of its own for each test, so that no other test's endpoints take its events. */
  async function tenant(name: string) {
    const made = await createTenant(gw.app.db, { name });
    const key = (await createApiKey(gw.app.db, { tenantId: made.id, mode: "test" })).secret;
    const endpoint = async (path: string): Promise<string> => {
      const answer = await gw.call("POST", "/v1/webhook_endpoints", { key, body: { url: `${base}${path}` } });
      expect(answer.status).toBe(201);
      return answer.body.id as string;
    };
    const emit = async (type = "payment.succeeded"): Promise<void> => {
      await gw.app.db.query("INSERT INTO outbox (tenant_id, type, payload) VALUES ($1, $2, $3)", [
        made.id,
        type,
        JSON.stringify({ payment_id: "pay_test" }),
      ]);
    };
    /** Its endpoints disabled: deliveries it leaves pending are no later test's business. */
    const quiet = async (): Promise<void> => {
      await gw.app.db.query("UPDATE webhook_endpoints SET enabled = false WHERE tenant_id = $1", [made.id]);
    };
    return { id: made.id, key, endpoint, emit, quiet };
  }

  const deps = (limits: Partial<DeliveryDeps["limits"]> = {}): DeliveryDeps => ({
    db: gw.app.db,
    limits: { ...webhookLimitsDefault, backoffBaseMs: 0, ...limits },
    nowMs: Date.now,
  });

  it("one endpoint's failures never make another receive the event again", async () => {
    const a = await tenant("per endpoint");
    await a.endpoint("/ok/1");
    await a.endpoint("/fail/1");
    hooks.failing.add("/fail/1");
    await a.emit();

    expect(await deliverOutbox(deps())).toEqual({ claimed: 2, delivered: 1, retried: 1, gaveUp: 0 });
    expect(await deliverOutbox(deps())).toEqual({ claimed: 1, delivered: 0, retried: 1, gaveUp: 0 });
    expect(await deliverOutbox(deps())).toEqual({ claimed: 1, delivered: 0, retried: 1, gaveUp: 0 });
    hooks.failing.delete("/fail/1");
    expect(await deliverOutbox(deps())).toEqual({ claimed: 1, delivered: 1, retried: 0, gaveUp: 0 });
    expect(await deliverOutbox(deps())).toEqual({ claimed: 0, delivered: 0, retried: 0, gaveUp: 0 });

    expect(hooks.count("/ok/1")).toBe(1);
    expect(hooks.count("/fail/1")).toBe(4);
    const bodies = hooks.received.filter((entry) => entry.path === "/fail/1").map((entry) => entry.body);
    expect(new Set(bodies.map((body) => body.id)).size).toBe(1); // one event, the same id each time
  });

  it("a tenant's hanging endpoints do not delay another tenant's event", async () => {
    const b = await tenant("slow B");
    for (let index = 0; index < 5; index += 1) await b.endpoint(`/hang/${index}`);
    const a = await tenant("prompt A");
    await a.endpoint("/ok/prompt");
    for (let index = 0; index < 3; index += 1) await b.emit();
    const egress = createEgress({ policy: { mode: "development", allowHosts: [new URL(base).host] } });
    const loop = startWebhookDelivery({
      ...deps(),
      send: egress.send,
      limits: { ...webhookLimitsDefault, deliveryTimeoutMs: 30_000, claimMs: 60_000 },
      intervalMs: 50,
      logger: silentLogger,
    });
    try {
      // B's deliveries are in flight, hanging, as many as its cap lets it have.
      await expect
        .poll(() => hooks.hanging(), { timeout: 5_000 })
        .toBe(webhookLimitsDefault.tenantInFlightMax);
      const sentMs = Date.now();
      await a.emit();
      await expect.poll(() => hooks.count("/ok/prompt"), { timeout: 2_000, interval: 20 }).toBe(1);
      const arrivedMs = hooks.received.find((entry) => entry.path === "/ok/prompt")!.at;
      expect(arrivedMs - sentMs).toBeLessThan(2_000);
      // B is still held at its cap: no more of its 15 deliveries started.
      expect(hooks.hanging()).toBe(webhookLimitsDefault.tenantInFlightMax);
    } finally {
      await loop.stop();
      await egress.close();
      await b.quiet();
    }
  });

  it("backs off per delivery: exponential, with jitter, capped", async () => {
    const c = await tenant("backoff");
    await c.endpoint("/fail/backoff");
    hooks.failing.add("/fail/backoff");
    await c.emit();
    const limits = { backoffBaseMs: 60_000, backoffMaxMs: 200_000 };
    const waitSeconds = async () => {
      const [row] = await gw.app.db.query<{ wait: number }>(
        `SELECT extract(epoch FROM next_attempt_at - last_attempt_at)::float8 AS wait
         FROM webhook_deliveries WHERE tenant_id = $1`,
        [c.id],
      );
      return Number(row!.wait);
    };
    const due = () =>
      gw.app.db.query("UPDATE webhook_deliveries SET next_attempt_at = now() WHERE tenant_id = $1", [c.id]);

    expect(await deliverOutbox({ ...deps(limits), random: () => 0 })).toMatchObject({ retried: 1 });
    expect(await waitSeconds()).toBeGreaterThanOrEqual(29); // 60 s, its lower half: 30 s
    expect(await waitSeconds()).toBeLessThan(32);
    expect(await deliverOutbox(deps(limits))).toMatchObject({ claimed: 0 }); // not due yet
    await due();
    expect(await deliverOutbox({ ...deps(limits), random: () => 0.999 })).toMatchObject({ retried: 1 });
    expect(await waitSeconds()).toBeGreaterThan(118); // 120 s at most
    expect(await waitSeconds()).toBeLessThan(122);
    await due();
    expect(await deliverOutbox({ ...deps(limits), random: () => 0.999 })).toMatchObject({ retried: 1 });
    expect(await waitSeconds()).toBeGreaterThan(198); // 240 s capped at 200 s
    expect(await waitSeconds()).toBeLessThan(202);
    expect(hooks.count("/fail/backoff")).toBe(3);
    hooks.failing.delete("/fail/backoff");
    await c.quiet();
  });

  it("gives a delivery up, disables an endpoint that keeps failing, and tells the tenant", async () => {
    const d = await tenant("disabled");
    const failingId = await d.endpoint("/fail/disable");
    const okId = await d.endpoint("/ok/disable");
    hooks.failing.add("/fail/disable");
    await d.emit();
    const limits = { giveUpAfterMs: 300, disableAfterMs: 300 };

    expect(await deliverOutbox(deps(limits))).toMatchObject({ claimed: 2, delivered: 1, retried: 1 });
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect(await deliverOutbox(deps(limits))).toMatchObject({ claimed: 1, gaveUp: 1 });
    // The disabled event goes to the endpoint still enabled, not to the disabled one.
    expect(await deliverOutbox(deps(limits))).toMatchObject({ claimed: 1, delivered: 1 });
    expect(await deliverOutbox(deps(limits))).toMatchObject({ claimed: 0 });

    expect(hooks.count("/fail/disable")).toBe(2);
    const told = hooks.received.filter((entry) => entry.path === "/ok/disable").map((entry) => entry.body);
    expect(told.map((body) => body.type)).toEqual(["payment.succeeded", "webhook_endpoint.disabled"]);
    expect(told[1].data.object).toMatchObject({
      webhook_endpoint_id: failingId,
      enabled: false,
      disabled_reason: "failing",
    });
    const shown = await gw.call("GET", `/v1/webhook_endpoints/${failingId}`, { key: d.key });
    expect(shown.body.enabled).toBe(false);

    // Enabled again by the tenant, it has a whole period again: one more failure does not disable it at once.
    const enabled = await gw.call("POST", `/v1/webhook_endpoints/${failingId}`, {
      key: d.key,
      body: { enabled: true },
    });
    expect(enabled.status).toBe(200);
    await d.emit();
    expect(await deliverOutbox(deps(limits))).toMatchObject({ claimed: 2, delivered: 1, retried: 1 });
    const again = await gw.call("GET", `/v1/webhook_endpoints/${failingId}`, { key: d.key });
    expect(again.body.enabled).toBe(true);
    await d.quiet();
    const log = await gw.call("GET", `/v1/webhook_endpoints/${failingId}/deliveries`, { key: d.key });
    expect(log.status).toBe(200);
    expect(log.body.data.map((delivery: any) => delivery.status)).toEqual(["pending", "failed"]);
    const okLog = await gw.call("GET", `/v1/webhook_endpoints/${okId}/deliveries`, { key: d.key });
    expect(okLog.body.data.map((delivery: any) => delivery.event_type)).toEqual([
      "payment.succeeded",
      "webhook_endpoint.disabled",
      "payment.succeeded",
    ]);
    hooks.failing.delete("/fail/disable");
  });

  it("keeps a log per endpoint and redelivers on demand, for the tenant's own deliveries only", async () => {
    const e = await tenant("log");
    const okId = await e.endpoint("/ok/log");
    const flakyId = await e.endpoint("/fail/log");
    hooks.failing.add("/fail/log");
    await e.emit();
    await deliverOutbox(deps());
    hooks.failing.delete("/fail/log");
    await deliverOutbox(deps());

    const log = await gw.call("GET", `/v1/webhook_endpoints/${flakyId}/deliveries`, { key: e.key });
    expect(log.status).toBe(200);
    expect(log.body).toMatchObject({
      object: "list",
      url: `/v1/webhook_endpoints/${flakyId}/deliveries`,
      has_more: false,
    });
    const [delivery] = log.body.data;
    expect(delivery).toMatchObject({
      object: "webhook_delivery",
      endpoint: flakyId,
      event_type: "payment.succeeded",
      status: "succeeded",
      attempt_count: 2,
      next_attempt: null,
    });
    expect(delivery.event).toMatch(/^evt_[0-9a-f]{32}$/);
    expect(delivery.attempts.map((attempt: any) => [attempt.status_code, attempt.error])).toEqual([
      [204, null],
      [500, "HTTP 500"],
    ]);
    for (const attempt of delivery.attempts) {
      expect(attempt.latency_ms).toBeGreaterThanOrEqual(0);
      expect(Math.abs(attempt.attempted_ms - Date.now())).toBeLessThan(60_000);
    }
    const failed = await gw.call("GET", `/v1/webhook_endpoints/${flakyId}/deliveries?status=failed`, {
      key: e.key,
    });
    expect(failed.body.data).toEqual([]);

    // Redelivery to the endpoint that already has it: it alone receives the event again.
    const okLog = await gw.call("GET", `/v1/webhook_endpoints/${okId}/deliveries`, { key: e.key });
    const okDelivery = okLog.body.data[0].id as string;
    expect(okDelivery).toMatch(/^whd_/);
    const retried = await gw.call("POST", `/v1/webhook_endpoints/${okId}/deliveries/${okDelivery}/retry`, {
      key: e.key,
    });
    expect(retried.status).toBe(200);
    expect(retried.body).toMatchObject({ id: okDelivery, status: "pending", attempt_count: 1 });
    // A cursor is one of the list's own: a delivery of another endpoint is refused (before: a page of this endpoint's
    // deliveries older than that one).
    const elsewhere = await gw.call(
      "GET",
      `/v1/webhook_endpoints/${flakyId}/deliveries?starting_after=${okDelivery}`,
      {
        key: e.key,
      },
    );
    expect(elsewhere.status).toBe(400);
    expect(elsewhere.body.error).toMatchObject({ code: "parameter_invalid", param: "starting_after" });
    expect(await deliverOutbox(deps())).toMatchObject({ claimed: 1, delivered: 1 });
    expect(hooks.count("/ok/log")).toBe(2);
    expect(hooks.count("/fail/log")).toBe(2);

    // Another tenant: 404 for A's endpoint, and for A's delivery through its own endpoint.
    const other = await tenant("other");
    const otherEndpoint = await other.endpoint("/ok/other");
    const before = await gw.tableDigests();
    const notMine = await gw.call("GET", `/v1/webhook_endpoints/${okId}/deliveries`, { key: other.key });
    expect([notMine.status, notMine.body.error.code]).toEqual([404, "webhook_endpoint_not_found"]);
    const retryNotMine = await gw.call(
      "POST",
      `/v1/webhook_endpoints/${okId}/deliveries/${okDelivery}/retry`,
      {
        key: other.key,
      },
    );
    expect([retryNotMine.status, retryNotMine.body.error.code]).toEqual([404, "webhook_endpoint_not_found"]);
    const throughMine = await gw.call(
      "POST",
      `/v1/webhook_endpoints/${otherEndpoint}/deliveries/${okDelivery}/retry`,
      { key: other.key },
    );
    expect([throughMine.status, throughMine.body.error.code]).toEqual([404, "webhook_delivery_not_found"]);
    expect(await gw.tableDigests()).toEqual(before);
  });
  it("fans a backlog out in one pass, each event to the endpoints that want it at that moment", async () => {
    const g = await tenant("backlog");
    const all = await g.endpoint("/ok/backlog/all");
    const paidOnly = await gw.call("POST", "/v1/webhook_endpoints", {
      key: g.key,
      body: { url: `${base}/ok/backlog/paid`, enabled_events: ["invoice.paid"] },
    });
    expect(paidOnly.status).toBe(201);
    // 1,050 events at once: 700 payments and 350 invoices paid, interleaved.
    const types = Array.from({ length: 1_050 }, (_, i) =>
      i % 3 === 2 ? "invoice.paid" : "payment.succeeded",
    );
    await gw.app.db.query(
      `INSERT INTO outbox (tenant_id, type, payload)
       SELECT $1, type, '{"payment_id":"pay_test"}'::jsonb FROM unnest($2::text[]) AS type`,
      [g.id, `{${types.join(",")}}`],
    );

    // One pass, in batches of 100: the whole backlog, not one batch of it.
    await fanOutEvents(deps({ batchEventsMax: 100 }));
    const [left] = await gw.app.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM outbox o, outbox_fan_out c
       WHERE o.tenant_id = $1 AND (o.xact, o.id) > (c.xact, c.id)`,
      [g.id],
    );
    expect(left!.n).toBe(0);
    const made = await gw.app.db.query<{ endpoint_id: string; n: number; events: number }>(
      `SELECT endpoint_id, count(*)::int AS n, count(DISTINCT event_id)::int AS events
       FROM webhook_deliveries WHERE tenant_id = $1 GROUP BY endpoint_id`,
      [g.id],
    );
    const byEndpoint = new Map(made.map((row) => [row.endpoint_id, row]));
    expect(byEndpoint.get(all)).toMatchObject({ n: 1_050, events: 1_050 });
    expect(byEndpoint.get(paidOnly.body.id as string)).toMatchObject({ n: 350, events: 350 });
    // Fanned out once: a second pass makes nothing more.
    expect(await fanOutEvents(deps({ batchEventsMax: 100 }))).toBe(0);
    await g.quiet();
  });

  it("moves past a backlog no endpoint wants in one pass, making nothing (its events are counted, not read back)", async () => {
    const quiet = await tenant("no endpoints");
    await gw.app.db.query(
      `INSERT INTO outbox (tenant_id, type, payload)
       SELECT $1, 'payment.succeeded', '{"payment_id":"pay_test"}'::jsonb FROM generate_series(1, 250)`,
      [quiet.id],
    );
    // Batches of 100: three, the last short; a pass that took a batch without wanted events for the last stops early.
    expect(await fanOutEvents(deps({ batchEventsMax: 100 }))).toBe(0);
    const [left] = await gw.app.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM outbox o, outbox_fan_out c
       WHERE o.tenant_id = $1 AND (o.xact, o.id) > (c.xact, c.id)`,
      [quiet.id],
    );
    expect(left!.n).toBe(0);
    const [made] = await gw.app.db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM webhook_deliveries WHERE tenant_id = $1",
      [quiet.id],
    );
    expect(made!.n).toBe(0);
  });

  it("fans out an event of a transaction still open once it commits, never skipping it for a later one", async () => {
    if (database === "pglite") return; // one connection: no transaction stays open beside the fan-out
    const h = await tenant("open transaction");
    const endpoint = await h.endpoint("/ok/open");
    const deliveredEvents = async () =>
      (
        await gw.app.db.query<{ payload: { n: string } }>(
          `SELECT o.payload FROM webhook_deliveries d JOIN outbox o ON o.id = d.event_id
           WHERE d.endpoint_id = $1 ORDER BY o.id`,
          [endpoint],
        )
      ).map((row) => row.payload.n);
    const event = (sql: { query: typeof gw.app.db.query }, n: string) =>
      sql.query("INSERT INTO outbox (tenant_id, type, payload) VALUES ($1, 'payment.succeeded', $2)", [
        h.id,
        JSON.stringify({ n }),
      ]);
    await gw.app.db.transaction(async (tx) => {
      await event(tx, "early, committed late"); // the smaller id, in a transaction that stays open
      await event(gw.app.db, "later, committed at once");
      await fanOutEvents(deps());
      // The later event waits behind the open transaction: fanning it out now would move the cursor past the other.
      expect(await deliveredEvents()).toEqual([]);
    });
    await fanOutEvents(deps());
    expect(await deliveredEvents()).toEqual(["early, committed late", "later, committed at once"]);
    await h.quiet();
  });

  it("reads only what a pass may claim: a backlog of thousands, a disabled endpoint's and a busy tenant's, is passed over", async () => {
    const big = await tenant("backlog");
    await big.endpoint("/ok/backlog/down");
    await big.endpoint("/ok/backlog/up");
    const small = await tenant("beside a backlog");
    await small.endpoint("/ok/beside");
    await gw.app.db.query(
      `INSERT INTO outbox (tenant_id, type, payload)
       SELECT $1, 'payment.succeeded', '{"payment_id":"pay_test"}'::jsonb FROM generate_series(1, 2500)`,
      [big.id],
    );
    await small.emit();
    while ((await fanOutEvents(deps())) > 0);
    await gw.app.db.query(
      "UPDATE webhook_endpoints SET enabled = false WHERE tenant_id = $1 AND url LIKE $2",
      [big.id, "%/down"],
    );
    // The pass's claim statement, kept to be explained below.
    let claim: { text: string; params: readonly unknown[] | undefined } | undefined;
    const db: Db = {
      ...gw.app.db,
      query: (text, params) => {
        if (text.includes("FOR UPDATE SKIP LOCKED")) claim = { text, params };
        return gw.app.db.query(text, params);
      },
    };
    try {
      const claimed = await claimDeliveries({ ...deps(), db }, webhookLimitsDefault.globalInFlightMax);
      expect(claimed.filter((delivery) => delivery.tenant_id === small.id)).toHaveLength(1);
      expect(claimed.filter((delivery) => delivery.tenant_id === big.id)).toHaveLength(
        webhookLimitsDefault.tenantInFlightMax,
      );
      expect(claimed.every((delivery) => delivery.url.endsWith("/up") || delivery.tenant_id !== big.id)).toBe(
        true,
      );
      // The same statement again, explained (and so run: in a transaction rolled back): the backlog (5,000 pending
      // rows, 2,500 of them behind a disabled endpoint, the rest behind a tenant at its in-flight bound) is not read.
      let explained: unknown;
      let idle: unknown;
      await gw.app.db
        .transaction(async (tx) => {
          const explain = async () => {
            const [plan] = await tx.query<{ "QUERY PLAN": unknown }>(
              `EXPLAIN (ANALYZE, FORMAT JSON) ${claim!.text}`,
              claim!.params,
            );
            return plan!["QUERY PLAN"];
          };
          explained = await explain();
          // Every pending delivery waiting out a backoff: the pass visits no endpoint at all.
          await tx.query(
            "UPDATE webhook_deliveries SET next_attempt_at = now() + interval '1 hour' WHERE status = 'pending'",
          );
          idle = await explain();
          throw new Error("rolled back");
        })
        .catch((error: unknown) => {
          if (!(error instanceof Error && error.message === "rolled back")) throw error;
        });
      expect(rowsRead(idle, "webhook_deliveries", "webhook_deliveries_endpoint_due")).toBe(0);
      const read = rowsRead(explained, "webhook_deliveries");
      expect(read).toBeGreaterThan(0);
      expect(read).toBeLessThan(100);
    } finally {
      await big.quiet();
      await small.quiet();
    }
  });

  it("sends each (event, endpoint) once when passes claim at the same time", async () => {
    const f = await tenant("two passes");
    for (let index = 0; index < 3; index += 1) await f.endpoint(`/ok/twice/${index}`);
    for (let index = 0; index < 5; index += 1) await f.emit();
    const wide = deps({ tenantInFlightMax: 100, globalInFlightMax: 4 });
    let claimed = 0;
    for (let round = 0; round < 20; round += 1) {
      const passes = await Promise.all([deliverOutbox(wide), deliverOutbox(wide), deliverOutbox(wide)]);
      const now = passes.reduce((sum, pass) => sum + pass.claimed, 0);
      if (now === 0) break;
      claimed += now;
    }
    expect(claimed).toBe(15);
    for (let index = 0; index < 3; index += 1) {
      const bodies = hooks.received.filter((entry) => entry.path === `/ok/twice/${index}`);
      expect(bodies).toHaveLength(5);
      expect(new Set(bodies.map((entry) => entry.body.id)).size).toBe(5);
    }
  });

  it("refuses at delivery, through the egress guard, an endpoint that now points at a non-public address", async () => {
    const g = await tenant("rebound");
    const id = await g.endpoint("/ok/rebound");
    await gw.app.db.query(
      "UPDATE webhook_endpoints SET url = 'http://169.254.169.254/latest' WHERE id = $1",
      [id],
    );
    await g.emit();
    const egress = createEgress({ policy: { mode: "development", allowHosts: [new URL(base).host] } });
    try {
      expect(await deliverOutbox({ ...deps(), send: egress.send })).toMatchObject({ claimed: 1, retried: 1 });
    } finally {
      await egress.close();
      await g.quiet();
    }
    expect(hooks.count("/ok/rebound")).toBe(0);
    const log = await gw.call("GET", `/v1/webhook_endpoints/${id}/deliveries`, { key: g.key });
    const [attempt] = log.body.data[0].attempts;
    expect(attempt.status_code).toBeNull();
    expect(attempt.error).toMatch(/refused|not public|not allowed/i);
  });

  // Last: it starts the cursor over, so events of the tests before it are read again (their deliveries made once).
  it("starts the cursor over when the database was restored into a cluster whose transaction ids are behind it", async () => {
    const r = await tenant("restored");
    const endpoint = await r.endpoint("/ok/restored");
    await fanOutEvents(deps()); // nothing older waits
    // As a restore leaves it: the cursor and the old cluster's events a million transactions ahead of this one.
    const [{ next }] = (await gw.app.db.query<{ next: string }>(
      "SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS next",
    )) as [{ next: string }];
    const old = (offset: number) => (BigInt(next) + 1_000_000n + BigInt(offset)).toString();
    const event = async (n: string, xact: string | null) => {
      const [row] = await gw.app.db.query<{ id: bigint }>(
        "INSERT INTO outbox (tenant_id, type, payload) VALUES ($1, 'payment.succeeded', $2) RETURNING id",
        [r.id, JSON.stringify({ n })],
      );
      if (xact !== null)
        await gw.app.db.query("UPDATE outbox SET xact = $1::xid8 WHERE id = $2", [xact, row!.id]);
      return row!.id;
    };
    await event("fanned out by the old cluster", old(0));
    const cursorId = await event("the old cluster's last fanned out", old(5));
    await event("not yet fanned out by the old cluster", old(9));
    await gw.app.db.query("UPDATE outbox_fan_out SET xact = $1::xid8, id = $2", [old(5), cursorId]);
    await event("written after the restore", null);

    await fanOutEvents(deps());
    const delivered = await gw.app.db.query<{ n: string }>(
      `SELECT o.payload->>'n' AS n FROM webhook_deliveries d JOIN outbox o ON o.id = d.event_id
       WHERE d.endpoint_id = $1 ORDER BY o.id`,
      [endpoint],
    );
    expect(delivered.map((row) => row.n).sort()).toEqual(
      ["not yet fanned out by the old cluster", "written after the restore"].sort(),
    );
    await r.quiet();
  });
  /** A send that waits, once it has started, for `open`; `started` resolves when it has. */
  function heldSend(answer: () => Promise<DeliveryResponse> = () => Promise.resolve({ statusCode: 204 })) {
    const gate = latch();
    const begun = latch();
    const send: Send = async () => {
      begun.release();
      await gate.done;
      return await answer();
    };
    return { send, started: begun.done, open: gate.release };
  }

  async function deliveryOf(endpointId: string) {
    const [row] = await gw.app.db.query<{ id: string; status: string; attempts: number; due: boolean }>(
      "SELECT id, status, attempts, next_attempt_at <= now() AS due FROM webhook_deliveries WHERE endpoint_id = $1",
      [endpointId],
    );
    return row;
  }

  it("an attempt whose endpoint was deleted while it was in flight records nothing and fails no pass", async () => {
    const t = await tenant("deleted in flight");
    const endpoint = await t.endpoint("/ok/deleted");
    await t.emit();
    const held = heldSend();
    const pass = deliverOutbox({ ...deps(), send: held.send });
    await held.started;
    expect(await deleteWebhookEndpoint(gw.app.db, { tenantId: t.id, id: endpoint })).toBe(true);
    held.open();
    // Before: the attempt's record broke the deliveries' foreign key, and the pass failed with it.
    expect(await pass).toEqual({ claimed: 1, delivered: 0, retried: 0, gaveUp: 0 });
    const [left] = await gw.app.db.query<{ n: bigint }>(
      "SELECT count(*) AS n FROM webhook_delivery_attempts WHERE tenant_id = $1",
      [t.id],
    );
    expect(left!.n).toBe(0n);
  });

  it("fans out no delivery to an endpoint deleted between the batch's read and its write", async () => {
    const t = await tenant("deleted at fan-out");
    const gone = await t.endpoint("/ok/gone");
    const kept = await t.endpoint("/ok/kept");
    await t.emit();
    let deletedOnce = false;
    const deleting = new Proxy(gw.app.db, {
      get(target, key) {
        if (key === "query")
          return async (text: string, params?: readonly unknown[]) => {
            if (!deletedOnce && text.includes("INSERT INTO webhook_deliveries")) {
              deletedOnce = true;
              await target.query("DELETE FROM webhook_endpoints WHERE id = $1", [gone]);
            }
            return await target.query(text, params);
          };
        const value = Reflect.get(target, key, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    }) satisfies Db;
    // Before: the batch's write broke the deliveries' foreign key, and nothing of it was fanned out.
    expect(await fanOutEvents({ ...deps(), db: deleting })).toBe(1);
    expect(deletedOnce).toBe(true);
    expect((await deliveryOf(kept))?.status).toBe("pending");
    await t.quiet();
  });

  it("an attempt that outlived its claim leaves the outcome recorded after it standing", async () => {
    const t = await tenant("late attempt");
    const endpoint = await t.endpoint("/ok/late");
    await t.emit();
    // The first pass's request answers 500 only after its claim ran out and a second pass delivered the event.
    const late = heldSend(async () => ({ statusCode: 500 }));
    const first = deliverOutbox({ ...deps({ claimMs: 200 }), send: late.send });
    await late.started;
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await deliverOutbox(deps())).toMatchObject({ claimed: 1, delivered: 1 });
    late.open();
    // Before: the late 500 made the delivery pending again (sent again) and the endpoint failing.
    expect(await first).toEqual({ claimed: 1, delivered: 0, retried: 0, gaveUp: 0 });
    expect(await deliveryOf(endpoint)).toMatchObject({ status: "succeeded", attempts: 1 });
    const shown = await gw.call("GET", `/v1/webhook_endpoints/${endpoint}/deliveries`, { key: t.key });
    expect(shown.body.data[0].attempts.map((attempt: any) => attempt.status_code).sort()).toEqual([204, 500]);
    const [health] = await gw.app.db.query<{ failing_since: Date | null }>(
      "SELECT failing_since FROM webhook_endpoints WHERE id = $1",
      [endpoint],
    );
    expect(health!.failing_since).toBeNull();
    expect(await deliverOutbox(deps())).toMatchObject({ claimed: 0 });
  });

  it("sends a delivery again when its redelivery was asked while an attempt was in flight", async () => {
    const t = await tenant("retry in flight");
    const endpoint = await t.endpoint("/ok/retry-in-flight");
    await t.emit();
    const held = heldSend();
    const pass = deliverOutbox({ ...deps(), send: held.send });
    await held.started;
    const delivery = (await deliveryOf(endpoint))!.id;
    const retried = await gw.call("POST", `/v1/webhook_endpoints/${endpoint}/deliveries/${delivery}/retry`, {
      key: t.key,
    });
    expect(retried.status).toBe(200);
    held.open();
    await pass;
    // Before: the attempt in flight recorded its success over the request, and nothing was sent again.
    expect(await deliveryOf(endpoint)).toMatchObject({ status: "pending", attempts: 1, due: true });
    expect(await deliverOutbox(deps())).toMatchObject({ claimed: 1, delivered: 1 });
    expect(hooks.count("/ok/retry-in-flight")).toBe(1);
    expect(await deliveryOf(endpoint)).toMatchObject({ status: "succeeded", attempts: 2 });
  });

  it("enabled again, gives up what ran past its retries while disabled instead of sending it; the rest goes on", async () => {
    const t = await tenant("paused past the retries");
    const endpoint = await t.endpoint("/fail/paused");
    hooks.failing.add("/fail/paused");
    await t.emit();
    expect(await deliverOutbox(deps())).toMatchObject({ claimed: 1, retried: 1 });
    const [stale] = await gw.app.db.query<{ id: string }>(
      "SELECT id FROM webhook_deliveries WHERE endpoint_id = $1",
      [endpoint],
    );
    await t.emit();
    await t.emit();
    // The first is due again at once (no backoff here): all three are retried.
    expect(await deliverOutbox(deps())).toMatchObject({ claimed: 3, retried: 3 });
    const [asked, recent] = await gw.app.db.query<{ id: string }>(
      "SELECT id FROM webhook_deliveries WHERE endpoint_id = $1 AND id <> $2 ORDER BY id",
      [endpoint, stale!.id],
    );
    const set = async (enabled: boolean) =>
      (await gw.call("POST", `/v1/webhook_endpoints/${endpoint}`, { key: t.key, body: { enabled } })).status;
    expect(await set(false)).toBe(200);
    // Disabled for days: two deliveries' retries (3 days from their fan-out) ran out meanwhile, and the tenant asked
    // for one of them to be sent again; all are due.
    await gw.app.db.query(
      "UPDATE webhook_deliveries SET created_at = now() - interval '4 days' WHERE id = ANY($1::text[])",
      [[stale!.id, asked!.id]],
    );
    const retried = await gw.call("POST", `/v1/webhook_endpoints/${endpoint}/deliveries/${asked!.id}/retry`, {
      key: t.key,
    });
    expect(retried.status).toBe(200);
    await gw.app.db.query("UPDATE webhook_deliveries SET next_attempt_at = now() WHERE endpoint_id = $1", [
      endpoint,
    ]);
    hooks.failing.delete("/fail/paused");
    expect(await set(true)).toBe(200);
    // Before: all three were sent, the four-day-old one not asked for once more before it was given up.
    expect(await deliverOutbox(deps())).toMatchObject({ claimed: 2, delivered: 2 });
    expect(hooks.count("/fail/paused")).toBe(6); // four failed attempts, then the two still wanted
    const statuses = await gw.app.db.query<{ id: string; status: string }>(
      "SELECT id, status FROM webhook_deliveries WHERE endpoint_id = $1",
      [endpoint],
    );
    const named = { [stale!.id]: "stale", [asked!.id]: "asked", [recent!.id]: "recent" };
    expect(Object.fromEntries(statuses.map((row) => [named[row.id], row.status]))).toEqual({
      stale: "failed",
      asked: "succeeded",
      recent: "succeeded",
    });
    await t.quiet();
  });

  it("counts no time an endpoint spent disabled by hand as failing: re-enabled, it gets a whole period", async () => {
    const t = await tenant("disabled by hand");
    const endpoint = await t.endpoint("/fail/by-hand");
    hooks.failing.add("/fail/by-hand");
    const limits = { disableAfterMs: 500 };
    await t.emit();
    expect(await deliverOutbox(deps(limits))).toMatchObject({ claimed: 1, retried: 1 });
    const set = async (enabled: boolean) =>
      (await gw.call("POST", `/v1/webhook_endpoints/${endpoint}`, { key: t.key, body: { enabled } })).status;
    expect(await set(false)).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 700));
    expect(await set(true)).toBe(200);
    // Before: its failing time ran on while it was disabled, and this one failure disabled it at once.
    expect(await deliverOutbox(deps(limits))).toMatchObject({ claimed: 1, retried: 1 });
    const shown = await gw.call("GET", `/v1/webhook_endpoints/${endpoint}`, { key: t.key });
    expect(shown.body.enabled).toBe(true);
    await t.quiet();
    hooks.failing.delete("/fail/by-hand");
  });
});
