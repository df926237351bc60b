// SSRF through webhook endpoints (issue #22), at delivery: the app's loop connects through the egress guard, so an
// endpoint whose stored URL is not allowed (one written before this release) gets nothing, not even a connection.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestGateway, type TestGateway } from "./support.ts";

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
