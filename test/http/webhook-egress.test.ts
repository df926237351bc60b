// SSRF through webhook endpoints (issue #22): a URL that reaches a loopback, private, link-local, CGNAT,
// multicast, unspecified or metadata address — in any spelling — is refused when an endpoint is created or its URL
// updated, and so are credentials in the URL and plain http to a host not allowed; the tests' local receiver,
// named in EGRESS_ALLOW_HOSTS, is taken. At delivery the app's loop connects through the guard too: an endpoint
// whose stored URL is not allowed (one written before this release) gets nothing, not even a connection.
// Registration resolves the URL's name through the app's resolver, and only after the refusals that need no lookup
// (the tenant's limit, an update's endpoint not found): those never wait on DNS.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Resolver } from "../../gateway/egress/index.ts";
import { createApiKey, createTenant } from "../../gateway/tenants/index.ts";
import { webhookEndpointsPerTenantMax } from "../../gateway/webhooks/endpoints.ts";
import { errorOf, startTestGateway, type TestGateway } from "./support.ts";

const refusedUrls = [
  "https://169.254.169.254/latest/meta-data/",
  "https://metadata.google.internal/computeMetadata/v1/",
  "https://METADATA.GOOGLE.INTERNAL./computeMetadata/v1/",
  "https://10.0.0.1/hooks",
  "https://[::ffff:127.0.0.1]/hooks",
  "https://2130706433/hooks",
  "https://0x7f000001/hooks",
  "https://127.1/hooks",
  "https://0177.0.0.1/hooks",
  "https://[::1]/hooks",
  "https://100.64.0.1/hooks",
  "https://[fe80::1]/hooks",
  "https://224.0.0.1/hooks",
  "https://[::]/hooks",
  "https://0.0.0.0/hooks",
  "https://[fd00:ec2::254]/hooks",
  "https://localhost/hooks",
  "https://user:pass@example.com/hooks",
  "http://example.com/hooks",
];

describe.each(["pglite", "postgres"] as const)("webhook endpoint URLs on %s", (database) => {
  let gw: TestGateway;
  let receiver: Server;
  let port = 0;

  beforeAll(async () => {
    receiver = createServer((_request, response) => response.writeHead(204).end());
    await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
    port = (receiver.address() as AddressInfo).port;
    gw = await startTestGateway({
      database,
      env: { WEBHOOK_DELIVERY_INTERVAL_MS: "3600000", EGRESS_ALLOW_HOSTS: `127.0.0.1:${port}` },
    });
  });
  afterAll(async () => {
    await gw?.app.close();
    receiver?.closeAllConnections();
    await new Promise((resolve) => receiver?.close(resolve));
  });

  it.each(refusedUrls)("refuses %s at creation, writing nothing", async (url) => {
    const before = await gw.call("GET", "/v1/webhook_endpoints");
    const answer = await gw.call("POST", "/v1/webhook_endpoints", { body: { url } });
    expect(answer.status).toBe(400);
    expect(answer.body.error).toMatchObject({ code: "parameter_invalid", param: "url" });
    expect(answer.body.error.reason).toMatch(
      /^(address_not_public|host_not_allowed|credentials_in_url|https_required)$/,
    );
    const after = await gw.call("GET", "/v1/webhook_endpoints");
    expect(after.body.data.length).toBe(before.body.data.length);
  });

  it("takes the allowed local receiver, and refuses an update of its URL to a private address", async () => {
    const created = await gw.call("POST", "/v1/webhook_endpoints", {
      body: { url: `http://127.0.0.1:${port}/hooks` },
    });
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    // Another port of the allowed host is not allowed.
    const otherPort = await gw.call("POST", `/v1/webhook_endpoints/${id}`, {
      body: { url: `http://127.0.0.1:${port + 1}/hooks` },
    });
    expect(otherPort.status).toBe(400);
    expect(otherPort.body.error).toMatchObject({ code: "parameter_invalid", reason: "https_required" });
    const updated = await gw.call("POST", `/v1/webhook_endpoints/${id}`, {
      body: { url: "https://169.254.169.254/latest/meta-data/" },
    });
    expect(updated.status).toBe(400);
    expect(updated.body.error).toMatchObject({ code: "parameter_invalid", reason: "address_not_public" });
    expect((await gw.call("GET", `/v1/webhook_endpoints/${id}`)).body.url).toBe(
      `http://127.0.0.1:${port}/hooks`,
    );
  });
});

