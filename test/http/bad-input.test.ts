// Bad input gets a 4xx with a stable code, and nothing is written to the ledger or sent on chain.
import { randomBytes } from "node:crypto";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureOperatorKey } from "../../gateway/tenants/index.ts";
import { signBolt11, wellFormedInvoice } from "../support/bolt11.ts";
import { operatorPath, startTestGateway, type TestGateway } from "./support.ts";

let gw: TestGateway;
let payee: `0x${string}`;
let transfersBefore: bigint;
let nonceBefore: number;
let blockBefore: bigint;

beforeAll(async () => {
  gw = await startTestGateway();
  payee = gw.app.demo!.payee!;
  transfersBefore = await gw.ledgerTransferCount();
  nonceBefore = await gw.hotWalletNonce();
  blockBefore = await gw.blockNumber();
});
afterAll(async () => {
  await gw?.app.close();
});

const signedInvoice = wellFormedInvoice({ amount: "10u" });
const invoiceWithoutHash = signBolt11({
  network: "bcrt",
  amount: "10u",
  timestampSeconds: 1_700_000_000,
  fields: [],
  privateKey: Buffer.alloc(32, 7),
});
/** The character before the checksum replaced by another of bech32's alphabet. */
function oneCharacterChanged(invoice: string): string {
  const at = invoice.length - 7;
  return `${invoice.slice(0, at)}${invoice[at] === "q" ? "p" : "q"}${invoice.slice(at + 1)}`;
}

const valid = () => ({
  amount: "1.00",
  asset: "USDC",
  source: { account: "acct_demo_customer" },
  destination: { type: "evm_address", address: payee },
});

type Case = {
  name: string;
  status: number;
  code: string;
  param?: string;
  body?: () => unknown;
  rawBody?: string;
  key?: string | null;
  headers?: Record<string, string>;
};

