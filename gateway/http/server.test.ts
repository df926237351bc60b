// The server's shape, without a database: the OpenAPI document generated from the zod schemas, and which
// routes need an API key — the /v1 context's, by where they are registered, not by their URL.
import type { AddressInfo } from "node:net";
import { connect } from "node:net";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RailRoute } from "../../core/index.ts";
import { buildBareServer } from "../../test/support/bare-server.ts";

/** A provider route under /v1 by its URL, yet outside the /v1 context: it needs no key. */
const toyProviderRoute: RailRoute = {
  method: "POST",
  path: "/v1/webhooks/toy",
  bodyLimitBytes: 1_024,
  handle: async ({ rawBody }) => ({ status: 200, body: { received: rawBody.length } }),
};

let server: FastifyInstance;

beforeAll(async () => {
  // Nothing here reaches a store: a missing or malformed key is refused before any query.
  server = await buildBareServer([toyProviderRoute]);
});

afterAll(async () => {
  await server?.close();
});

type Operation = { security?: unknown; requestBody?: unknown; parameters?: unknown; responses: object };
type OpenApi = { openapi: string; paths: Record<string, Record<string, Operation>> };

async function openApi(): Promise<OpenApi> {
  const response = await server.inject({ method: "GET", url: "/openapi.json" });
  expect(response.statusCode).toBe(200);
  return response.json();
}

/** Every operation the document lists, as "METHOD /path". */
function operations(document: OpenApi): string[] {
  return Object.entries(document.paths).flatMap(([path, methods]) =>
    Object.keys(methods).map((method) => `${method.toUpperCase()} ${path}`),
  );
}

/** The operations of the /v1 context, behind the API key: all but a wallet's (/pay/…). */
const v1Operations = (document: OpenApi): string[] =>
  operations(document).filter((operation) => operation.split(" ")[1]!.startsWith("/v1/"));

describe("the OpenAPI document", () => {
  it("is served without a key and lists every API route, and only those", async () => {
    const document = await openApi();
    expect(document.openapi).toMatch(/^3\./);
    expect(operations(document).sort()).toEqual([
      "DELETE /v1/api_keys/{id}",
      "DELETE /v1/webhook_endpoints/{id}",
      "GET /v1/accounts",
      "GET /v1/accounts/{id}",
      "GET /v1/accounts/{id}/balance",
      "GET /v1/accounts/{id}/transactions",
      "GET /v1/api_keys",
      "GET /v1/api_keys/{id}",
      "GET /v1/events",
      "GET /v1/events/{id}",
      "GET /v1/invoices",
      "GET /v1/invoices/{id}",
      "GET /v1/payees",
      "GET /v1/payees/{id}",
      "GET /v1/payments",
      "GET /v1/payments/{id}",
      "GET /v1/quotes",
      "GET /v1/rails",
      "GET /v1/refunds",
      "GET /v1/refunds/{id}",
      "GET /v1/tenants",
      "GET /v1/tenants/{id}",
      "GET /v1/webhook_endpoints",
      "GET /v1/webhook_endpoints/{id}",
      "GET /v1/webhook_endpoints/{id}/deliveries",
      "PATCH /v1/payees/{id}",
      // A wallet's, authorized by an invoice's client secret rather than a key (rail-routes.ts).
      "POST /pay/{rail}/authorizations",
      "POST /v1/accounts",
      "POST /v1/api_keys",
      "POST /v1/api_keys/{id}/revoke",
      "POST /v1/api_keys/{id}/roll",
      "POST /v1/invoices",
      "POST /v1/invoices/{id}/authorizations",
      "POST /v1/payees",
      "POST /v1/payments",
      "POST /v1/quotes",
      "POST /v1/rails/{rail}/capital",
      "POST /v1/refunds",
      "POST /v1/tenants",
      "POST /v1/tenants/{id}/api_keys",
      "POST /v1/tenants/{id}/reactivate",
      "POST /v1/tenants/{id}/suspend",
      "POST /v1/webhook_endpoints",
      "POST /v1/webhook_endpoints/{id}",
      "POST /v1/webhook_endpoints/{id}/deliveries/{delivery_id}/retry",
      "POST /v1/webhook_endpoints/{id}/rotate_secret",
    ]);
  });

  it("describes each route from its zod schemas: the request, the responses, the key it needs", async () => {
    const { paths } = await openApi();
    const create = paths["/v1/payments"]!.post!;
    // The scope it needs (auth.ts): a key with "payments".
    expect(create.security).toEqual([{ apiKey: ["payments"] }]);
    expect(create.requestBody).toMatchObject({
      content: {
        "application/json": {
          schema: { type: "object", required: expect.arrayContaining(["amount", "asset", "source"]) },
        },
      },
    });
    // Its own answers, and the errors every operation lists (openapi.ts; each checked in openapi.test.ts).
    expect(Object.keys(create.responses)).toEqual(
      expect.arrayContaining(["201", "202", "4XX", "503", "400", "401", "409", "413", "415", "500"]),
    );
    expect(Object.keys(create.responses).filter((status) => status.startsWith("2"))).toEqual(["201", "202"]);
    const amount = (create.requestBody as any).content["application/json"].schema.properties.amount;
    expect(amount.type).toBe("string"); // decimal strings on the wire, never numbers
    const get = paths["/v1/payments/{id}"]!.get!;
    expect(get.parameters).toMatchObject([{ in: "path", name: "id", required: true }]);
  });
});

