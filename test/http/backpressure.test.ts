// Backpressure, never collapse (issue #19): past the admission limit (REQUESTS_IN_FLIGHT_MAX) a /v1 request is
// answered at once 503 `overloaded` with Retry-After, before its API key is checked or its body read, and writes
// nothing; requests held in flight (bodies sent half-way over real sockets) are counted until their responses close,
// and a client that hangs up or a request that fails leaves nothing counted. A full ledger queue
// (LEDGER_QUEUE_TRANSFERS_MAX, the writer held behind the clock's row lock on PostgreSQL) is the same 503, and
// its refused payments write nothing and go through when retried.
import { randomBytes } from "node:crypto";
import net from "node:net";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, it, vi } from "vitest";
import { type App, createApp, railModules } from "../../gateway/app.ts";
import { apiVersions } from "../../gateway/tenants/index.ts";
import { typedClient } from "../support/api.ts";
import { testConfig } from "../support/config.ts";
import { createTestDatabase } from "../support/postgres.ts";
import { createToyRail, toyWebhookPath } from "../support/toy-rail-module.ts";
import { errorOf } from "./support.ts";

const internal = (amount: string) => ({
  amount,
  asset: "USDC" as const,
  source: { account: "acct_demo_customer" },
  destination: { type: "account" as const, account: "acct_demo_merchant" },
});

/** Raw requests: for what the typed client would not send (a key not of the form of one, a body not JSON). */
async function call(
  app: App,
  method: "GET" | "POST",
  url: string,
  options: { body?: unknown; rawBody?: string; key?: string; headers?: Record<string, string> } = {},
) {
  const payload = options.rawBody ?? (options.body === undefined ? undefined : JSON.stringify(options.body));
  const response = await app.server.inject({
    method,
    url,
    headers: {
      authorization: `Bearer ${options.key ?? app.demo!.apiKey}`,
      ...(payload === undefined ? {} : { "content-type": "application/json" }),
      ...options.headers,
    },
    ...(payload === undefined ? {} : { payload }),
  });
  return {
    status: response.statusCode,
    body: response.json(),
    headers: response.headers,
    text: response.body,
  };
}

/** A well-formed payment through the typed client, under an Idempotency-Key when given. */
const pay = (app: App, idempotencyKey?: string) =>
  typedClient(app).POST("/v1/payments", {
    body: internal("0.000001"),
    ...(idempotencyKey === undefined ? {} : { params: { header: { "Idempotency-Key": idempotencyKey } } }),
  });

const balance = (app: App) =>
  typedClient(app).GET("/v1/accounts/{id}/balance", { params: { path: { id: "acct_demo_customer" } } });

const health = async (app: App) =>
  (await app.server.inject({ method: "GET", url: "/healthz" })).json().requests as {
    in_flight: number;
    in_flight_max: number;
    in_flight_per_tenant_max: number | null;
  };

async function writtenUnder(app: App, key: string) {
  const [row] = await app.db.query<{ payments: bigint; records: bigint }>(
    `SELECT (SELECT count(*) FROM payments WHERE idempotency_key = $1) AS payments,
            (SELECT count(*) FROM idempotency_keys WHERE key = $1) AS records`,
    [key],
  );
  return { payments: Number(row!.payments), records: Number(row!.records) };
}

/** A payment request over a real socket whose body stops after its first byte: in flight until finished or aborted. */
function holdPayment(port: number, apiKey: string, idempotencyKey: string) {
  const body = JSON.stringify(internal("0.000001"));
  const socket = net.connect(port, "127.0.0.1");
  let received = "";
  socket.on("data", (chunk) => {
    received += chunk.toString("utf8");
  });
  const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()));
  socket.write(
    `POST /v1/payments HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${apiKey}\r\n` +
      `Content-Type: application/json\r\nIdempotency-Key: ${idempotencyKey}\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body.slice(0, 1)}`,
  );
  return {
    /** Sends the rest of the body; the response's status. */
    async finish(): Promise<number> {
      socket.write(body.slice(1));
      await closed;
      return Number(/^HTTP\/1\.1 (\d{3})/.exec(received)?.[1]);
    },
    /** Hangs up mid-body. */
    async abort(): Promise<void> {
      socket.destroy();
      await closed;
    },
  };
}

