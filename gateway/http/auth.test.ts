// The auth plugin's scope table, on a bare Fastify: every /v1 route's need is found when it is added (its first path
// segment and method, or config.scope) and written into the route; a route nothing says anything of stops the start.
import Fastify from "fastify";
import { describe, expect, it } from "vitest";
import { createLocalChangeBus } from "../db/index.ts";
import { apiKeyCacheDefaults, apiKeySecretOf } from "../tenants/index.ts";
import { authPlugin, RouteScopeError, routeAccess } from "./auth.ts";

/** The scopes of the one key the fake database knows (every lookup finds it). */
let keyScopes: string[] = [];
const keyRow = () => ({
  id: "key_x",
  tenant_id: "ten_x",
  name: null,
  mode: "test",
  scopes: keyScopes,
  api_version: "2026-11-23",
  hint: "sk_test_…xxxx",
  created_at: new Date(),
  expires_at: null,
  revoked_at: null,
  rolled_to: null,
  tenant_name: "X",
  tenant_status: "active",
});
const secret = apiKeySecretOf("test", "x".repeat(36));

async function v1With(routes: (app: import("fastify").FastifyInstance) => void) {
  const app = Fastify();
  await app.register(
    async (v1) => {
      await v1.register(authPlugin, {
        sql: { query: async () => [keyRow()] as never },
        apiKeyCache: { ...apiKeyCacheDefaults, entriesMax: 0 },
        nowMs: Date.now,
        changes: createLocalChangeBus(),
        mode: "development",
      });
      routes(v1);
    },
    { prefix: "/v1" },
  );
  return app;
}

describe("route scopes", () => {
  it("are found from the first path segment and the method", () => {
    expect(routeAccess({ method: "GET", path: "/payments/:id" })).toEqual({
      kind: "tenant",
      requirement: { scope: "payments", readSuffices: true },
    });
    expect(routeAccess({ method: "POST", path: "/refunds" })).toEqual({
      kind: "tenant",
      requirement: { scope: "invoices", readSuffices: false },
    });
    expect(routeAccess({ method: "DELETE", path: "/api_keys/:id" })).toMatchObject({
      requirement: { scope: "keys", readSuffices: false },
    });
    expect(routeAccess({ method: "GET", path: "/tenants" })).toEqual({ kind: "operator" });
    expect(routeAccess({ method: "POST", path: "/rails/:rail/capital" })).toEqual({ kind: "operator" });
    expect(routeAccess({ method: "POST", path: "/widgets", scope: "accounts" })).toMatchObject({
      requirement: { scope: "accounts" },
    });
    expect(routeAccess({ method: "GET", path: "/widgets" })).toBeNull();
  });

  it("a route under /v1 that no scope covers stops the server's start", async () => {
    const app = await v1With((v1) => {
      v1.get("/payments/:id", async () => "ok");
      v1.get("/widgets", async () => "no scope");
    });
    const started = app.ready();
    await expect(started).rejects.toBeInstanceOf(RouteScopeError);
    await expect(started).rejects.toMatchObject({ details: "GET /v1/widgets, HEAD /v1/widgets" });
  });

  it("config.scope covers a route its path does not, and the route carries its need", async () => {
    const app = await v1With((v1) => {
      v1.post(
        "/widgets",
        { config: { scope: "accounts" }, schema: {} },
        async (request) => request.routeOptions.config.access,
      );
    });
    await app.ready();
    const call = () =>
      app.inject({ method: "POST", url: "/v1/widgets", headers: { authorization: `Bearer ${secret}` } });
    keyScopes = ["accounts"];
    const allowed = await call();
    expect([allowed.statusCode, allowed.json()]).toEqual([
      200,
      { kind: "tenant", requirement: { scope: "accounts", readSuffices: false } },
    ]);
    keyScopes = ["read", "payments"];
    expect((await call()).statusCode).toBe(403);
    await app.close();
  });
});