const cases: Case[] = [
  { name: "malformed JSON", rawBody: '{"amount": "1.00",', status: 400, code: "invalid_json" },
  // No body, or JSON null, is no parameters: the first one required is named missing. It was parameter_invalid with
  // param "" ("expected object, received null").
  { name: "no body", status: 400, code: "parameter_missing", param: "amount" },
  { name: "a JSON null body", rawBody: "null", status: 400, code: "parameter_missing", param: "amount" },
  // A body that is JSON but no object is the body's fault, named so: it was param "".
  { name: "a JSON array body", rawBody: "[]", status: 400, code: "parameter_invalid", param: "body" },
  // A `__proto__` key, or a `constructor` holding a `prototype`, is refused, as the parameter it is: it was
  // "the request body is not valid JSON" (Fastify's secure-json-parse threw), though it is.
  ...[
    ['"metadata":{"__proto__":"x"}', "metadata.__proto__"],
    ['"__proto__":{"amount":"2.00"}', "__proto__"],
    ['"constructor":{"prototype":{"amount":"2.00"}}', "constructor.prototype"],
    ['"metadata":{"\\u005f_proto__":"x"}', "metadata.__proto__"],
  ].map(([member, param]) => ({
    name: `a body with ${member}`,
    rawBody: `${JSON.stringify(valid()).slice(0, -1)},${member}}`,
    status: 400,
    code: "parameter_invalid",
    param,
  })),
  {
    name: "a body that is not JSON",
    rawBody: "amount=1",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    status: 415,
    code: "unsupported_media_type",
  },
  {
    // Fastify parses text/plain as a string by default: the body would be refused as a string, not as not JSON.
    name: "a JSON body sent as text/plain",
    rawBody: '{"amount": "1.00"}',
    headers: { "content-type": "text/plain" },
    status: 415,
    code: "unsupported_media_type",
  },
  {
    name: "a missing amount",
    body: () => ({ ...valid(), amount: undefined }),
    status: 400,
    code: "parameter_missing",
    param: "amount",
  },
  {
    name: "a missing destination",
    body: () => ({ ...valid(), destination: undefined }),
    status: 400,
    code: "parameter_missing",
    param: "destination",
  },
  {
    name: "a missing source account",
    body: () => ({ ...valid(), source: {} }),
    status: 400,
    code: "parameter_missing",
    param: "source.account",
  },
  {
    name: "an unknown parameter",
    body: () => ({ ...valid(), amont: "1" }),
    status: 400,
    code: "parameter_unknown",
    param: "amont",
  },
  {
    name: "an amount sent as a number",
    body: () => ({ ...valid(), amount: 1.5 }),
    status: 400,
    code: "parameter_invalid",
    param: "amount",
  },
  {
    name: "a zero amount",
    body: () => ({ ...valid(), amount: "0" }),
    status: 400,
    code: "amount_not_positive",
    param: "amount",
  },
  {
    name: "a zero amount with decimals",
    body: () => ({ ...valid(), amount: "0.000000" }),
    status: 400,
    code: "amount_not_positive",
    param: "amount",
  },
  // A negative amount is a decimal: refused as zero is, saying what is wrong with it (it was amount_not_a_decimal).
  ...["-1", "-0.5"].map((amount) => ({
    name: `a negative amount (${amount})`,
    body: () => ({ ...valid(), amount }),
    status: 400,
    code: "amount_not_positive",
    param: "amount",
  })),
  // Only the plain form is a decimal here: no sign but a minus, spaces, exponent, hex, digits other than ASCII's,
  // nor a point without digits on both sides.
  ...["+1", " 1", "1e3", "0x10", "\u0661", "1.", ".5"].map((amount) => ({
    name: `an amount not in the plain form (${JSON.stringify(amount)})`,
    body: () => ({ ...valid(), amount }),
    status: 400,
    code: "amount_not_a_decimal",
    param: "amount",
  })),
  {
    name: "a fraction of the smallest unit",
    body: () => ({ ...valid(), amount: "0.0000005" }),
    status: 400,
    code: "amount_too_precise",
    param: "amount",
  },
  {
    name: "more decimals than the asset's scale",
    body: () => ({ ...valid(), amount: "1.1234567" }),
    status: 400,
    code: "amount_too_precise",
    param: "amount",
  },
  {
    name: "an amount beyond what the ledger holds",
    body: () => ({ ...valid(), amount: "99999999999999999999" }),
    status: 400,
    code: "amount_too_large",
    param: "amount",
  },
  {
    name: "an unknown asset",
    body: () => ({ ...valid(), asset: "DOGE" }),
    status: 400,
    code: "unknown_asset",
    param: "asset",
  },
  {
    name: "an asset the account does not hold",
    body: () => ({ ...valid(), asset: "USD" }),
    status: 400,
    code: "asset_mismatch",
    param: "asset",
  },
  {
    name: "an unknown source account",
    body: () => ({ ...valid(), source: { account: "acct_nobody" } }),
    status: 400,
    code: "account_not_found",
    param: "source.account",
  },
  {
    name: "an unknown destination account",
    body: () => ({ ...valid(), destination: { type: "account", account: "acct_nobody" } }),
    status: 400,
    code: "destination_not_found",
    param: "destination.account",
  },
  {
    name: "a payment to the source itself",
    body: () => ({ ...valid(), destination: { type: "account", account: "acct_demo_customer" } }),
    status: 400,
    code: "same_account",
  },
  {
    name: "a malformed address",
    body: () => ({ ...valid(), destination: { type: "evm_address", address: "0x1234" } }),
    status: 400,
    code: "parameter_invalid",
    param: "destination.address",
  },
  {
    name: "a NUL character in a metadata value (PostgreSQL cannot store it)",
    body: () => ({ ...valid(), metadata: { note: `a${String.fromCharCode(0)}b` } }),
    status: 400,
    code: "parameter_invalid",
    param: "metadata.note",
  },
  {
    name: "a lone surrogate in a metadata value (PostgreSQL cannot store it)",
    body: () => ({ ...valid(), metadata: { note: `a${String.fromCharCode(0xd800)}b` } }),
    status: 400,
    code: "parameter_invalid",
    param: "metadata.note",
  },
  {
    name: "a lone surrogate in a metadata value, with an Idempotency-Key",
    body: () => ({ ...valid(), metadata: { note: `a${String.fromCharCode(0xdc00)}` } }),
    headers: { "idempotency-key": "bad-input-lone-surrogate" },
    status: 400,
    code: "parameter_invalid",
    param: "metadata.note",
  },
  {
    name: "a NUL character in a metadata key, named written out",
    body: () => ({ ...valid(), metadata: { [`or${String.fromCharCode(0)}der`]: "1" } }),
    headers: { "idempotency-key": "bad-input-nul-key" },
    status: 400,
    code: "parameter_invalid",
    param: "metadata.or\\u0000der",
  },
  {
    name: "a payee id of the wrong form",
    body: () => ({ ...valid(), destination: { type: "payee", payee: "acct_demo_merchant" } }),
    status: 400,
    code: "parameter_invalid",
    param: "destination.payee",
  },
  {
    name: "an address with a chain id that is not a positive integer",
    body: () => ({
      ...valid(),
      destination: { type: "evm_address", address: `0x${"11".repeat(20)}`, chain_id: 1.5 },
    }),
    status: 400,
    code: "parameter_invalid",
    param: "destination.chain_id",
  },
  {
    name: "an unknown destination type",
    body: () => ({ ...valid(), destination: { type: "iban", iban: "DE00" } }),
    status: 400,
    code: "parameter_invalid",
    param: "destination.type",
  },
  {
    name: "a destination no configured rail reaches",
    body: () => ({ ...valid(), destination: { type: "bolt11", invoice: signedInvoice } }),
    status: 422,
    code: "no_route",
  },
  {
    name: "an invoice as a QR code gives it (lightning: prefix), which no configured rail reaches either",
    body: () => ({
      ...valid(),
      destination: { type: "bolt11", invoice: `LIGHTNING:${signedInvoice.toUpperCase()}` },
    }),
    status: 422,
    code: "no_route",
  },
  {
    name: "an invoice with one character changed (its checksum fails)",
    body: () => ({
      ...valid(),
      destination: { type: "bolt11", invoice: oneCharacterChanged(signedInvoice) },
    }),
    status: 400,
    code: "parameter_invalid",
    param: "destination.invoice",
  },
  {
    name: "an invoice-shaped string that is none",
    body: () => ({ ...valid(), destination: { type: "bolt11", invoice: "lnbcrt10u1pjexampleinvoice" } }),
    status: 400,
    code: "parameter_invalid",
    param: "destination.invoice",
  },
  {
    name: "a well-formed invoice without a payment hash",
    body: () => ({ ...valid(), destination: { type: "bolt11", invoice: invoiceWithoutHash } }),
    status: 400,
    code: "parameter_invalid",
    param: "destination.invoice",
  },
  {
    // It reached the EVM rail, whose call encoding threw: a 500, and the payment left processing, its funds held.
    name: "an EVM address with a wrong EIP-55 checksum",
    body: () => ({
      ...valid(),
      destination: { type: "evm_address", address: "0xAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAa" },
    }),
    status: 400,
    code: "parameter_invalid",
    param: "destination.address",
  },
  ...[
    "a@example.com:99999",
    "a@example.123",
    "a@256.0.0.1",
    // Past 253 characters: the rail's reading of the address refused it, after the funds were held (402, not 400).
    `a@${`${"d".repeat(50)}.`.repeat(5)}com`,
  ].map((address) => ({
    // Each made no URL when the Lightning rail asked the address for an invoice: thrown out of execute, as above.
    name: `a Lightning Address whose domain and port make no URL (${address})`,
    body: () => ({ ...valid(), asset: "BTC", destination: { type: "lightning_address", address } }),
    status: 400,
    code: "parameter_invalid",
    param: "destination.address",
  })),
  { name: "a missing API key", body: valid, key: null, status: 401, code: "api_key_missing" },
  {
    name: "a wrong API key",
    body: valid,
    key: "sk_test_0000000000000000000000000000000000000000000",
    status: 401,
    code: "api_key_invalid",
  },
  { name: "a key of the wrong form", body: valid, key: "hunter2", status: 401, code: "api_key_invalid" },
  {
    name: "an Idempotency-Key too long",
    body: valid,
    headers: { "idempotency-key": "k".repeat(256) },
    status: 400,
    code: "idempotency_key_invalid",
  },
];

