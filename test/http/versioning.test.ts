// API versions over HTTP, on PGlite and on PostgreSQL: every response says its version in Switchyard-Version —
// health, the OpenAPI document, an API route, an error before the key and after it, an unknown route; a request is
// answered in its key's pinned version (the api_keys column), or in the one it names; an unknown one is 400
// api_version_invalid on every route. And the OpenAPI document names every /v1 operation's scope.
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { routeScopes } from "../../gateway/http/auth.ts";
import { apiVersions, currentApiVersion } from "../../gateway/http/versioning.ts";
import { ensureOperatorKey } from "../../gateway/tenants/index.ts";
import { startTestGateway, type TestGateway } from "./support.ts";

const header = "switchyard-version";
const operatorKey = `op_${randomBytes(32).toString("base64url")}`;

describe.each(["pglite", "postgres"] as const)("API versions on %s", (database) => {
  let gw: TestGateway;

  beforeAll(async () => {
    gw = await startTestGateway({ database });
    await ensureOperatorKey(gw.app.db, { configured: operatorKey });
  });
  afterAll(async () => {
    await gw?.app.close();
  });

  it("every response carries the version it is answered in, errors too", async () => {
    expect(apiVersions.map((entry) => entry.version)).toContain(currentApiVersion);
    const answers = [
      await gw.call("GET", "/healthz", { key: null }),
      await gw.call("GET", "/openapi.json", { key: null }),
      await gw.call("GET", "/v1/payees"),
      await gw.call("GET", "/v1/payees", { key: null }),
      await gw.call("GET", "/v1/payees", { key: "sk_test_nope" }),
      await gw.call("GET", "/v1/payments/pay_01m7zfckv29pdrb3m0gz9e4j5g"),
      await gw.call("GET", "/v1/nothing"),
      await gw.call("GET", "/nothing", { key: null }),
      await gw.call("POST", "/v1/payments", { rawBody: "{" }),
      await gw.call("GET", "/v1/tenants", { key: operatorKey }),
    ];
    for (const answer of answers) expect(answer.headers[header]).toBe(currentApiVersion);
    expect(answers.map((answer) => answer.status)).toEqual([
      200, 200, 200, 401, 401, 404, 404, 404, 400, 200,
    ]);
  });

  it("a request is answered in its key's pinned version, unless it names one", async () => {
    const made = await gw.call("POST", "/v1/api_keys", {
      body: { name: "pinned", api_version: currentApiVersion },
    });
    expect([made.status, made.body.api_version]).toEqual([201, currentApiVersion]);
    // A key pinned to another version (as one made before a newer version came out would be).
    await gw.app.db.query("UPDATE api_keys SET api_version = $2 WHERE id = $1", [made.body.id, "2020-01-01"]);
    // The key's memory holds it for at most a second: wait it out rather than reach into it.
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    const pinned = await gw.call("GET", "/v1/payees", { key: made.body.secret });
    expect([pinned.status, pinned.headers[header]]).toEqual([200, "2020-01-01"]);
    const named = await gw.call("GET", "/v1/payees", {
      key: made.body.secret,
      headers: { "Switchyard-Version": currentApiVersion },
    });
    expect([named.status, named.headers[header]]).toEqual([200, currentApiVersion]);
  });

  it("an unknown version is 400 api_version_invalid, on every route, and does nothing", async () => {
    for (const version of ["2019-01-01", "latest", "", "2026-11-23, 2026-11-23"]) {
      for (const [method, url] of [
        ["GET", "/v1/payees"],
        ["POST", "/v1/api_keys"],
        ["GET", "/healthz"],
      ] as const) {
        const before = await gw.app.db.query("SELECT count(*)::int AS n FROM api_keys");
        const answer = await gw.call(method, url, {
          headers: { "Switchyard-Version": version },
          ...(method === "POST" ? { body: {} } : {}),
        });
        expect([answer.status, answer.body.error.code, answer.body.error.param], `${version} ${url}`).toEqual(
          [400, "api_version_invalid", "Switchyard-Version"],
        );
        expect(answer.body.error.message).toContain(currentApiVersion);
        expect(answer.headers[header]).toBe(currentApiVersion);
        expect(await gw.app.db.query("SELECT count(*)::int AS n FROM api_keys")).toEqual(before);
      }
    }
  });

  it("the OpenAPI document names the scope of every /v1 operation", async () => {
    const document = (await gw.call("GET", "/openapi.json", { key: null })).body;
    const operations = Object.entries(document.paths as Record<string, Record<string, any>>).flatMap(
      ([path, methods]) =>
        Object.entries(methods).map(([method, operation]) => ({ path, method, operation })),
    );
    const keyed = operations.filter(
      ({ path }) => path.startsWith("/v1/") && !path.startsWith("/v1/webhooks/"),
    );
    expect(keyed.length).toBeGreaterThan(10);
    for (const { path, method, operation } of keyed) {
      const scope = routeScopes[path.split("/")[2]!];
      expect(operation["x-switchyard-scope"], `${method} ${path}`).toBe(scope);
      const expected =
        scope === "operator"
          ? [{ apiKey: ["operator"] }]
          : method === "get"
            ? [{ apiKey: [scope] }, { apiKey: ["read"] }]
            : [{ apiKey: [scope] }];
      expect(operation.security, `${method} ${path}`).toEqual(expected);
    }
  });
});