describe("the admission limit in front of /v1", () => {
  let app: App;
  let port: number;

  beforeAll(async () => {
    // With a toy rail, for a provider's route (/v1/webhooks/toy): outside the limit.
    app = await createApp(
      testConfig({
        LOG_LEVEL: "silent",
        PORT: "0",
        REQUESTS_IN_FLIGHT_MAX: "2",
        REQUESTS_IN_FLIGHT_PER_TENANT_MAX: "off",
      }),
      {
        railModules: [...railModules, () => ({ rails: [createToyRail({ id: "toy", feeFixed: 1n })] })],
      },
    );
    await app.server.listen({ port: 0, host: "127.0.0.1" });
    port = (app.server.server.address() as net.AddressInfo).port;
  }, 120_000);
  afterAll(async () => {
    await app?.close();
  });

  const holdTwo = async (prefix: string) => {
    const held = [0, 1].map((i) => holdPayment(port, app.demo!.apiKey, `${prefix}-${i}`));
    await vi.waitFor(() => expect(app.server.admission.requestsInFlight).toBe(2));
    return held;
  };

  it("answers one more request 503 overloaded with Retry-After at once, before its key or body; it writes nothing", async () => {
    const [before] = await app.db.query<{ payments: bigint }>("SELECT count(*) AS payments FROM payments");
    const held = await holdTwo("held");

    const refused = await pay(app, "refused-1");
    expect(refused.response.status).toBe(503);
    expect(errorOf(refused).code).toBe("overloaded");
    expect(refused.response.headers.get("retry-after")).toBe("1");
    // Neither the key nor the body was looked at: not 401, not 400, not 404.
    for (const [url, options] of [
      ["/v1/payments", { body: internal("0.000001"), key: "sk_test_not_a_key" }],
      ["/v1/payments", { rawBody: "{not json" }],
      ["/v1/nothing", {}],
    ] as const) {
      const response = await call(app, "POST", url, options);
      expect([url, response.status, response.body.error.code]).toEqual([url, 503, "overloaded"]);
    }
    expect((await balance(app)).response.status).toBe(503);
    // Health and the document are outside the limit; health shows it.
    expect(await health(app)).toEqual({ in_flight: 2, in_flight_max: 2, in_flight_per_tenant_max: null });
    expect((await app.server.inject({ method: "GET", url: "/openapi.json" })).statusCode).toBe(200);
    expect(await writtenUnder(app, "refused-1")).toEqual({ payments: 0, records: 0 });

    // The held ones go through; then the count is back to 0 and requests pass again.
    expect(await Promise.all(held.map((h) => h.finish()))).toEqual([201, 201]);
    await vi.waitFor(() => expect(app.server.admission.requestsInFlight).toBe(0));
    expect(await health(app)).toEqual({ in_flight: 0, in_flight_max: 2, in_flight_per_tenant_max: null });
    const retried = await pay(app, "refused-1");
    expect(retried.response.status).toBe(201);
    expect(retried.response.headers.get("idempotent-replayed")).toBeNull();
    const [after] = await app.db.query<{ payments: bigint }>("SELECT count(*) AS payments FROM payments");
    expect(after!.payments - before!.payments).toBe(3n);
  });

  it("counts nothing after a client hangs up mid-body, or after a request that failed", async () => {
    const held = await holdTwo("hung-up");
    await Promise.all(held.map((h) => h.abort()));
    await vi.waitFor(() => expect(app.server.admission.requestsInFlight).toBe(0));
    expect(await writtenUnder(app, "hung-up-0")).toEqual({ payments: 0, records: 0 });

    for (const [url, options, status] of [
      ["/v1/payments", { body: internal("0.000001"), key: "sk_test_not_a_key" }, 401],
      ["/v1/payments", { rawBody: "{not json" }, 400],
      ["/v1/payments", { body: { ...internal("0.000001"), amount: "-1" } }, 400],
      ["/v1/nothing", {}, 404],
    ] as const) {
      const response = await call(app, "POST", url, options);
      expect([url, response.status]).toEqual([url, status]);
      expect(app.server.admission.requestsInFlight).toBe(0);
    }
    // Twice the limit, one after the other: each passes.
    for (let i = 0; i < 4; i += 1) expect((await balance(app)).response.status).toBe(200);
    expect(app.server.admission.requestsInFlight).toBe(0);
  });

  it("refuses a request over a socket before Fastify sees it, with the hook's answer byte for byte", async () => {
    const held = await holdTwo("socket");
    const overSocket = async (url: string, headers: Record<string, string> = {}) => {
      const response = await fetch(`http://127.0.0.1:${port}${url}`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${app.demo!.apiKey}`,
          "content-type": "application/json",
          ...headers,
        },
        body: JSON.stringify(internal("0.000001")),
      });
      const {
        date: _date,
        connection: _connection,
        "keep-alive": _keepAlive,
        ...rest
      } = Object.fromEntries(response.headers);
      return { status: response.status, headers: rest, body: await response.text() };
    };
    const injected = async (url: string, headers: Record<string, string> = {}) => {
      const response = await call(app, "POST", url, { body: internal("0.000001"), headers });
      const { date: _date, connection: _connection, ...rest } = response.headers;
      return { status: response.status, headers: rest, body: response.text };
    };
    try {
      // The same answer either way: no version named, and one named (said back).
      const versionNamed: Record<string, string> = { "switchyard-version": ` ${apiVersions[0]!.version} ` };
      for (const headers of [{}, versionNamed]) {
        const socket = await overSocket("/v1/payments", headers);
        expect(socket.status).toBe(503);
        expect(socket).toEqual(await injected("/v1/payments", headers));
      }
      // A version that is none is the versioning hook's to answer, 400, as without the limit.
      const named = await overSocket("/v1/payments", { "switchyard-version": "1999-01-01" });
      expect([named.status, JSON.parse(named.body).error.code]).toEqual([400, "api_version_invalid"]);
      // A rail's provider route is a sibling of the API, outside the limit, over a socket too: the toy's answers a
      // request without its secret 401.
      expect((await overSocket(toyWebhookPath)).status).toBe(401);
      expect((await injected(toyWebhookPath)).status).toBe(401);
      // Escaped, it is the router's to say which route it is: the same answer either way.
      const escaped = toyWebhookPath.replace("/toy", "/%74oy");
      expect((await overSocket(escaped)).status).toBe((await injected(escaped)).status);
      // Before Fastify: the root's hooks, which run before the limit's and refuse an unstorable query (400), are not
      // run for a request refused over a socket; in-process (inject), where the hook refuses, they are.
      const unstorable = "/v1/payments?note=%00";
      expect((await injected(unstorable)).status).toBe(400);
      expect((await overSocket(unstorable)).status).toBe(503);
      // While refusals are logged (debug), Fastify answers them, as the access log's hook then writes each one.
      app.server.log.level = "debug";
      try {
        expect((await overSocket(unstorable)).status).toBe(400);
      } finally {
        app.server.log.level = "silent";
      }
      expect(app.server.admission.requestsInFlight).toBe(2);
      expect(await writtenUnder(app, "socket-0")).toEqual({ payments: 0, records: 0 });
    } finally {
      expect(await Promise.all(held.map((h) => h.finish()))).toEqual([201, 201]);
    }
    await vi.waitFor(() => expect(app.server.admission.requestsInFlight).toBe(0));
    // Below the limit, a request over a socket goes through.
    expect((await overSocket("/v1/payments", { "idempotency-key": "socket-after" })).status).toBe(201);
  });

  it("says so in the OpenAPI document: every /v1 operation may answer 503", async () => {
    const document = (await app.server.inject({ method: "GET", url: "/openapi.json" })).json();
    const operations = Object.values(
      document.paths as Record<string, Record<string, { responses: object }>>,
    ).flatMap((methods) => Object.values(methods));
    expect(operations.length).toBeGreaterThanOrEqual(7);
    for (const operation of operations) expect(Object.keys(operation.responses)).toContain("503");
  });
});

describe("each tenant's share of the pool", () => {
  const operatorKey = `op_${randomBytes(32).toString("base64url")}`;
  let app: App;
  let port: number;
  let sibling: string;
  let other: string;

  beforeAll(async () => {
    app = await createApp(
      testConfig({
        LOG_LEVEL: "silent",
        PORT: "0",
        REQUESTS_IN_FLIGHT_MAX: "8",
        REQUESTS_IN_FLIGHT_PER_TENANT_MAX: "2",
        OPERATOR_KEY: operatorKey,
      }),
    );
    await app.server.listen({ port: 0, host: "127.0.0.1" });
    port = (app.server.server.address() as net.AddressInfo).port;
    const key = await call(app, "POST", "/v1/api_keys", { body: { name: "sibling" } });
    expect(key.status).toBe(201);
    sibling = key.body.secret;
    const tenant = await call(app, "POST", "/v1/tenants", { body: { name: "Other" }, key: operatorKey });
    expect(tenant.status).toBe(201);
    other = tenant.body.api_key.secret;
  }, 120_000);
  afterAll(async () => {
    await app?.close();
  });

  it("defaults to a quarter of the pool; `off` leaves only the pool's limit", () => {
    expect(testConfig({}).tenantRequestsInFlightMax).toBe(1_024);
    expect(testConfig({ REQUESTS_IN_FLIGHT_MAX: "10" }).tenantRequestsInFlightMax).toBe(3);
    expect(testConfig({ REQUESTS_IN_FLIGHT_PER_TENANT_MAX: "off" }).tenantRequestsInFlightMax).toBeNull();
    expect(() => testConfig({ REQUESTS_IN_FLIGHT_PER_TENANT_MAX: "0" })).toThrow();
  });

  it("answers a tenant past its share 429 rate_limited, writing nothing, while other tenants and the operator are served", async () => {
    const held = [0, 1].map((i) => holdPayment(port, app.demo!.apiKey, `share-${i}`));
    await vi.waitFor(() => expect(app.server.admission.requestsInFlightByTenant.get("ten_demo")).toBe(2));
    expect(app.server.admission.requestsInFlight).toBe(2);
    try {
      const refused = await pay(app, "share-refused");
      expect(refused.response.status).toBe(429);
      expect(errorOf(refused).code).toBe("rate_limited");
      expect(refused.response.headers.get("retry-after")).toBe("1");
      expect(await writtenUnder(app, "share-refused")).toEqual({ payments: 0, records: 0 });
      // The share is the tenant's, not the key's: its other key is refused too.
      const siblings = await call(app, "GET", "/v1/accounts", { key: sibling });
      expect([siblings.status, siblings.body.error.code]).toEqual([429, "rate_limited"]);
      // Another tenant, and the operator, are served.
      expect((await call(app, "GET", "/v1/accounts", { key: other })).status).toBe(200);
      expect((await call(app, "GET", "/v1/tenants", { key: operatorKey })).status).toBe(200);
      expect(await health(app)).toEqual({ in_flight: 2, in_flight_max: 8, in_flight_per_tenant_max: 2 });
    } finally {
      expect(await Promise.all(held.map((h) => h.finish()))).toEqual([201, 201]);
    }
    await vi.waitFor(() => expect(app.server.admission.requestsInFlightByTenant.size).toBe(0));
    expect((await pay(app, "share-refused")).response.status).toBe(201);
  });

  it("counts nothing of a tenant's after its client hangs up", async () => {
    const held = [0, 1].map((i) => holdPayment(port, app.demo!.apiKey, `share-hung-up-${i}`));
    await vi.waitFor(() => expect(app.server.admission.requestsInFlightByTenant.get("ten_demo")).toBe(2));
    await Promise.all(held.map((h) => h.abort()));
    await vi.waitFor(() => expect(app.server.admission.requestsInFlightByTenant.size).toBe(0));
    expect(app.server.admission.requestsInFlight).toBe(0);
    for (let i = 0; i < 4; i += 1) expect((await balance(app)).response.status).toBe(200);
  });
});

describe("a full ledger queue, on PostgreSQL", () => {
  const queueTransfersMax = 4;
  let app: App;
  let databaseUrl: string;

  beforeAll(async () => {
    databaseUrl = await createTestDatabase(inject("postgresUrl"), "backpressure");
    app = await createApp(
      testConfig({
        LOG_LEVEL: "silent",
        PORT: "0",
        DATABASE_URL: databaseUrl,
        LEDGER_QUEUE_TRANSFERS_MAX: String(queueTransfersMax),
      }),
    );
  }, 120_000);
  afterAll(async () => {
    await app?.close();
  });

  it("is 503 overloaded with Retry-After; a refused payment writes nothing and goes through when retried", async () => {
    // Warm the caches (key, accounts) so that nothing but the ledger waits below.
    expect((await pay(app)).response.status).toBe(201);
    // Another connection holds the clock's row: every ledger write waits for it, so the writer's queue fills.
    const holder = new pg.Client({ connectionString: databaseUrl });
    await holder.connect();
    try {
      await holder.query("BEGIN");
      await holder.query("SELECT 1 FROM ledger_clock WHERE singleton FOR UPDATE");
      // One at a time, so that they wait as batches of their own: the first ones get in — the batches in flight
      // (the pipeline's depth, 2 on PostgreSQL, each at most the queue's size) and the queue — and the rest are
      // refused, answered while the clock is still held.
      const count = 20;
      const refusedMin = count - 3 * queueTransfersMax;
      const answered: Array<Awaited<ReturnType<typeof pay>>> = [];
      const pending: Array<ReturnType<typeof pay>> = [];
      for (let i = 0; i < count; i += 1) {
        const sent = pay(app, `queue-${i}`);
        pending.push(sent);
        void sent.then((answer) => answered.push(answer));
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      await vi.waitFor(() => expect(answered.length).toBeGreaterThanOrEqual(refusedMin), { timeout: 5_000 });
      for (const answer of answered) expect(answer.response.status).toBe(503);

      await holder.query("ROLLBACK");
      const all = await Promise.all(pending);
      const refused = [...all.keys()].filter((i) => all[i]!.response.status !== 201);
      expect(refused.length).toBeGreaterThanOrEqual(refusedMin);
      expect(refused.length).toBeLessThan(count);
      for (const i of refused) {
        expect(all[i]!.response.status).toBe(503);
        expect(errorOf(all[i]!).code).toBe("overloaded");
        expect(all[i]!.response.headers.get("retry-after")).toBe("1");
        expect(await writtenUnder(app, `queue-${i}`)).toEqual({ payments: 0, records: 0 });
      }
      for (const i of refused) {
        const retried = await pay(app, `queue-${i}`);
        expect(retried.response.status).toBe(201);
        // The internal payment keeps its key's answer itself: no record beside it.
        expect(await writtenUnder(app, `queue-${i}`)).toEqual({ payments: 1, records: 0 });
      }
    } finally {
      await holder.end();
    }
  });
});
