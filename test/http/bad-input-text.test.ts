// Text PostgreSQL cannot store — a NUL character, an unpaired UTF-16 surrogate — is refused with 400
// `parameter_invalid` naming the parameter, on every route (taken from the OpenAPI document, so a new route is
// covered without a line here), in a body value, a body key, a query parameter and a path parameter, with and
// without an Idempotency-Key, on PGlite and on PostgreSQL; and nothing is written, not even the key's claim.
// Then: an Idempotency-Key whose answer cannot be kept still gets an answer in the API's error shape.
import { randomBytes } from "node:crypto";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ensureOperatorKey } from "../../gateway/tenants/index.ts";
import { operatorPath, startTestGateway, type TestGateway } from "./support.ts";

const operatorKey = `op_${randomBytes(32).toString("base64url")}`;
const nul = String.fromCharCode(0);
const loneHigh = String.fromCharCode(0xd800);
const loneLow = String.fromCharCode(0xdc00);
/** Each as JSON carries it, and as a URL does: percent-encoded UTF-8 (a surrogate's three bytes, as WTF-8 writes it). */
const unstorable = [
  { name: "a NUL character", text: `a${nul}b`, escaped: "a\\u0000b", url: "a%00b" },
  { name: "a lone high surrogate", text: `a${loneHigh}b`, escaped: "a\\ud800b", url: "a%ED%A0%80b" },
  { name: "a lone low surrogate", text: `${loneLow}b`, escaped: "\\udc00b", url: "%ED%B0%80b" },
] as const;

type Method = "GET" | "POST" | "PATCH" | "DELETE";
type Operation = { method: Method; path: string; bodyProperties: string[] };