describe("which routes need an API key", () => {
  it("health, the document and a provider route need none, even one whose URL starts with /v1", async () => {
    expect((await server.inject({ method: "GET", url: "/healthz" })).statusCode).toBe(200);
    expect((await server.inject({ method: "GET", url: "/openapi.json" })).statusCode).toBe(200);
    const provider = await server.inject({
      method: "POST",
      url: "/v1/webhooks/toy",
      payload: "{}",
      headers: { "content-type": "application/json" },
    });
    expect(provider.statusCode).toBe(200);
    expect(provider.json()).toEqual({ received: 2 });
  });

  it("an unknown route under /v1 asks for the key first; elsewhere it is simply not found", async () => {
    const v1 = await server.inject({ method: "GET", url: "/v1/nothing" });
    expect([v1.statusCode, v1.json().error.code]).toEqual([401, "api_key_missing"]);
    const root = await server.inject({ method: "GET", url: "/nothing" });
    expect([root.statusCode, root.json().error.code]).toEqual([404, "route_not_found"]);
  });

  it("every route of the /v1 context refuses a missing key, and a key not of the form of one", async () => {
    const listed = v1Operations(await openApi());
    expect(listed.length).toBeGreaterThan(0);
    for (const operation of listed) {
      const [method, path] = operation.split(" ") as ["GET" | "POST" | "PATCH", string];
      const url = path.replace("{id}", "x");
      for (const [authorization, code] of [
        [undefined, "api_key_missing"],
        ["", "api_key_missing"],
        ["Bearer", "api_key_invalid"],
        ["Basic dXNlcjpwYXNz", "api_key_invalid"],
        ["Bearer hunter2", "api_key_invalid"],
      ] as const) {
        const response = await server.inject({
          method,
          url,
          headers: authorization === undefined ? {} : { authorization },
          ...(method === "POST" ? { payload: {} } : {}),
        });
        expect([operation, authorization, response.statusCode]).toEqual([operation, authorization, 401]);
        expect(response.json().error.code).toBe(code);
      }
    }
  });

  it("every route of the /v1 context refuses two Authorization headers, whichever comes first (Node keeps only the first)", async () => {
    const listed = v1Operations(await openApi());
    for (const operation of listed) {
      const [method, path] = operation.split(" ") as ["GET" | "POST" | "PATCH", string];
      for (const authorization of [
        ["Bearer hunter2", "Bearer sk_test_appended_by_a_proxy"],
        ["Bearer sk_test_the_client_s", "Bearer hunter2"],
        ["Bearer hunter2", ""],
      ]) {
        const response = await server.inject({
          method,
          url: path.replace("{id}", "x"),
          // Typed as one value by Fastify, sent as several by light-my-request (each one in rawHeaders).
          headers: { authorization } as unknown as Record<string, string>,
          ...(method === "POST" ? { payload: {} } : {}),
        });
        expect([operation, response.statusCode]).toEqual([operation, 400]);
        expect(response.json().error).toEqual({
          code: "parameter_invalid",
          message: "send one Authorization header, not several",
          param: "Authorization",
        });
      }
    }
    // One header, as before: its own refusal.
    const one = await server.inject({
      method: "GET",
      url: "/v1/accounts",
      headers: { authorization: ["Bearer hunter2"] } as unknown as Record<string, string>,
    });
    expect([one.statusCode, one.json().error.code]).toEqual([401, "api_key_invalid"]);
  });
});

describe("a request that comes while the server is stopping", () => {
  it("is answered 503 overloaded with Retry-After in the API's shape (it was Fastify's own 503, without Retry-After)", async () => {
    let entered: () => void = () => {};
    const handlerEntered = new Promise<void>((resolve) => {
      entered = resolve;
    });
    let release: () => void = () => {};
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    const slowRoute: RailRoute = {
      method: "POST",
      path: "/v1/webhooks/slow",
      bodyLimitBytes: 1_024,
      handle: async () => {
        entered();
        await released;
        return { status: 200, body: { slow: true } };
      },
    };
    const stopping = await buildBareServer([slowRoute]);
    await stopping.listen({ port: 0, host: "127.0.0.1" });
    const { port } = stopping.server.address() as AddressInfo;
    // The first request is held in its handler; the close begins; a second request comes on the same connection (an
    // active one, which the close leaves open until its answer is written).
    const socket = connect(port, "127.0.0.1");
    let answer = "";
    socket.on("data", (chunk) => {
      answer += chunk;
    });
    const ended = new Promise<void>((resolve) => socket.on("close", () => resolve()));
    socket.write(
      "POST /v1/webhooks/slow HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    );
    await handlerEntered;
    const closed = stopping.close();
    await new Promise((resolve) => setImmediate(resolve));
    // Released once the server has the second request (an observer beside its listener), so that it comes while
    // the first is still in flight.
    let requests = 0;
    const secondRead = new Promise<void>((resolve) =>
      stopping.server.on("request", () => {
        requests += 1;
        if (requests === 1) resolve();
      }),
    );
    socket.write("GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n");
    await secondRead;
    release();
    await ended;
    await closed;
    const second = answer.slice(answer.indexOf("HTTP/1.1", 1));
    expect(second.split("\r\n")[0]).toBe("HTTP/1.1 503 Service Unavailable");
    expect(second.toLowerCase()).toContain("\r\nretry-after: ");
    expect(JSON.parse(second.slice(second.indexOf("\r\n\r\n") + 4)).error.code).toBe("overloaded");
  });
});