describe("POST /v1/payments refuses bad input", () => {
  it.each(cases)("$name → $status $code", async (c) => {
    const response = await gw.call("POST", "/v1/payments", {
      ...(c.rawBody === undefined ? { body: c.body?.() } : { rawBody: c.rawBody }),
      ...(c.key === undefined ? {} : { key: c.key }),
      ...(c.headers === undefined ? {} : { headers: c.headers }),
    });
    expect(response.status).toBe(c.status);
    expect(response.body.error.code).toBe(c.code);
    if (c.param !== undefined) expect(response.body.error.param).toBe(c.param);
    expect(typeof response.body.error.message).toBe("string");
  });

  it("an empty body sent with Content-Type: application/json is no body: refused as the same request without the header", async () => {
    // It was 400 invalid_json with the header, whatever the route's schema said of a missing body.
    const withHeader = await gw.call("POST", "/v1/payments", { rawBody: "" });
    const without = await gw.call("POST", "/v1/payments");
    expect(withHeader.status).toBe(400);
    expect(withHeader.body.error.code).not.toBe("invalid_json");
    expect([withHeader.status, withHeader.body]).toEqual([without.status, without.body]);
  });

  it("a query parameter the route does not take → 400 parameter_unknown, before the Idempotency-Key is taken", async () => {
    // It was ignored: the payment went through as if the client's `?confirm=false` had meant something.
    const key = "bad-input-query-parameter";
    const response = await gw.call("POST", "/v1/payments?confirm=false", {
      body: valid(),
      headers: { "idempotency-key": key },
    });
    expect([response.status, response.body.error?.code, response.body.error?.param]).toEqual([
      400,
      "parameter_unknown",
      "confirm",
    ]);
    const [record] = await gw.app.db.query<{ count: bigint }>(
      "SELECT count(*) AS count FROM idempotency_keys WHERE key = $1",
      [key],
    );
    expect(record?.count).toBe(0n);
  });

  it("a compressed body (Content-Encoding: gzip) → 415 unsupported_media_type naming the header, Accept-Encoding: identity", async () => {
    // It was 400 invalid_json: Node hands the parser the compressed bytes, which are no JSON, though the body is.
    const internal = {
      amount: "0.01",
      asset: "USDC",
      source: { account: "acct_demo_customer" },
      destination: { type: "account", account: "acct_demo_merchant" },
    };
    const refused = await gw.app.server.inject({
      method: "POST",
      url: "/v1/payments",
      headers: {
        authorization: `Bearer ${gw.key}`,
        "content-type": "application/json",
        "content-encoding": "gzip",
        "idempotency-key": "bad-input-coded-gzip",
      },
      payload: gzipSync(JSON.stringify(internal)),
    });
    expect([refused.statusCode, refused.json().error]).toEqual([
      415,
      { code: "unsupported_media_type", message: expect.any(String), param: "content-encoding" },
    ]);
    expect(refused.headers["accept-encoding"]).toBe("identity");
    expect(await gw.ledgerTransferCount()).toBe(transfersBefore);
    // Its Idempotency-Key was not taken: refused before any record was made.
    const [record] = await gw.app.db.query<{ count: bigint }>(
      "SELECT count(*) AS count FROM idempotency_keys WHERE key = 'bad-input-coded-gzip'",
    );
    expect(record?.count).toBe(0n);
  });

  it("wrote nothing to the ledger and sent nothing on chain for any of them", async () => {
    expect(await gw.ledgerTransferCount()).toBe(transfersBefore);
    expect(await gw.hotWalletNonce()).toBe(nonceBefore);
    expect(await gw.blockNumber()).toBe(blockBefore);
    const [payments] = await gw.app.db.query<{ count: bigint }>("SELECT count(*) AS count FROM payments");
    expect(payments?.count).toBe(0n);
  });
});