describe.each(["pglite", "postgres"] as const)("on %s", (database) => {
  let gw: TestGateway;
  let operations: Operation[];
  /** Every table's rows, digested (support.ts): equal before and after, nothing was written. */
  let before: Record<string, string>;

  /** The digests of the tables requests write: the chain watcher's own (blocks, cursors, leases) move on their own. */
  async function digests(): Promise<Record<string, string>> {
    const all = await gw.tableDigests();
    return Object.fromEntries(Object.entries(all).filter(([table]) => !table.startsWith("evm_watch_")));
  }

  async function send(
    method: Method,
    url: string,
    options: { body?: unknown; key?: string } = {},
  ): Promise<{ status: number; body: any }> {
    // The operator's routes answer only the operator's credential; every other route, the tenant's key.
    const credential = operatorPath(url) ? operatorKey : gw.key;
    const headers: Record<string, string> = { authorization: `Bearer ${credential}` };
    if (options.key !== undefined) headers["idempotency-key"] = options.key;
    if (options.body !== undefined) headers["content-type"] = "application/json";
    const response = await gw.app.server.inject({
      method,
      url,
      headers,
      ...(options.body === undefined ? {} : { payload: JSON.stringify(options.body) }),
    });
    return { status: response.statusCode, body: response.body === "" ? null : response.json() };
  }

  beforeAll(async () => {
    gw = await startTestGateway({ database });
    await ensureOperatorKey(gw.app.db, { configured: operatorKey });
    const document = await gw.app.server.inject({ method: "GET", url: "/openapi.json" });
    const paths = document.json().paths as Record<string, Record<string, any>>;
    operations = Object.entries(paths)
      .filter(([path]) => path.startsWith("/v1/"))
      .flatMap(([path, methods]) =>
        Object.entries(methods)
          .filter(([method]) => ["get", "post", "patch", "delete"].includes(method))
          .map(([method, operation]) => {
            const schema = operation?.requestBody?.content?.["application/json"]?.schema;
            // A body the route may go without is an object or null (anyOf): its properties are the object's.
            const object = (schema?.anyOf ?? [schema]).find(
              (option: any) => option?.properties !== undefined,
            );
            return {
              method: method.toUpperCase() as Method,
              path,
              bodyProperties: Object.keys(object?.properties ?? {}),
            };
          }),
      );
    before = await digests();
  });
  afterAll(async () => {
    await gw?.app.close();
  });
  // Each refused request wrote nothing, in any table: no object, no ledger transfer, no Idempotency-Key claimed.
  // Checked after every test, whatever order they run in (the emoji's, the one that writes, takes the digests again):
  // a test of its own, run last, failed when a shuffled order ran the emoji's write before it.
  afterEach(async () => {
    expect(await digests(), "a refused request wrote something").toEqual(before);
  });

  /** A path with each `{param}` filled with `value`. */
  const fill = (path: string, value: (name: string) => string) =>
    path.replace(/\{([^}]+)\}/g, (_, name: string) => value(name));
  const sampleId = () => "acct_demo_customer";

  describe.each(unstorable)("$name", ({ text, escaped, url: inUrl }) => {
    it("in a body value, on every route that takes a body, with and without an Idempotency-Key", async () => {
      let checked = 0;
      for (const op of operations.filter((o) => o.bodyProperties.length > 0)) {
        for (const property of op.bodyProperties) {
          for (const key of [undefined, `text-${database}-${checked}`]) {
            const answer = await send(op.method, fill(op.path, sampleId), {
              body: { [property]: text },
              ...(key === undefined ? {} : { key }),
            });
            expect([
              op.method,
              op.path,
              answer.status,
              answer.body?.error?.code,
              answer.body?.error?.param,
            ]).toEqual([op.method, op.path, 400, "parameter_invalid", property]);
            checked += 1;
          }
        }
      }
      expect(checked).toBeGreaterThanOrEqual(10);
    });

    it("in a body key, named with the code unit written out", async () => {
      for (const op of operations.filter((o) => o.bodyProperties.length > 0)) {
        const answer = await send(op.method, fill(op.path, sampleId), { body: { [`x${text}`]: "1" } });
        expect([op.method, op.path, answer.status, answer.body?.error?.param]).toEqual([
          op.method,
          op.path,
          400,
          `x${escaped}`,
        ]);
        // The answer carries none of the code units it refused.
        const { message, param } = answer.body.error;
        expect(`${message}${param}`.isWellFormed()).toBe(true);
        expect(`${message}${param}`).not.toContain(nul);
      }
    });

    it("in a query parameter and in a path parameter, on every route", async () => {
      // A URL carries text as percent-encoded UTF-8: a NUL arrives as one, a surrogate's bytes (not UTF-8)
      // never arrive as a surrogate. Either way, no 500; a NUL is refused by name.
      const isNul = text.includes(nul);
      for (const op of operations) {
        // A POST whose body is optional would make its object once the query is let through (a surrogate's bytes
        // are storable text): its body then names a parameter no route takes, so that nothing can be made.
        const withQuery = await send(
          op.method,
          `${fill(op.path, sampleId)}?starting_after=${inUrl}`,
          op.method === "GET" || op.method === "DELETE" ? {} : { body: { not_a_parameter: 1 } },
        );
        if (isNul)
          expect([op.method, op.path, withQuery.status, withQuery.body?.error?.param]).toEqual([
            op.method,
            op.path,
            400,
            "starting_after",
          ]);
        else expect([op.method, op.path, withQuery.status < 500]).toEqual([op.method, op.path, true]);
        if (!op.path.includes("{")) continue;
        const names: string[] = [];
        const url = fill(op.path, (name) => {
          names.push(name);
          return `x${inUrl}`;
        });
        const withParam = await send(op.method, url, op.method === "GET" ? {} : { body: {} });
        expect([op.method, op.path, withParam.status, withParam.body?.error?.code]).toEqual([
          op.method,
          op.path,
          isNul ? 400 : withParam.status,
          isNul ? "parameter_invalid" : withParam.body?.error?.code,
        ]);
        expect(withParam.status).toBeLessThan(500);
        if (isNul) expect(names).toContain(withParam.body.error.param);
      }
    });
  });

  it("names the parameter deep in a payment's, a payee's, an invoice's and an endpoint's body", async () => {
    const cases: Array<{ url: string; method?: Method; body: unknown; param: string }> = [
      {
        url: "/v1/payments",
        body: {
          amount: "1.00",
          asset: "USDC",
          source: { account: "acct_demo_customer" },
          destination: { type: "account", account: "acct_demo_merchant" },
          metadata: { order: `o${loneHigh}` },
        },
        param: "metadata.order",
      },
      {
        url: "/v1/payees",
        body: {
          name: "Alice",
          methods: [{ type: "account", account: "acct_demo_merchant" }],
          metadata: { order: `o${nul}` },
        },
        param: "metadata.order",
      },
      {
        url: "/v1/payees",
        body: { name: `Al${loneLow}ice`, methods: [{ type: "account", account: "acct_demo_merchant" }] },
        param: "name",
      },
      {
        url: "/v1/payees",
        body: { name: "Alice", methods: [{ type: "lightning_address", address: `a${nul}@example.com` }] },
        param: "methods.0.address",
      },
      {
        url: "/v1/invoices",
        body: { account: "acct_demo_customer", amount: "1.00", asset: "USDC", description: `d${nul}` },
        param: "description",
      },
      { url: "/v1/webhook_endpoints", body: { url: `https://example.com/${nul}` }, param: "url" },
      { url: "/v1/webhook_endpoints", body: { url: `https://example.com/${loneHigh}` }, param: "url" },
    ];
    let n = 0;
    for (const c of cases) {
      for (const key of [undefined, `deep-${database}-${n++}`]) {
        const answer = await send(c.method ?? "POST", c.url, {
          body: c.body,
          ...(key === undefined ? {} : { key }),
        });
        expect([c.url, c.param, answer.status, answer.body]).toEqual([
          c.url,
          c.param,
          400,
          { error: { code: "parameter_invalid", message: expect.any(String), param: c.param } },
        ]);
      }
    }
  });

  it("a NUL at the bottom of a body nested 30,000 deep (within the 64 KiB limit): refused at once, the path cut short", async () => {
    const depth = 30_000;
    const started = Date.now();
    const response = await gw.app.server.inject({
      method: "POST",
      url: "/v1/payments",
      headers: { authorization: `Bearer ${gw.key}`, "content-type": "application/json" },
      payload: `${"[".repeat(depth)}"\\u0000"${"]".repeat(depth)}`,
    });
    expect(response.statusCode).toBe(400);
    expect(response.json().error.code).toBe("parameter_invalid");
    expect(response.json().error.param.length).toBeLessThanOrEqual(257);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it("a paired surrogate (an emoji) is text like any other", async () => {
    const answer = await send("POST", "/v1/webhook_endpoints", { body: { url: "https://example.com/😀" } });
    expect(answer.status).toBe(201);
    expect(answer.body.url).toBe("https://example.com/😀");
    before = await digests(); // its endpoint is the one write expected here
  });
});

describe("an Idempotency-Key whose answer cannot be kept", () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({ database: "pglite" });
    // The database refuses to keep any answer: the key's record can be claimed, never completed.
    await gw.app.db.query(
      `CREATE FUNCTION refuse_answers() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION 'answers are refused in this test'; END $$`,
    );
    await gw.app.db.query(
      `CREATE TRIGGER refuse_answers BEFORE UPDATE ON idempotency_keys FOR EACH ROW
       WHEN (NEW.response_status IS NOT NULL) EXECUTE FUNCTION refuse_answers()`,
    );
  });
  afterAll(async () => {
    await gw?.app.close();
  });

  const post = (body: unknown, key: string) =>
    gw.app.server.inject({
      method: "POST",
      url: "/v1/payees",
      headers: {
        authorization: `Bearer ${gw.key}`,
        "content-type": "application/json",
        "idempotency-key": key,
      },
      payload: JSON.stringify(body),
    });

  it("answers a refusal in the API's error shape, with no internal text", async () => {
    const response = await post(
      { name: "Alice", methods: [{ type: "account", account: "acct_nobody_here" }] },
      "unkept-refusal",
    );
    expect(response.statusCode).toBeLessThan(500);
    const body = response.json();
    expect(body).toEqual({
      error: {
        code: expect.any(String),
        message: expect.any(String),
        ...(body.error.param === undefined ? {} : { param: body.error.param }),
      },
    });
    expect(response.body).not.toMatch(/FST_|refused in this test|statusCode/);
  });

  it("answers a success that was done with its own answer", async () => {
    const response = await post(
      { name: "Bob", methods: [{ type: "account", account: "acct_demo_merchant" }] },
      "unkept-success",
    );
    expect(response.body).not.toMatch(/FST_|refused in this test|statusCode/);
    expect(response.statusCode).toBe(201);
    expect(response.json().object).toBe("payee");
  });
});
