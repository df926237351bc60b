// The paywall end to end, on PGlite and on PostgreSQL, with two toy schemes made in this file from the
// PaymentScheme contract alone (ids x402 and l402, so a paywall can list them; they test the composition, not the
// protocols): /v1/paywalls create, retrieve, list, update, delete, tenant-scoped, each refusal with its code and
// nothing written; one 402 offering both ways with their prices converted at a locked rate; CORS and the
// preflight; a tenant's own Fastify app behind switchyardPaywall, in-process and through a remote Switchyard
// (/v1/paywall_verdicts): served once and completed once when paid, not settled when the handler fails, a failed
// settlement turned into a 402.
import Fastify, { type FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { assets, silentLogger } from "../../core/index.ts";
import { buildExampleApp } from "../../examples/paywall-fastify.ts";
import { type App, createApp } from "../../gateway/app.ts";
import { withoutNul } from "../../gateway/http/schemas.ts";
import {
  createPaywall,
  createPaywallService,
  createPriceLocks,
  getPaywall,
  type PaymentScheme,
  type Paywall,
  type PaywallCheck,
  type PriceLocks,
  paywallsPerTenantMax,
  pendingVerdictsPerTenantMax,
  remotePaywall,
  splitShares,
  switchyardPaywall,
  tenantPaywalls,
} from "../../gateway/paywall/index.ts";
import { createApiKey, createTenant } from "../../gateway/tenants/index.ts";
import { testConfig } from "../support/config.ts";
import { createTestDatabase } from "../support/postgres.ts";
import { recordStatements } from "../support/recording-db.ts";

type Completed = { scheme: string; served: boolean; accountId: string; amount: bigint };

/** A scheme paid by a header `x-toy-<id>: <amount>`; `fail` settles nothing. Records every completion. */
function toyScheme(id: "x402" | "l402", asset: (typeof assets)[keyof typeof assets], completed: Completed[]) {
  const header = `x-toy-${id}`;
  const scheme: PaymentScheme = {
    id,
    assetFor: (rail) => (rail === (id === "x402" ? "evm" : "lightning") ? asset : null),
    carries: (request) => request.headers[header] !== undefined,
    async challenge(resource, offers) {
      const line = offers.map((offer) => `${offer.rail}=${offer.price.amount}`).join(";");
      return id === "x402"
        ? {
            headers: [["PAYMENT-REQUIRED", Buffer.from(line).toString("base64")]],
            body: {
              x402Version: 1,
              accepts: offers.map((offer) => ({ maxAmountRequired: `${offer.price.amount}` })),
            },
          }
        : {
            headers: [
              ["WWW-Authenticate", `LSAT macaroon="${resource.paywallId}", invoice="${line}"`],
              ["WWW-Authenticate", `L402 macaroon="${resource.paywallId}", invoice="${line}"`],
            ],
          };
    },
    async verify(resource, offers, request) {
      const sent = request.headers[header] as string;
      const amount = sent === "fail" ? offers[0]!.price.amount : BigInt(sent);
      if (!offers.some((offer) => offer.price.amount === amount))
        return { kind: "refused", refusal: { code: "toy_amount_wrong", message: "not the price" } };
      return {
        kind: "paid",
        payer: "toy-payer",
        async complete({ served }) {
          completed.push({ scheme: id, served, accountId: resource.accountId, amount });
          if (served && sent === "fail")
            return { settled: false, refusal: { code: "toy_settle_failed", message: "no" }, headers: [] };
          return { settled: true, headers: served ? [["PAYMENT-RESPONSE", "receipt"]] : [] };
        },
      };
    },
  };
  // The toy L402 sells tokens paid before: `x-toy-l402: prepaid` is good without a price (as an L402 token).
  if (id === "l402")
    scheme.verifyPrepaid = async (resource, rails, request) =>
      request.headers[header] === "prepaid" && rails.includes("lightning")
        ? {
            kind: "paid",
            payer: "toy-token",
            async complete({ served }) {
              completed.push({ scheme: id, served, accountId: resource.accountId, amount: 0n });
              return { settled: true, headers: [] };
            },
          }
        : { kind: "refused", refusal: { code: "toy_not_prepaid", message: "no token" } };
  return scheme;
}

/** A tenant's own app: one free route, one paid, one paid that fails. */
async function tenantApp(paywall: PaywallCheck, served: string[]): Promise<FastifyInstance> {
  const app = Fastify();
  await app.register(switchyardPaywall, { paywall, publicOrigin: "http://shop.test" });
  app.get("/free", async () => ({ free: true }));
  app.get("/paid/report", async () => {
    served.push("report");
    return { report: "the goods" };
  });
  app.get("/paid/broken", async (_request, reply) => reply.code(500).send({ broken: true }));
  return app;
}

/** A US cent is 10,000 µUSD; one minor unit of any other asset is `rate` µUSD. */
const usdRateAt = (code: string, rate: bigint) => ({
  microUsd: code === "USD" ? 10_000n : rate,
  perMinorUnits: 1n,
});

describe.each(["pglite", "postgres"] as const)("on %s", (database) => {
  let app: App;
  let key: string;
  let tenantId: string;
  let other: string;
  const completed: Completed[] = [];
  const call = async (method: string, url: string, body?: unknown, auth = key) => {
    const response = await app.server.inject({
      method: method as "GET",
      url,
      headers: {
        authorization: `Bearer ${auth}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
    });
    return { status: response.statusCode, body: response.body === "" ? null : response.json() };
  };
  const count = async () => {
    const [row] = await app.db.query<{ n: string }>("SELECT count(*)::text AS n FROM paywalls");
    return Number(row!.n);
  };

  beforeAll(async () => {
    const env: Record<string, string> = { LOG_LEVEL: "silent", PORT: "0" };
    if (database === "postgres") env.DATABASE_URL = await createTestDatabase(inject("postgresUrl"), "http");
    app = await createApp(testConfig(env), {
      paymentSchemes: [toyScheme("x402", assets.USDC, completed), toyScheme("l402", assets.BTC, completed)],
    });
    key = app.demo!.apiKey;
    tenantId = app.demo!.tenantId;
    const tenant = await createTenant(app.db, { name: "Other" });
    other = (await createApiKey(app.db, { tenantId: tenant.id, mode: "test" })).secret;
  });
  afterAll(async () => {
    await app?.close();
  });

  const body = () => ({
    resource: "/paid/*",
    description: "reports",
    price: { amount: "0.01", asset: "USD" },
    offers: [
      { scheme: "x402", rail: "evm" },
      { scheme: "l402", rail: "lightning" },
    ],
    accounts: [app.demo!.merchant.id, app.demo!.btc.id],
  });

  it("creates, retrieves, lists, updates and deletes a paywall, hidden from another tenant", async () => {
    const created = await call("POST", "/v1/paywalls", { ...body(), resource: "/crud" });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({
      object: "paywall",
      resource: "/crud",
      price: { amount: "0.01", asset: "USD" },
      accounts: { USDC: app.demo!.merchant.id, BTC: app.demo!.btc.id },
      split: [],
      l402: { token_lifetime_seconds: 3600, token_requests_max: null },
      mime_type: "application/json",
    });
    const id = created.body.id as string;
    expect((await call("GET", `/v1/paywalls/${id}`)).body).toEqual(created.body);
    expect((await call("GET", `/v1/paywalls/${id}`, undefined, other)).body.error.code).toBe(
      "paywall_not_found",
    );
    expect((await call("GET", "/v1/paywalls")).body.data.map((item: { id: string }) => item.id)).toContain(
      id,
    );
    expect((await call("GET", "/v1/paywalls", undefined, other)).body.data).toEqual([]);
    const updated = await call("PATCH", `/v1/paywalls/${id}`, {
      price: { amount: "0.02", asset: "USD" },
      l402: { token_requests_max: 5 },
    });
    expect(updated.body).toMatchObject({ price: { amount: "0.02" }, l402: { token_requests_max: 5 } });
    expect((await call("PATCH", `/v1/paywalls/${id}`, { description: "x" }, other)).status).toBe(404);
    expect((await call("DELETE", `/v1/paywalls/${id}`, undefined, other)).status).toBe(404);
    expect((await call("DELETE", `/v1/paywalls/${id}`)).body).toEqual({
      id,
      object: "paywall",
      deleted: true,
    });
    expect((await call("GET", `/v1/paywalls/${id}`)).status).toBe(404);
  });

  it("documents a paywall's and a verdict's missing object 404 on their paths, and what a paywall's body names 400", async () => {
    const document = (await app.server.inject({ method: "GET", url: "/openapi.json" })).json();
    const codes = (path: string, method: string, status: string): string[] =>
      document.paths[path]?.[method]?.responses?.[status]?.["x-error-codes"] ?? [];
    // Before: every not-found code of the API under 404 (the ids' prefixes were not known to the document).
    for (const method of ["get", "patch", "delete"])
      expect([method, codes("/v1/paywalls/{id}", method, "404")]).toEqual([method, ["paywall_not_found"]]);
    expect(codes("/v1/paywall_verdicts/{id}/complete", "post", "404")).toEqual(["paywall_verdict_not_found"]);
    for (const method of ["post", "patch"]) {
      const path = method === "post" ? "/v1/paywalls" : "/v1/paywalls/{id}";
      expect(codes(path, method, "400")).toEqual(
        expect.arrayContaining(["account_not_found", "payee_not_found"]),
      );
      expect(codes(path, method, "409")).toContain("paywall_resource_taken");
    }
    for (const path of ["/v1/x402/verify", "/v1/x402/settle"])
      expect(codes(path, "post", "400")).toEqual(
        expect.arrayContaining(["account_not_found", "asset_mismatch"]),
      );
  });

  it("says of every text a request's body, query or path may hold that it holds no NUL, as every route refuses one", async () => {
    // text-safety.ts refuses a NUL anywhere in a request before it is validated: a text the document left open was a
    // fuzzer's schema-valid request refused (schemathesis: a verdict's URL, raw_headers and header names, an x402
    // payload's keys). Each says so with a pattern (the shared one when it has none of its own), a format or a list.
    const document = (await app.server.inject({ method: "GET", url: "/openapi.json" })).json();
    const open: string[] = [];
    const walk = (schema: any, where: string): void => {
      if (schema === null || typeof schema !== "object") return;
      if (typeof schema.$ref === "string") {
        walk(document.components.schemas[schema.$ref.replace("#/components/schemas/", "")], where);
        return;
      }
      const said = ["pattern", "format", "enum", "const"].some((keyword) => keyword in schema);
      if ([schema.type].flat().includes("string") && !said) open.push(where);
      for (const [name, inner] of Object.entries<any>(schema.properties ?? {}))
        walk(inner, `${where}.${name}`);
      walk(schema.propertyNames, `${where}.<name>`);
      walk(schema.additionalProperties, `${where}.<value>`);
      walk(schema.items, `${where}[]`);
      for (const keyword of ["anyOf", "oneOf", "allOf"])
        for (const inner of schema[keyword] ?? []) walk(inner, where);
    };
    let walked = 0;
    for (const [path, methods] of Object.entries<any>(document.paths))
      for (const [method, operation] of Object.entries<any>(methods)) {
        // A header cannot carry a NUL (Node refuses the request before any route).
        for (const parameter of operation.parameters ?? [])
          if (parameter.in !== "header") walk(parameter.schema, `${method} ${path} ${parameter.name}`);
        walk(operation.requestBody?.content?.["application/json"]?.schema, `${method} ${path}`);
        walked += 1;
      }
    expect(open).toEqual([]);
    expect(walked).toBeGreaterThan(40);
    const verdict =
      document.paths["/v1/paywall_verdicts"].post.requestBody.content["application/json"].schema;
    expect(verdict.properties.raw_headers.items.pattern).toBe(withoutNul.source);
    expect(verdict.properties.headers.propertyNames.pattern).toBe(withoutNul.source);
  });

  it("refuses bad paywalls with a stable code and writes nothing", async () => {
    const before = await count();
    const cases: [unknown, number, string][] = [
      [{ ...body(), resource: "paid" }, 400, "parameter_invalid"],
      [{ ...body(), resource: "/a*b" }, 400, "parameter_invalid"],
      // A path ends at `;` for the paywall (as for a router that reads matrix parameters): never inside a resource.
      [{ ...body(), resource: "/a;b" }, 400, "parameter_invalid"],
      [{ ...body(), offers: [{ scheme: "x402", rail: "lightning" }] }, 400, "paywall_scheme_unavailable"],
      [{ ...body(), offers: [{ scheme: "bitcoin", rail: "evm" }] }, 400, "parameter_invalid"],
      [{ ...body(), accounts: [app.demo!.merchant.id] }, 400, "paywall_account_missing"],
      [{ ...body(), accounts: [app.demo!.merchant.id, app.demo!.usd.id] }, 400, "paywall_account_missing"],
      [{ ...body(), price: { amount: "0.001", asset: "USD" } }, 400, "amount_too_precise"],
      [{ ...body(), price: { amount: "1", asset: "DOGE" } }, 400, "unknown_asset"],
      [
        { ...body(), split: [{ payee: "pye_01m7zfckv29pdrb3m0gz9e4j5g", basis_points: 100 }] },
        400,
        "payee_not_found",
      ],
      [
        { ...body(), split: [{ payee: "pye_01m7zfckv29pdrb3m0gz9e4j5g", basis_points: 10_001 }] },
        400,
        "parameter_invalid",
      ],
      [{ ...body(), surprise: 1 }, 400, "parameter_unknown"],
    ];
    for (const [sent, status, code] of cases) {
      const answer = await call("POST", "/v1/paywalls", sent);
      expect([answer.status, answer.body.error.code], JSON.stringify(sent)).toEqual([status, code]);
    }
    expect((await call("POST", "/v1/paywalls", { ...body(), resource: "/twice" })).status).toBe(201);
    const twice = await call("POST", "/v1/paywalls", { ...body(), resource: "/twice" });
    expect([twice.status, twice.body.error.code]).toEqual([409, "paywall_resource_taken"]);
    expect(await count()).toBe(before + 1);
  });

  it("splits by basis points into a payee's account, the remainder to the seller", async () => {
    const payee = await call("POST", "/v1/payees", {
      name: "Partner",
      methods: [
        { type: "account", account: app.demo!.customer.id },
        { type: "account", account: app.demo!.btc.id },
      ],
    });
    const created = await call("POST", "/v1/paywalls", {
      ...body(),
      resource: "/split",
      split: [{ payee: payee.body.id, basis_points: 2_500 }],
    });
    expect(created.body.split).toEqual([
      {
        payee: payee.body.id,
        basis_points: 2_500,
        accounts: { USDC: app.demo!.customer.id, BTC: app.demo!.btc.id },
      },
    ]);
    // 10 001 minor units: 2 500 floored, the remainder to the seller.
    expect(
      splitShares(10_001n, {
        accountId: "acct_seller",
        split: [{ accountId: "acct_p", basisPoints: 2_500 }],
      }),
    ).toEqual([
      { accountId: "acct_seller", amount: 7_501n },
      { accountId: "acct_p", amount: 2_500n },
    ]);
  });

  it("refuses a paywall past the most a request is matched against, which would be served free", async () => {
    const created = await call("POST", "/v1/paywalls", { ...body(), resource: "/bulk/template" });
    expect(created.status).toBe(201);
    const held = async () =>
      Number(
        (
          await app.db.query<{ n: number }>("SELECT count(*)::int AS n FROM paywalls WHERE tenant_id = $1", [
            tenantId,
          ])
        )[0]!.n,
      );
    // Copies of it up to one short of the most.
    await app.db.query(
      `INSERT INTO paywalls (id, tenant_id, resource, description, mime_type, price_asset, price_amount, offers,
         accounts, split, token_lifetime_seconds, token_requests_max, metadata, created_at, updated_at)
       SELECT 'pwl_bulk' || n, tenant_id, '/bulk/' || n, description, mime_type, price_asset, price_amount, offers,
         accounts, split, token_lifetime_seconds, token_requests_max, metadata, created_at, updated_at
       FROM paywalls, generate_series(1, $2::int - $3::int - 1) AS n WHERE id = $1`,
      [created.body.id, paywallsPerTenantMax, await held()],
    );
    try {
      expect(await held()).toBe(paywallsPerTenantMax - 1);
      const last = await call("POST", "/v1/paywalls", { ...body(), resource: "/bulk/last" });
      expect(last.status).toBe(201);
      const past = await call("POST", "/v1/paywalls", { ...body(), resource: "/bulk/past" });
      expect([past.status, past.body.error.code]).toEqual([409, "paywalls_too_many"]);
      expect(await held()).toBe(paywallsPerTenantMax);
      // Every one of them is matched: the newest too.
      const matched = await tenantPaywalls(app.db, { tenantId });
      expect(matched.map((paywall) => paywall.resource)).toContain("/bulk/last");
    } finally {
      await app.db.query("DELETE FROM paywalls WHERE tenant_id = $1 AND resource LIKE '/bulk/%'", [tenantId]);
    }
  });

  it("refuses a split whose payees are paid to the same account, which would credit one account twice", async () => {
    const methods = [
      { type: "account", account: app.demo!.customer.id },
      { type: "account", account: app.demo!.btc.id },
    ];
    const first = await call("POST", "/v1/payees", { name: "One", methods });
    const second = await call("POST", "/v1/payees", { name: "Same account", methods });
    const before = await count();
    const refused = await call("POST", "/v1/paywalls", {
      ...body(),
      resource: "/split-twice",
      split: [
        { payee: first.body.id, basis_points: 1_000 },
        { payee: second.body.id, basis_points: 1_000 },
      ],
    });
    expect([refused.status, refused.body.error.code, refused.body.error.param]).toEqual([
      400,
      "paywall_split_invalid",
      "split.1.payee",
    ]);
    expect(await count()).toBe(before);
  });

  describe("in front of a tenant's app", () => {
    let paywallId: string;
    beforeAll(async () => {
      paywallId = (await call("POST", "/v1/paywalls", body())).body.id;
    });

    for (const mode of ["in-process", "remote"] as const) {
      it(`answers one 402 with every way to pay, serves a paid request once (${mode})`, async () => {
        const paywall =
          mode === "in-process"
            ? createPaywall({ sql: app.db, tenantId, schemes: app.paywalls.schemes, rates: app.rates })
            : remotePaywall({
                baseUrl: "http://switchyard.test",
                apiKey: key,
                fetch: (async (url: string, init: RequestInit) => {
                  const answer = await app.server.inject({
                    method: init.method as "POST",
                    url: new URL(url).pathname,
                    headers: init.headers as Record<string, string>,
                    payload: init.body as string,
                  });
                  return new Response(answer.body, { status: answer.statusCode });
                }) as typeof fetch,
              });
        const served: string[] = [];
        const shop = await tenantApp(paywall, served);
        completed.length = 0;

        expect((await shop.inject({ url: "/free" })).json()).toEqual({ free: true });

        const unpaid = await shop.inject({
          url: "/paid/report?x=1",
          headers: { origin: "https://app.example" },
        });
        expect(unpaid.statusCode).toBe(402);
        // 0.01 USD is 10 000 µUSDC, and 10 000 msat at the development rate of BTC ($100,000).
        expect(Buffer.from(unpaid.headers["payment-required"] as string, "base64").toString()).toBe(
          "evm=10000",
        );
        expect(unpaid.headers["www-authenticate"]).toEqual([
          `LSAT macaroon="${paywallId}", invoice="lightning=10000"`,
          `L402 macaroon="${paywallId}", invoice="lightning=10000"`,
        ]);
        expect(unpaid.json()).toMatchObject({
          x402Version: 1,
          accepts: [{ maxAmountRequired: "10000" }],
          error: "payment_required",
          paywall: paywallId,
        });
        expect(unpaid.headers["access-control-allow-origin"]).toBe("*");
        expect(unpaid.headers["access-control-expose-headers"]).toContain("PAYMENT-REQUIRED");
        expect(unpaid.headers["access-control-expose-headers"]).toContain("WWW-Authenticate");
        expect(unpaid.headers["cache-control"]).toBe("no-store");

        const preflight = await shop.inject({
          method: "OPTIONS",
          url: "/paid/report",
          headers: {
            origin: "https://app.example",
            "access-control-request-method": "GET",
            "access-control-request-headers": "payment-signature, access-control-expose-headers",
          },
        });
        expect(preflight.statusCode).toBe(204);
        expect(preflight.headers["access-control-allow-headers"]).toContain("PAYMENT-SIGNATURE");
        expect(preflight.headers["access-control-allow-headers"]).toContain("X-PAYMENT");
        expect(preflight.headers["access-control-allow-headers"]).toContain("Authorization");
        expect(preflight.headers["access-control-allow-headers"]).toContain("Access-Control-Expose-Headers");

        const paid = await shop.inject({ url: "/paid/report", headers: { "x-toy-x402": "10000" } });
        expect([paid.statusCode, paid.json()]).toEqual([200, { report: "the goods" }]);
        expect(paid.headers["payment-response"]).toBe("receipt");
        expect(served).toEqual(["report"]);
        expect(completed).toEqual([
          { scheme: "x402", served: true, accountId: app.demo!.merchant.id, amount: 10_000n },
        ]);

        const wrong = await shop.inject({ url: "/paid/report", headers: { "x-toy-l402": "9999" } });
        expect([wrong.statusCode, wrong.json().error]).toEqual([402, "toy_amount_wrong"]);
        expect(wrong.headers["payment-required"]).toBeDefined(); // a fresh challenge with the refusal

        const both = await shop.inject({
          url: "/paid/report",
          headers: { "x-toy-l402": "10000", "x-toy-x402": "10000" },
        });
        expect([both.statusCode, both.json().error]).toEqual([402, "payment_ambiguous"]);

        const broken = await shop.inject({ url: "/paid/broken", headers: { "x-toy-x402": "10000" } });
        expect(broken.statusCode).toBe(500);
        expect(broken.headers["payment-response"]).toBeUndefined();

        const failed = await shop.inject({ url: "/paid/report", headers: { "x-toy-x402": "fail" } });
        expect([failed.statusCode, failed.json().error]).toEqual([402, "toy_settle_failed"]);
        expect(failed.body).not.toContain("the goods");
        // The 402 after a failed settlement offers every way again: x402 (its header, the v1 body), L402 beside it.
        expect(Buffer.from(failed.headers["payment-required"] as string, "base64").toString()).toBe(
          "evm=10000",
        );
        expect(failed.headers["www-authenticate"]).toHaveLength(2);
        expect(failed.json()).toMatchObject({
          x402Version: 1,
          accepts: [{ maxAmountRequired: "10000" }],
          message: "no",
          paywall: paywallId,
        });
        expect(failed.headers["cache-control"]).toBe("no-store");
        expect(served).toEqual(["report", "report"]); // the handler ran; its answer was discarded
        expect(completed.slice(1)).toEqual([
          { scheme: "x402", served: false, accountId: app.demo!.merchant.id, amount: 10_000n },
          { scheme: "x402", served: true, accountId: app.demo!.merchant.id, amount: 10_000n },
        ]);
        await shop.close();
      });
    }

    it("runs the example app against Switchyard over real HTTP: free route free, paid route paid once", async () => {
      await call("POST", "/v1/paywalls", { ...body(), resource: "/reports/*" });
      const switchyard = await app.server.listen({ port: 0, host: "127.0.0.1" });
      const shop = await buildExampleApp({ paywall: remotePaywall({ baseUrl: switchyard, apiKey: key }) });
      const base = await shop.listen({ port: 0, host: "127.0.0.1" });
      try {
        completed.length = 0;
        const free = await fetch(`${base}/hello`);
        expect([free.status, await free.json()]).toEqual([200, { hello: "free for everyone" }]);
        const unpaid = await fetch(`${base}/reports/q1`);
        expect(unpaid.status).toBe(402);
        expect(unpaid.headers.get("payment-required")).not.toBeNull();
        expect(unpaid.headers.get("www-authenticate")).toContain("L402 macaroon=");
        expect(((await unpaid.json()) as { error: string }).error).toBe("payment_required");
        // Spellings Fastify serves from the same paid route are not free either.
        for (const spelling of ["/rep%6frts/q1", "/REPORTS/q1", "/reports/%71%31"])
          expect({ spelling, status: (await fetch(`${base}${spelling}`)).status }).toEqual({
            spelling,
            status: 402,
          });
        const paid = await fetch(`${base}/reports/q1`, { headers: { "x-toy-l402": "10000" } });
        expect([paid.status, await paid.json()]).toEqual([200, { report: "q1", body: "the paid content" }]);
        expect(paid.headers.get("payment-response")).toBe("receipt");
        expect(completed).toEqual([
          { scheme: "l402", served: true, accountId: app.demo!.btc.id, amount: 10_000n },
        ]);
      } finally {
        await shop.close();
      }
    });

    it("keeps the locked price through a rate change within the window", async () => {
      const now = createPaywall({ sql: app.db, tenantId, schemes: app.paywalls.schemes, rates: app.rates });
      const asked = await now({ method: "GET", url: "http://shop.test/paid/report", headers: {} });
      expect(asked.kind).toBe("challenge");
      const [row] = await app.db.query<{ n: string }>(
        "SELECT count(*)::text AS n FROM paywall_rate_locks WHERE paywall_id = $1",
        [paywallId],
      );
      expect(Number(row!.n)).toBeGreaterThan(0); // USDC and BTC locked; USD needed no conversion
      // Two paywalls over one database and one clock fixed inside a window (a real clock may cross a window's end
      // between two challenges): the first locks at its rate, the second, at another rate, offers the locked price.
      const windowStartMs = Math.ceil(Date.now() / 60_000) * 60_000 + 5 * 60_000;
      const challengeAt = async (rate: bigint, atMs: number) => {
        const check = createPaywall({
          sql: app.db,
          tenantId,
          schemes: app.paywalls.schemes,
          rates: { usdRate: (code: string) => usdRateAt(code, rate) },
          nowMs: () => atMs,
        });
        const verdict = await check({ method: "GET", url: "http://shop.test/paid/report", headers: {} });
        expect(verdict.kind).toBe("challenge");
        if (verdict.kind !== "challenge") return null;
        const header = verdict.headers.find(([name]) => name === "PAYMENT-REQUIRED")![1];
        return Buffer.from(header, "base64").toString();
      };
      const locked = await challengeAt(1n, windowStartMs + 1_000);
      expect(locked).toBe("evm=10000");
      expect(await challengeAt(2n, windowStartMs + 30_000)).toBe(locked);
      // The next window locks again, at the rate of then.
      expect(await challengeAt(2n, windowStartMs + 120_000)).toBe("evm=5000");
    });

    it("answers 503 with Retry-After when no way to pay can be priced (it had none, as a 503 must)", async () => {
      const check = createPaywall({
        sql: app.db,
        tenantId,
        schemes: app.paywalls.schemes,
        rates: { usdRate: () => null },
        // A window no price was locked in yet: nothing to price USDC and BTC with.
        nowMs: () => Math.ceil(Date.now() / 60_000) * 60_000 + 60 * 60_000,
      });
      const verdict = await check({ method: "GET", url: "http://shop.test/paid/report", headers: {} });
      expect(verdict).toMatchObject({
        kind: "challenge",
        status: 503,
        body: { error: "paywall_rate_unavailable" },
      });
      const retryAfter =
        verdict.kind === "challenge" ? verdict.headers.find(([name]) => name === "Retry-After") : null;
      expect(Number(retryAfter?.[1])).toBeGreaterThan(0);
      // A token paid for before needs no price: it is served, though a payment still to be made is not.
      const prepaid = await check({
        method: "GET",
        url: "http://shop.test/paid/report",
        headers: { "x-toy-l402": "prepaid" },
      });
      expect(prepaid).toMatchObject({ kind: "paid" });
      if (prepaid.kind === "paid") await prepaid.complete({ served: true });
    });

    it("a price too large to convert into an offer's asset leaves that offer out, never a 500", async () => {
      const created = await call("POST", "/v1/paywalls", {
        ...body(),
        resource: "/priceless",
        price: { amount: "1000000000000000", asset: "USD" },
      });
      expect(created.status).toBe(201);
      try {
        const check = createPaywall({
          sql: app.db,
          tenantId,
          schemes: app.paywalls.schemes,
          rates: { usdRate: (code: string) => usdRateAt(code, 1n) },
          nowMs: () => Math.ceil(Date.now() / 60_000) * 60_000 + 90 * 60_000,
        });
        // $10^15 is 10^21 USDC minor units and as many msat at these rates: past what an amount can be, in both.
        const verdict = await check({ method: "GET", url: "http://shop.test/priceless", headers: {} });
        expect(verdict).toMatchObject({
          kind: "challenge",
          status: 503,
          body: { error: "paywall_rate_unavailable" },
        });
      } finally {
        await call("DELETE", `/v1/paywalls/${created.body.id}`);
      }
    });

    it("gives a price lock forgotten past cachedMax back from its row: the price of its window, as another process", async () => {
      const atMs = Math.ceil(Date.now() / 60_000) * 60_000 + 10 * 60_000 + 1_000;
      let rate = 1n;
      const statements: string[] = [];
      const locks = createPriceLocks({
        sql: recordStatements(app.db, statements),
        rates: { usdRate: (code: string) => usdRateAt(code, rate) },
        nowMs: () => atMs,
        cachedMax: 2,
      });
      const [a, b, c] = await Promise.all(
        ["/evict/a", "/evict/b", "/evict/c"].map(async (resource) => {
          const id = (await call("POST", "/v1/paywalls", { ...body(), resource })).body.id as string;
          return (await getPaywall(app.db, { tenantId, id }))!;
        }),
      );
      /** The paywall's USDC price, and whether a statement was sent for it (a lock not remembered). */
      const usdcOf = async (prices: PriceLocks, paywall: Paywall) => {
        statements.length = 0;
        const amount = (await prices.current(paywall, [assets.USDC])).get("USDC");
        return { amount, asked: statements.length > 0 };
      };
      expect(await usdcOf(locks, a!)).toEqual({ amount: 10_000n, asked: true });
      rate = 2n;
      expect(await usdcOf(locks, b!)).toEqual({ amount: 5_000n, asked: true });
      expect(await usdcOf(locks, c!)).toEqual({ amount: 5_000n, asked: true });
      // Two kept, answered from memory; the first forgotten: read back at the price it was locked at, not the rate now.
      expect(await usdcOf(locks, c!)).toEqual({ amount: 5_000n, asked: false });
      expect(await usdcOf(locks, b!)).toEqual({ amount: 5_000n, asked: false });
      expect(await usdcOf(locks, a!)).toEqual({ amount: 10_000n, asked: true });
      // Another process, at yet another rate: the same prices in this window.
      const other = createPriceLocks({
        sql: app.db,
        rates: { usdRate: (code) => usdRateAt(code, 4n) },
        nowMs: () => atMs,
      });
      for (const [paywall, amount] of [
        [a!, 10_000n],
        [b!, 5_000n],
        [c!, 5_000n],
      ] as const)
        expect((await usdcOf(other, paywall)).amount).toBe(amount);
    });

    it("a lock made from a price changed since is never read as the new price's", async () => {
      const atMs = Math.ceil(Date.now() / 60_000) * 60_000 + 30 * 60_000 + 1_000;
      const id = (await call("POST", "/v1/paywalls", { ...body(), resource: "/repriced" })).body.id as string;
      const before = (await getPaywall(app.db, { tenantId, id }))!;
      const updated = await call("PATCH", `/v1/paywalls/${id}`, { price: { amount: "0.02", asset: "USD" } });
      expect(updated.status).toBe(200);
      const after = (await getPaywall(app.db, { tenantId, id }))!;
      const process = () =>
        createPriceLocks({
          sql: app.db,
          rates: { usdRate: (code) => usdRateAt(code, 1n) },
          nowMs: () => atMs,
        });
      // A process not yet told of the change locks the old price for the window, after the change's write.
      const stale = (await process().current(before, [assets.USDC])).get("USDC")!;
      // Before: every process then read that lock as the new price's, and charged the old one for the window.
      const fresh = (await process().current(after, [assets.USDC])).get("USDC")!;
      expect(fresh).toBe(stale * 2n);
    });

    it("holds at most pendingVerdictsPerTenantMax of one tenant's paid verdicts: the others' places stay theirs", async () => {
      const service = createPaywallService({
        sql: app.db,
        schemes: [],
        rates: { usdRate: () => null },
        logger: silentLogger,
      });
      let completed = 0;
      const paid = {
        kind: "paid" as const,
        paywallId: "pw_x",
        scheme: "toy",
        payer: "someone",
        complete: async () => {
          completed += 1;
          return { kind: "settled" as const, headers: [] };
        },
      };
      try {
        for (let n = 0; n < pendingVerdictsPerTenantMax; n++)
          expect(service.hold("ten_busy", paid)).not.toBeNull();
        // Before: the tenant went on to every place of the process (10,000), and every other tenant's paid request
        // was answered 503 until its verdicts lapsed.
        expect(service.hold("ten_busy", paid)).toBeNull();
        const other = service.hold("ten_other", paid);
        expect(other).not.toBeNull();
        expect(await service.complete("ten_other", other!, { served: true })).toEqual({
          kind: "settled",
          headers: [],
        });
      } finally {
        await service.close();
      }
      expect(completed).toBe(pendingVerdictsPerTenantMax + 1);
    });

    it("builds a tenant's check again once forgotten past tenantsCachedMax, at the price locked before", async () => {
      const atMs = Math.ceil(Date.now() / 60_000) * 60_000 + 20 * 60_000 + 1_000;
      let rate = 1n;
      const service = createPaywallService({
        sql: app.db,
        schemes: app.paywalls.schemes,
        rates: { usdRate: (code: string) => usdRateAt(code, rate) },
        logger: silentLogger,
        nowMs: () => atMs,
        tenantsCachedMax: 2,
      });
      const offered = async (check: PaywallCheck) => {
        const verdict = await check({ method: "GET", url: "http://shop.test/paid/report", headers: {} });
        if (verdict.kind !== "challenge") throw new Error(`a challenge, not ${verdict.kind}`);
        const header = verdict.headers.find(([name]) => name === "PAYMENT-REQUIRED")![1];
        return Buffer.from(header, "base64").toString();
      };
      const first = service.forTenant(tenantId);
      expect(await offered(first)).toBe("evm=10000");
      rate = 2n;
      const second = service.forTenant("ten_second");
      expect(service.forTenant(tenantId)).toBe(first);
      // A third tenant forgets the first built: the two last are kept, no more.
      const third = service.forTenant("ten_third");
      expect([service.forTenant("ten_second"), service.forTenant("ten_third")]).toEqual([second, third]);
      const again = service.forTenant(tenantId);
      expect(again).not.toBe(first);
      // Built again, it reads the tenant's paywalls and offers the price locked for this window.
      expect(await offered(again)).toBe("evm=10000");
      expect(service.forTenant(tenantId)).toBe(again);
    });
  });
});
