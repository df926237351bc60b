// The OpenAPI document against what the running gateway really serves (found by a schema-based fuzzer): every route
// the server registers is documented, or left out on purpose; an invoice's instructions answer the chain id as the
// rest of the API does (a number); a rail an invoice names that the gateway has not is the request's mistake (400);
// the wallets' route answers as the document says.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestGateway, type TestGateway } from "./support.ts";

/** Every method and path the server routes, read from Fastify's own tree (printRoutes), in the document's spelling. */
function registeredRoutes(printed: string): { method: string; path: string }[] {
  const routes: { method: string; path: string }[] = [];
  const ancestors: string[] = [];
  for (const line of printed.split("\n")) {
    const match = /^((?:[│ ] {3})*)[├└]── (.*?)(?: \(([A-Z, ]+)\))?$/.exec(line);
    if (match === null) continue;
    const depth = match[1]!.length / 4;
    ancestors.length = depth;
    ancestors.push(match[2]!);
    const path = ancestors.join("").replace(/:([A-Za-z_]+)/g, "{$1}");
    for (const method of match[3]?.split(", ") ?? []) routes.push({ method: method.toLowerCase(), path });
  }
  return routes;
}

/** The routes left out of the document on purpose, and why. */
const undocumented: readonly { path: RegExp; why: string }[] = [
  { path: /^\/openapi\.json$/, why: "the document itself" },
  { path: /^\/docs(\/.*)?$/, why: "the documentation page and its assets (docs.ts)" },
  { path: /^\/(healthz|readyz)$/, why: "the operator's probes, outside the API" },
  { path: /^\/v1\/webhooks\//, why: "a rail's provider's callbacks (Stripe's), signed by the provider" },
  { path: /^\/demo\//, why: "development only: the demo tenant's paywalled resource (app/demo-paywall.ts)" },
];

describe("the OpenAPI document against the gateway", () => {
  let gw: TestGateway;
  let document: { paths: Record<string, Record<string, unknown>> };
  beforeAll(async () => {
    gw = await startTestGateway({ database: "pglite" });
    document = (await gw.app.server.inject({ method: "GET", url: "/openapi.json" })).json();
  });
  afterAll(async () => {
    await gw?.app.close();
  });

  it("documents every route the server registers but those left out on purpose", () => {
    const routes = registeredRoutes(gw.app.server.printRoutes({ commonPrefix: false }));
    // The rails' own routes are among them: the embedded EVM rail's wallet route.
    expect(routes).toContainEqual({ method: "post", path: "/pay/evm/authorizations" });
    // A documented path is a template: a rail's concrete route (/pay/evm/…) is /pay/{rail}/….
    const templates = Object.entries(document.paths).map(([path, methods]) => ({
      pattern: new RegExp(`^${path.replace(/\{[^}]+\}/g, "[^/]+")}$`),
      methods: Object.keys(methods),
    }));
    const missing = routes.filter(
      ({ method, path }) =>
        // HEAD is GET's, which Fastify adds beside each GET.
        method !== "head" &&
        !undocumented.some((left) => left.path.test(path)) &&
        !templates.some((t) => t.pattern.test(path) && t.methods.includes(method)),
    );
    expect(missing).toEqual([]);
  });

  it("answers an EVM invoice's chain id as a number, as a payment's evidence and destination do", async () => {
    const created = await gw.call("POST", "/v1/invoices", {
      body: { account: gw.app.demo!.merchant.id, asset: "USDC", amount: "1.5" },
    });
    expect(created.status).toBe(201);
    const chainId = await gw.app.chain!.publicClient.getChainId();
    expect(created.body.instructions.chain_id).toBe(chainId);
    const read = await gw.call("GET", `/v1/invoices/${created.body.id}`);
    expect(read.body.instructions.chain_id).toBe(chainId);
    // The rest of the instructions stay text.
    expect(typeof read.body.instructions.authorization_value).toBe("string");
  });

  it("refuses a rail no rail of the gateway has as the request's mistake, naming the parameter", async () => {
    const refused = await gw.call("POST", "/v1/invoices", {
      body: { account: gw.app.demo!.merchant.id, asset: "USDC", amount: "1.5", rail: "no-such-rail" },
    });
    expect(refused.status).toBe(400);
    expect(refused.body.error).toMatchObject({ code: "rail_not_found", param: "rail" });
  });

  it("answers the wallets' route as documented: a client secret of no invoice, a rail without the route", async () => {
    const body = {
      client_secret: `pay_secret_${"ab".repeat(24)}`,
      from: `0x${"11".repeat(20)}`,
      value: "1",
      valid_after: "0",
      valid_before: "99999999999",
      nonce: `0x${"22".repeat(32)}`,
      signature: `0x${"33".repeat(65)}`,
    };
    const unknown = await gw.call("POST", "/pay/evm/authorizations", { body, key: null });
    expect([unknown.status, unknown.body.error.code]).toEqual([404, "invoice_not_found"]);
    const noRail = await gw.call("POST", "/pay/no-such-rail/authorizations", { body, key: null });
    expect([noRail.status, noRail.body.error.code]).toEqual([404, "rail_not_found"]);
    const bad = await gw.call("POST", "/pay/no-such-rail/authorizations", {
      body: { ...body, from: 1 },
      key: null,
    });
    expect([bad.status, bad.body.error.code]).toEqual([400, "parameter_invalid"]);
  });
});