describe("other routes refuse bad input", () => {
  it("GET of an unknown payment is 404 payment_not_found", async () => {
    const response = await gw.call("GET", "/v1/payments/pay_01m7zfckv29pdrb3m0gz9e4j5g");
    expect(response.status).toBe(404);
    expect(response.body.error.code).toBe("payment_not_found");
  });
  it("GET of a malformed payment id is 400", async () => {
    const response = await gw.call("GET", "/v1/payments/not-an-id");
    expect(response.status).toBe(400);
    expect(response.body.error.code).toBe("parameter_invalid");
  });
  it("a QUERY request without a Content-Type is answered in the API's shape (it was a 500): no route takes QUERY, 405", async () => {
    const response = await gw.app.server.inject({
      method: "QUERY" as "GET",
      url: "/v1/payments/pay_x",
      headers: { authorization: `Bearer ${gw.key}` },
    });
    expect(response.statusCode).toBe(405);
    expect(response.json()).toEqual({
      error: { code: "method_not_allowed", message: expect.any(String) },
    });
  });
  it("an account's transactions until the year 9999 (past the ledger's int8 nanoseconds) is a page, not a 500", async () => {
    for (const query of ["created[lte]=253402300799", "created=236074842481", "created[gte]=236074842481"]) {
      const response = await gw.call("GET", `/v1/accounts/acct_demo_customer/transactions?${query}`);
      expect([query, response.status, response.body.object]).toEqual([query, 200, "list"]);
    }
  });
  it("no body on a route whose body's parameters are all optional is refused as missing, not taken as {}", async () => {
    // PATCH with {} acts (a payee's updated_at moves); with no body at all it was 400 parameter_invalid, param "".
    const payee = "pye_00000000000000000000000000";
    for (const rawBody of [undefined, "", "null"]) {
      const response = await gw.call(
        "PATCH",
        `/v1/payees/${payee}`,
        rawBody === undefined ? {} : { rawBody },
      );
      expect([rawBody, response.status, response.body.error.code, response.body.error.param]).toEqual([
        rawBody,
        400,
        "parameter_missing",
        "body",
      ]);
    }
    // {} reaches the route, which looks for the payee.
    const empty = await gw.call("PATCH", `/v1/payees/${payee}`, { body: {} });
    expect(empty.status).toBe(404);
  });

  it("an empty body sent with Content-Type: application/json is no body on a route whose body is optional", async () => {
    // Many SDKs send the header on every request; these were 400 invalid_json with it, 200 without.
    const made = async () => {
      const key = await gw.call("POST", "/v1/api_keys", { body: { name: "empty body" } });
      expect(key.status).toBe(201);
      return key.body.id as string;
    };
    const rolled = await gw.call("POST", `/v1/api_keys/${await made()}/roll`, { rawBody: "" });
    expect([rolled.status, rolled.body.object]).toEqual([200, "api_key"]);
    const revoked = await gw.call("POST", `/v1/api_keys/${await made()}/revoke`, { rawBody: "" });
    expect([revoked.status, typeof revoked.body.revoked_at]).toEqual([200, "string"]);
    const deleted = await gw.app.server.inject({
      method: "DELETE",
      url: `/v1/api_keys/${await made()}`,
      headers: { authorization: `Bearer ${gw.key}`, "content-type": "application/json" },
      payload: "",
    });
    expect(deleted.statusCode).toBe(200);
  });
  it("an unknown route is 404 route_not_found", async () => {
    const response = await gw.call("GET", "/v1/nothing");
    expect(response.status).toBe(404);
    expect(response.body.error.code).toBe("route_not_found");
  });
  it("a path asked with a method none of its routes takes is 405 method_not_allowed, saying which it takes", async () => {
    const key = gw.app.demo!.apiKey;
    const ask = (method: string, url: string, headers: Record<string, string> = {}) =>
      gw.app.server.inject({
        method: method as "GET",
        url,
        headers: { authorization: `Bearer ${key}`, ...headers },
      });
    for (const [method, url, allow] of [
      ["PUT", "/v1/payments", "GET, HEAD, POST"],
      ["DELETE", "/v1/payments/pay_01m85jadxnqevxey11kkth4j77", "GET, HEAD"],
      ["TRACE", "/v1/api_keys", "GET, HEAD, POST"],
      // Fastify asks a QUERY for its Content-Type first (415); a path with no QUERY route is not that.
      ["QUERY", "/v1/accounts/acct_demo_customer", "GET, HEAD"],
      ["PATCH", "/openapi.json", "GET, HEAD"],
      // The router's own reading of a path: decoded, an empty last parameter, a prefix's "/" route and its copy.
      ["PUT", "/v1/p%61yments", "GET, HEAD, POST"],
      ["PUT", "/v1/payments/", "GET, HEAD"],
      ["PUT", "/docs/", "GET, HEAD"],
      // A paywalled path's OPTIONS route (the preflight's) is not offered in Allow.
      ["POST", "/demo/paid/report", "GET, HEAD"],
    ] as const) {
      const response = await ask(method, url);
      expect([method, url, response.statusCode, response.json().error.code]).toEqual([
        method,
        url,
        405,
        "method_not_allowed",
      ]);
      expect(response.headers.allow).toBe(allow);
    }
    // A path no route takes under any method stays 404, and the API key is still asked first under /v1.
    expect((await ask("PUT", "/v1/nothing")).statusCode).toBe(404);
    expect((await ask("PUT", "/nothing/at/all")).json().error.code).toBe("route_not_found");
    const keyless = await gw.app.server.inject({ method: "PUT", url: "/v1/payments" });
    expect([keyless.statusCode, keyless.json().error.code]).toEqual([401, "api_key_missing"]);
  });
  it("health needs no key", async () => {
    const response = await gw.call("GET", "/healthz", { key: null });
    expect(response.status).toBe(200);
    expect(response.body.rails.evm.available).toBe(true);
  });
});