describe("deliveries through the app's egress guard", () => {
  let gw: TestGateway;
  let allowed: Server;
  let other: Server;
  let otherConnections = 0;
  const paths: string[] = [];
  const portOf = (server: Server) => (server.address() as AddressInfo).port;

  beforeAll(async () => {
    allowed = createServer((request, response) => {
      paths.push(request.url ?? "");
      response.writeHead(204).end();
    });
    other = createServer((_request, response) => response.writeHead(204).end());
    other.on("connection", () => {
      otherConnections += 1;
    });
    await new Promise<void>((resolve) => allowed.listen(0, "127.0.0.1", resolve));
    await new Promise<void>((resolve) => other.listen(0, "127.0.0.1", resolve));
    gw = await startTestGateway({
      database: "pglite",
      env: { WEBHOOK_DELIVERY_INTERVAL_MS: "50", EGRESS_ALLOW_HOSTS: `127.0.0.1:${portOf(allowed)}` },
    });
  });
  afterAll(async () => {
    await gw?.app.close();
    for (const server of [allowed, other]) {
      server?.closeAllConnections();
      await new Promise((resolve) => server?.close(resolve));
    }
  });

  it("an endpoint stored with a loopback URL not allowed receives nothing; the allowed one receives the event", async () => {
    const ok = await gw.call("POST", "/v1/webhook_endpoints", {
      body: { url: `http://127.0.0.1:${portOf(allowed)}/ok` },
    });
    expect(ok.status).toBe(201);
    const stale = await gw.call("POST", "/v1/webhook_endpoints", {
      body: { url: `http://127.0.0.1:${portOf(allowed)}/stale` },
    });
    expect(stale.status).toBe(201);
    // As if registered before the guard: the stored URL points at another local service.
    await gw.app.db.query("UPDATE webhook_endpoints SET url = $2 WHERE id = $1", [
      stale.body.id,
      `http://127.0.0.1:${portOf(other)}/stale`,
    ]);
    await gw.app.db.query("INSERT INTO outbox (tenant_id, type, payload) VALUES ($1, $2, $3)", [
      gw.app.demo!.tenantId,
      "payment.succeeded",
      JSON.stringify({ payment_id: "pay_test" }),
    ]);
    await expect.poll(() => paths.includes("/ok"), { timeout: 10_000 }).toBe(true);
    const lastError = async () =>
      (
        await gw.app.db.query<{ last_error: string | null }>(
          "SELECT last_error FROM webhook_deliveries WHERE endpoint_id = $1",
          [stale.body.id],
        )
      )[0]?.last_error ?? null;
    await expect.poll(lastError, { timeout: 10_000 }).toMatch(/egress refused/);
    expect(otherConnections).toBe(0);
    expect(paths).not.toContain("/stale");
  });
});

describe.each(["pglite", "postgres"] as const)("registration's lookup on %s", (database) => {
  let gw: TestGateway;
  /** Every name the app's resolver was asked. */
  const asked: string[] = [];
  const resolver: Resolver = async (hostname) => {
    asked.push(hostname);
    if (hostname === "private.example") return [{ address: "10.0.0.5", family: 4 }];
    if (hostname === "public.example") return [{ address: "93.184.216.34", family: 4 }];
    throw new Error(`ENOTFOUND ${hostname}`);
  };

  beforeAll(async () => {
    gw = await startTestGateway({
      database,
      env: { WEBHOOK_DELIVERY_INTERVAL_MS: "3600000" },
      webhookResolver: resolver,
    });
  });
  afterAll(async () => {
    await gw?.app.close();
  });

  it("asks the app's resolver: a name answering a private address is refused, a public one taken", async () => {
    const refused = await gw.call("POST", "/v1/webhook_endpoints", {
      body: { url: "https://private.example/h" },
    });
    expect(refused.status).toBe(400);
    expect(refused.body.error).toMatchObject({ code: "parameter_invalid", reason: "address_not_public" });
    const taken = await gw.call("POST", "/v1/webhook_endpoints", {
      body: { url: "https://public.example/h" },
    });
    expect(taken.status).toBe(201);
    expect(asked).toEqual(["private.example", "public.example"]);
    const moved = await gw.call("POST", `/v1/webhook_endpoints/${taken.body.id}`, {
      body: { url: "https://private.example/h" },
    });
    expect(moved.status).toBe(400);
    expect((await gw.call("GET", `/v1/webhook_endpoints/${taken.body.id}`)).body.url).toBe(
      "https://public.example/h",
    );
  });

  it("an update of an endpoint that does not exist is 404 without a lookup", async () => {
    asked.length = 0;
    const missing = await gw.call("POST", "/v1/webhook_endpoints/we_01m7zfckv29pdrb3m0gz9e4j5g", {
      body: { url: "https://private.example/h" },
    });
    expect(missing.status).toBe(404);
    expect(missing.body.error.code).toBe("webhook_endpoint_not_found");
    expect(asked).toEqual([]);
  });

  it("at the tenant's limit, a create is 409 without a lookup; a malformed URL is still 400 first", async () => {
    const tenant = await createTenant(gw.app.db, { name: `Capped ${database}` });
    const capped = gw.clientFor(
      (await createApiKey(gw.app.db, { tenantId: tenant.id, mode: "test" })).secret,
    );
    for (let index = 0; index < webhookEndpointsPerTenantMax; index += 1) {
      const created = await capped.POST("/v1/webhook_endpoints", {
        body: { url: `https://public.example/${index}` },
      });
      expect(created.response.status).toBe(201);
    }
    asked.length = 0;
    const full = await capped.POST("/v1/webhook_endpoints", { body: { url: "https://private.example/h" } });
    expect(full.response.status).toBe(409);
    expect(errorOf(full).code).toBe("webhook_endpoint_limit_reached");
    expect(asked).toEqual([]);
    const malformed = await capped.POST("/v1/webhook_endpoints", {
      body: { url: "http://public.example/h" },
    });
    expect(malformed.response.status).toBe(400);
    expect(errorOf(malformed)).toMatchObject({ code: "parameter_invalid", reason: "https_required" });
  });
});