type Operation = {
  parameters?: { in: string; name: string; schema?: { pattern?: string } }[];
  requestBody?: { required?: boolean };
  responses?: Record<string, unknown>;
};

describe("every /v1 route, from the OpenAPI document", () => {
  const routes = async () => {
    const response = await gw.call("GET", "/openapi.json", { key: null });
    expect(response.status).toBe(200);
    const paths = response.body.paths as Record<string, Record<string, Operation>>;
    // The /v1 API's: a wallet's route (/pay/{rail}/authorizations) is authorized by an invoice's client secret.
    const v1 = Object.entries(paths).filter(([path]) => path.startsWith("/v1/"));
    const listed = v1.flatMap(([path, methods]) =>
      Object.entries(methods).map(([method, operation]) => ({
        method: method.toUpperCase() as "GET" | "POST" | "PATCH",
        path,
        operation,
      })),
    );
    expect(listed.length).toBeGreaterThanOrEqual(7);
    return listed;
  };
  const sample: Record<string, string> = {
    "/v1/payments/{id}": "pay_x",
    "/v1/invoices/{id}": "inv_x",
    "/v1/payees/{id}": "pye_01m7zfckv29pdrb3m0gz9e4j5g",
  };
  const urlOf = (path: string) => path.replace("{id}", sample[path] ?? "acct_demo_customer");

  it("refuses a missing key, and a well-formed key that is no tenant's, with 401", async () => {
    for (const { method, path } of await routes()) {
      const body = method === "GET" ? undefined : {};
      const missing = await gw.call(method, urlOf(path), { body, key: null });
      expect([method, path, missing.status, missing.body.error.code]).toEqual([
        method,
        path,
        401,
        "api_key_missing",
      ]);
      // A 401 names the credential it takes (RFC 9110 §11.6.1), and why the one sent was refused (RFC 6750 §3).
      expect(missing.headers["www-authenticate"]).toBe('Bearer realm="switchyard"');
      const wrong = await gw.call(method, urlOf(path), {
        body,
        key: "sk_test_0000000000000000000000000000000000000000000",
      });
      expect([method, path, wrong.status, wrong.body.error.code]).toEqual([
        method,
        path,
        401,
        "api_key_invalid",
      ]);
      expect(wrong.headers["www-authenticate"]).toBe('Bearer realm="switchyard", error="invalid_token"');
    }
  });

  it("takes the key as HTTP Basic's user name with no password, as Stripe does (curl -u sk_test_…:)", async () => {
    const basic = (userAndPassword: string) =>
      gw.call("GET", "/v1/accounts/acct_demo_customer", {
        key: null,
        headers: { authorization: `Basic ${Buffer.from(userAndPassword).toString("base64")}` },
      });
    const taken = await basic(`${gw.key}:`);
    expect([taken.status, taken.body.id]).toEqual([200, "acct_demo_customer"]);
    // The same answer as the Bearer credential gives: the same tenant, scope and account.
    expect(taken.body).toEqual((await gw.call("GET", "/v1/accounts/acct_demo_customer")).body);
    // A password beside the key, the key as the password, no colon, a key that is no tenant's: refused, 401.
    for (const refused of [
      `${gw.key}:secret`,
      `:${gw.key}`,
      gw.key,
      "sk_test_0000000000000000000000000000000000000000000:",
    ]) {
      const response = await basic(refused);
      expect([response.status, response.body.error.code]).toEqual([401, "api_key_invalid"]);
    }
    const notBase64 = await gw.call("GET", "/v1/accounts/acct_demo_customer", {
      key: null,
      headers: { authorization: "Basic ***" },
    });
    expect([notBase64.status, notBase64.body.error.code]).toEqual([401, "api_key_invalid"]);
  });

  it("refuses a query parameter a route does not take with 400 parameter_unknown, and documents it", async () => {
    const operatorKey = `op_${randomBytes(32).toString("base64url")}`;
    await ensureOperatorKey(gw.app.db, { configured: operatorKey });
    let checked = 0;
    for (const { method, path, operation } of await routes()) {
      const takesQuery = (operation.parameters ?? []).some((parameter) => parameter.in === "query");
      const mayHaveNoBody = operation.requestBody === undefined || operation.requestBody.required === false;
      // A list takes its own parameters (strict already); a route whose body is required refuses the body first.
      if (takesQuery || !mayHaveNoBody) continue;
      // Path parameters are checked before the query: each gets a well-formed id of its pattern's prefix.
      let url = path;
      for (const parameter of operation.parameters ?? []) {
        const pattern = parameter.schema?.pattern ?? "";
        const prefix = /^\^([a-z]+_)/.exec(pattern)?.[1] ?? "";
        url = url.replace(
          `{${parameter.name}}`,
          `${prefix}${"0".repeat(pattern.includes("{32}") ? 32 : 26)}`,
        );
      }
      const key = operatorPath(path) ? operatorKey : undefined;
      const answer = await gw.call(method, `${url}?not_a_parameter=1`, key === undefined ? {} : { key });
      expect([method, path, answer.status, answer.body.error?.code, answer.body.error?.param]).toEqual([
        method,
        path,
        400,
        "parameter_unknown",
        "not_a_parameter",
      ]);
      expect([method, path, Object.keys(operation.responses ?? {})]).toEqual([
        method,
        path,
        expect.arrayContaining(["400"]),
      ]);
      checked += 1;
    }
    // GET of a payment, an account, an invoice…, and POSTs without a body (a key's roll, a tenant's new key).
    expect(checked).toBeGreaterThanOrEqual(10);
  });

  it("answers hostile input with a 4xx, never a 500", async () => {
    const deep = `${"[".repeat(5_000)}${"]".repeat(5_000)}`;
    const bodies = [
      "null",
      "[]",
      '"text"',
      "1",
      "{}",
      deep,
      '{"__proto__": {"polluted": true}}',
      '{"constructor": {"prototype": {"polluted": true}}}',
      '{"amount": {}, "asset": [], "destination": null, "account": 1, "url": false}',
      '{"amount": "1", "asset": "USDC", "destination": {"type": "account"}, "account": "acct_x"}',
      `{"amount": "${"9".repeat(60)}", "asset": "USDC"}`,
      '{"amount": "1\\u0000", "asset": "USD\\u0000C"}',
    ];
    for (const { method, path } of await routes()) {
      // A body where the route takes one; else a hostile id, or hostile query parameters on a list.
      const urls = path.includes("{id}")
        ? ["%", "%E0%A4%A", "x".repeat(2_000), "pay_%00", "..%2F..%2Fhealthz"].map((id) =>
            path.replace("{id}", id),
          )
        : [
            "limit=%",
            "limit=0",
            "limit=101",
            "limit=1e400",
            "limit=x",
            "starting_after=%00",
            "nothing=1",
          ].map((query) => `${path}?${query}`);
      const answers =
        method === "GET"
          ? await Promise.all(urls.map((url) => gw.call(method, url)))
          : await Promise.all(bodies.map((rawBody) => gw.call(method, urlOf(path), { rawBody })));
      for (const answer of answers) {
        const { status, body } = answer;
        // "{}" is a whole request where every field has a default (POST /v1/api_keys): any other body is refused.
        // GET /v1/x402/supported answers the x402 spec's shape, which names no `object`, whatever the query says.
        const accepted =
          status < 300 &&
          (body?.object !== undefined || (path === "/v1/x402/supported" && Array.isArray(body?.kinds)));
        expect([method, path, (status >= 400 && status < 500) || accepted, body]).toEqual([
          method,
          path,
          true,
          body,
        ]);
        if (!accepted)
          expect([method, path, typeof body?.error?.code, body]).toEqual([method, path, "string", body]);
      }
    }
    expect(await gw.ledgerTransferCount()).toBe(transfersBefore);
  });
});

describe("an internal payment of an amount a balance cannot take", () => {
  // After every case above (which check that nothing was written): these write the payments they refuse.
  const internal = (amount: string) => ({
    amount,
    asset: "USDC",
    source: { account: "acct_demo_customer" },
    destination: { type: "account", account: "acct_demo_merchant" },
  });

  it("is insufficient_funds when the payer holds less, though the ledger names the payer's debits overflowing first", async () => {
    // The payer has paid before: its debits and the most an amount may be (2⁶³ − 1 minor units) pass what the ledger
    // holds, and the ledger says so before it says the payer is short (TigerBeetle's order). It was 402 rejected.
    expect((await gw.call("POST", "/v1/payments", { body: internal("0.01") })).status).toBe(201);
    const response = await gw.call("POST", "/v1/payments", { body: internal("9223372036854.775807") });
    expect([response.status, response.body.error?.code]).toEqual([402, "insufficient_funds"]);
    expect(response.body.error.payment).toMatchObject({
      status: "failed",
      failure: { code: "insufficient_funds" },
    });
  });
});
