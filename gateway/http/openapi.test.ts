// The OpenAPI document: 3.1, valid against the specification (swagger-parser), generated from the zod schemas,
// and every operation's errors written from what the document says of it — so a route added later gets them too.
import SwaggerParser from "@apidevtools/swagger-parser";
import Fastify, { type FastifyInstance } from "fastify";
import { type FastifyPluginAsyncZod, serializerCompiler, validatorCompiler } from "fastify-type-provider-zod";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { assets, decimalDigitsMax, isStorableText, parseAmount } from "../../core/index.ts";
import { buildBareServer } from "../../test/support/bare-server.ts";
import { tenantAccountAssets } from "../accounts/index.ts";
import { isPaywallResource, paywallResourceLengthMax, paywallResourcePattern } from "../paywall/index.ts";
import { apiVersions } from "../tenants/index.ts";
import { errorStatus } from "./errors.ts";
import {
  errorSchemaName,
  idPrefixOf,
  notFoundCodeByIdPrefix,
  notFoundCodeByPathParameter,
  openApiPlugin,
} from "./openapi.ts";
import { createPaywallBody, updatePaywallBody } from "./resources/paywalls.ts";
import {
  assetCodes,
  destinationSchema,
  documentedAlso,
  documentedHeaders,
  errorView,
  idParams,
  positiveDecimalPattern,
  withoutControlCharacters,
  withoutNul,
} from "./schemas.ts";

type Response = {
  description: string;
  content?: Record<string, { schema: unknown }>;
  "x-error-codes"?: string[];
};
type Parameter = { in: string; name: string; required?: boolean; schema?: { pattern?: string } };
type Operation = {
  security?: Record<string, string[]>[];
  requestBody?: unknown;
  parameters?: Parameter[];
  responses: Record<string, Response>;
  "x-error-codes"?: string[];
  "x-idempotency"?: string;
};
type Document = {
  openapi: string;
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, any> };
};

async function documentOf(server: FastifyInstance): Promise<Document> {
  const response = await server.inject({ method: "GET", url: "/openapi.json" });
  expect(response.statusCode).toBe(200);
  return response.json();
}

function operationsOf(document: Document): [string, string, Operation][] {
  return Object.entries(document.paths).flatMap(([path, methods]) =>
    Object.entries(methods).map(
      ([method, operation]) => [method, path, operation] as [string, string, Operation],
    ),
  );
}

const errorRef = { $ref: `#/components/schemas/${errorSchemaName}` };

/**
 * Calls `visit` with each property of every operation's JSON request body, its $refs resolved, named by where it is
 * (`post /v1/paywalls.price`); into a property's own properties unless `visit` said it was the one looked for.
 */
function walkRequestProperties(
  document: Document,
  visit: (where: string, name: string, property: any) => boolean,
): void {
  const resolve = (schema: any): any =>
    typeof schema?.$ref === "string"
      ? resolve(document.components.schemas[schema.$ref.replace("#/components/schemas/", "")])
      : schema;
  const walk = (schema: any, where: string): void => {
    const s = resolve(schema);
    if (s === null || typeof s !== "object") return;
    for (const [name, property] of Object.entries<any>(s.properties ?? {}))
      if (!visit(where, name, resolve(property))) walk(property, `${where}.${name}`);
    for (const key of ["anyOf", "oneOf", "allOf"]) for (const inner of s[key] ?? []) walk(inner, where);
  };
  for (const [method, path, operation] of operationsOf(document)) {
    const body = (operation.requestBody as any)?.content?.["application/json"]?.schema;
    if (body !== undefined) walk(body, `${method} ${path}`);
  }
}

describe("the gateway's OpenAPI document", () => {
  let server: FastifyInstance;
  let document: Document;
  beforeAll(async () => {
    server = await buildBareServer([]);
    document = await documentOf(server);
  });
  afterAll(async () => {
    await server?.close();
  });

  it("is OpenAPI 3.1 and valid against the specification's schema", async () => {
    expect(document.openapi).toBe("3.1.0");
    // swagger-parser dereferences in place: it is given a copy.
    const validated = await SwaggerParser.validate(structuredClone(document) as never);
    expect((validated as { openapi: string }).openapi).toBe("3.1.0");
  });

  it("says JSON Schema 2020-12's way that a field may be null (no 3.0 `nullable`)", () => {
    const text = JSON.stringify(document);
    expect(text).not.toContain('"nullable"');
    const payment = (
      document.paths["/v1/payments/{id}"]!.get!.responses["200"]!.content!["application/json"]!.schema as any
    ).properties;
    expect(payment.rail).toEqual({ type: ["string", "null"] });
  });

  it("writes every pattern so that a tool outside ECMAScript's Unicode mode reads it the same (no \\p{…} classes)", () => {
    // Python's re (schemathesis, the fuzzers built on it), and ECMAScript without the u flag, cannot read a Unicode
    // property escape: the first refuses the pattern, the second reads \p{Cc} as the letters p{Cc}.
    const patterns: string[] = [];
    const walk = (value: unknown): void => {
      if (Array.isArray(value)) value.forEach(walk);
      else if (value !== null && typeof value === "object")
        for (const [key, inner] of Object.entries(value)) {
          if (key === "pattern" && typeof inner === "string") patterns.push(inner);
          else walk(inner);
        }
    };
    walk(document);
    expect(patterns.length).toBeGreaterThan(0);
    expect(patterns.filter((pattern) => /\\[pP]\{/.test(pattern))).toEqual([]);
    for (const pattern of patterns) expect(() => new RegExp(pattern)).not.toThrow();
    // The documented pattern for text without control characters says what the server checks.
    expect(patterns).toContain(withoutControlCharacters.source);
  });

  it("gives the decimal's shape wherever a request names an amount", () => {
    const found: string[] = [];
    walkRequestProperties(document, (where, name, property) => {
      if (name !== "amount") return false;
      found.push(where);
      expect([where, property.type, property.pattern, property.maxLength]).toEqual([
        where,
        "string",
        positiveDecimalPattern,
        decimalDigitsMax,
      ]);
      return true;
    });
    expect(found.sort()).toEqual([
      "post /v1/invoices",
      "post /v1/payments",
      "post /v1/quotes",
      "post /v1/rails/{rail}/capital",
      "post /v1/refunds",
    ]);
    // The document and the parser agree on what is a decimal more than zero (too many decimals for the asset, or
    // too large, are refusals of their own).
    const documented = new RegExp(positiveDecimalPattern);
    const samples = [
      "1.50",
      "0.000001",
      "10",
      "0.10",
      "0",
      "0.0",
      "0.000",
      "00",
      "",
      "1.",
      ".5",
      "01",
      "-1",
      "1e3",
      " 1",
    ];
    for (const text of [...samples, "１"]) {
      const parsed = parseAmount(text, assets.USDC);
      const refused = !parsed.ok && ["amount_not_a_decimal", "amount_not_positive"].includes(parsed.error);
      expect([text, documented.test(text)]).toEqual([text, !refused]);
    }
    expect(documentedAlso.get(createPaywallBody.shape.price.shape.amount)?.pattern).toBe(
      positiveDecimalPattern,
    );
  });

  it("says text the server refuses to store (a NUL) is not sent, and keeps a text's own pattern", () => {
    const body = (path: string) =>
      (document.paths[path]!.post!.requestBody as any).content["application/json"].schema.properties;
    const metadata = body("/v1/payments").metadata;
    expect(metadata.propertyNames.pattern).toBe(withoutNul.source);
    expect(metadata.additionalProperties.pattern).toBe(withoutNul.source);
    expect(body("/v1/invoices").description.pattern).toBe(withoutNul.source);
    // A text with a pattern of its own keeps it (a URL's, a name's without control characters).
    expect(body("/v1/webhook_endpoints").url.pattern).toBe("^https?:\\/\\/[^\\s]+$");
    expect(body("/v1/payees").name.pattern).toBe(withoutControlCharacters.source);
    const documented = new RegExp(withoutNul.source);
    for (const text of ["", "plain", "é€😀", "a\u0000b", "\u0000"])
      expect([text, documented.test(text)]).toEqual([text, !text.includes("\u0000")]);
    expect(isStorableText("a\u0000b")).toBe(false);
  });

  it("states the paywall resource's shape, and the pattern agrees with the service's check", () => {
    // The bare server has no paywall service, so no paywall routes: what their schema gives the document is read
    // where openapi.ts reads it (the amount's and the text's patterns above show it reaching the document).
    const resource = createPaywallBody.shape.resource;
    expect(updatePaywallBody.shape.resource.unwrap()).toBe(resource);
    expect(documentedAlso.get(resource)).toEqual({ pattern: paywallResourcePattern.source });
    expect(resource.maxLength).toBe(paywallResourceLengthMax);
    const documented = new RegExp(paywallResourcePattern.source);
    const samples: [string, boolean][] = [
      ["/", true],
      ["/paid/*", true],
      ["/reports/2026-q3.pdf", true],
      ["/a%20b/~x@y:z", true],
      ["*", false],
      ["", false],
      ["paid", false],
      ["/a*b", false],
      ["/**", false],
      ["/a?b=1", false],
      ["/a#b", false],
      ["/a b", false],
      ["/a\n", false],
      ["/é", false],
    ];
    for (const [text, path] of samples) {
      expect([text, isPaywallResource(text)]).toEqual([text, path]);
      expect([text, documented.test(text)]).toEqual([text, path]);
    }
  });

  it("links where an id is answered to the operations that id opens, each link to an operation of the document", () => {
    const links = (path: string, method: "get" | "post", status: string) =>
      (document.paths[path]![method]!.responses[status] as { links?: Record<string, any> }).links ?? {};
    expect(links("/v1/payments", "post", "201").get_id).toEqual({
      operationRef: "#/paths/~1v1~1payments~1{id}/get",
      parameters: { id: "$response.body#/id" },
    });
    // A payment still processing has its id too; a list's first item is not linked (an empty page has none).
    expect(links("/v1/payments", "post", "202").get_id).toEqual(links("/v1/payments", "post", "201").get_id);
    expect(links("/v1/payments", "get", "200")).toEqual({});
    // An operation that needs another id as well (a delivery's) is not linked: the answer does not give it.
    const endpoint = Object.values(links("/v1/webhook_endpoints", "post", "201")).map((l) => l.operationRef);
    expect(endpoint).toContain("#/paths/~1v1~1webhook_endpoints~1{id}~1rotate_secret/post");
    expect(endpoint.some((ref: string) => ref.includes("delivery_id"))).toBe(false);
    let linked = 0;
    for (const [, , operation] of operationsOf(document))
      for (const response of Object.values(operation.responses))
        for (const link of Object.values((response as { links?: Record<string, any> }).links ?? {})) {
          const [, path, method] = /^#\/paths\/(.+)\/([a-z]+)$/.exec(link.operationRef)!;
          const target = document.paths[path!.replaceAll("~1", "/").replaceAll("~0", "~")]?.[method!];
          expect([link.operationRef, target !== undefined]).toEqual([link.operationRef, true]);
          linked += 1;
        }
    expect(linked).toBeGreaterThan(10);
  });

  it("says a key's scopes are each given once (uniqueItems), where a key is made", () => {
    const bodyOf = (path: string) =>
      (document.paths[path]!.post!.requestBody as any).content["application/json"].schema;
    for (const path of ["/v1/api_keys", "/v1/tenants/{id}/api_keys"]) {
      const body = bodyOf(path);
      const object = (body.anyOf ?? [body]).find((option: any) => option.type === "object");
      expect([path, object.properties.scopes.uniqueItems]).toEqual([path, true]);
    }
  });

  it("says a payee's methods are each given once (uniqueItems), where a payee is made or changed", () => {
    const body = (document.paths["/v1/payees"]!.post!.requestBody as any).content["application/json"].schema;
    expect(body.properties.methods.uniqueItems).toBe(true);
    const update = (document.paths["/v1/payees/{id}"]!.patch!.requestBody as any).content["application/json"]
      .schema;
    expect(update.properties.methods.uniqueItems).toBe(true);
  });

  it("says a refund names exactly one of its invoice and its payment (oneOf), as the route checks", () => {
    // The route refuses both (parameter_invalid) and neither (parameter_missing); the document said neither, so
    // a fuzzer's schema-valid body with both was refused.
    const body = (document.paths["/v1/refunds"]!.post!.requestBody as any).content["application/json"].schema;
    expect(body.oneOf).toEqual([{ required: ["invoice"] }, { required: ["payment"] }]);
    expect(Object.keys(body.properties)).toEqual(expect.arrayContaining(["invoice", "payment"]));
  });

  it("lists the API versions a key may be pinned to, where a key is made", () => {
    // The route refuses another (api_version_invalid); the document gave any text of 32 characters, so a fuzzer's
    // was a schema-valid request refused.
    const body = (document.paths["/v1/api_keys"]!.post!.requestBody as any).content["application/json"]
      .schema;
    const object = (body.anyOf ?? [body]).find((option: any) => option.type === "object");
    expect(object.properties.api_version.enum).toEqual(apiVersions.map((entry) => entry.version));
  });

  it("gives a Lightning Address's shape as the route checks it: its length, both cases, a port up to 65535", () => {
    // The document said a domain of any length, lower case only, and a port up to 99999, where the route refused a
    // domain past 253 characters and a port past 65535 (a fuzzer's schema-valid addresses were refused).
    const addresses: { type: string; address: { pattern: string; maxLength: number } }[] = [];
    const walk = (value: unknown): void => {
      if (Array.isArray(value)) value.forEach(walk);
      else if (value !== null && typeof value === "object") {
        const properties = (value as any).properties;
        if (properties?.type?.enum?.[0] === "lightning_address") addresses.push(properties);
        Object.values(value).forEach(walk);
      }
    };
    for (const [, , operation] of operationsOf(document))
      walk((operation.requestBody as any)?.content?.["application/json"]?.schema);
    // A payment's and a quote's destination, a payee's method where it is made and where it is changed.
    expect(addresses).toHaveLength(4);
    const [first] = addresses;
    for (const { address } of addresses) expect(address).toEqual(first!.address);
    const pattern = new RegExp(first!.address.pattern);
    const documented = (text: string) => pattern.test(text) && text.length <= first!.address.maxLength;
    const checked = (text: string) =>
      destinationSchema.safeParse({ type: "lightning_address", address: text }).success;
    const label = (length: number) => "d".repeat(length);
    // A domain of 252 characters, the longest an address of 254 holds.
    const longest = `${label(63)}.${label(63)}.${label(63)}.${label(60)}`;
    const samples: [string, boolean][] = [
      ["alice@example.com", true],
      ["Alice@Pay.Example.COM", true],
      [`${"a".repeat(64)}@example.com`, true],
      [`${"a".repeat(65)}@example.com`, false],
      ["a@localhost:8080", true],
      ["a@example.com:65535", true],
      ["a@example.com:00080", true],
      ["a@example.com:65536", false],
      ["a@example.com:99999", false],
      ["a@1.2.3.4", true],
      [`a@${longest}`, true],
      [`ab@${longest}`, false],
      [`a@${longest}.dd`, false],
      ["a@-example.com", false],
      ["a@", false],
      ["@example.com", false],
    ];
    for (const [text, valid] of samples) {
      expect([text, checked(text)]).toEqual([text, valid]);
      expect([text, documented(text)]).toEqual([text, valid]);
    }
    // The one refusal the document leaves unsaid: a last label of digits that is no IPv4 address.
    expect([documented("a@example.123"), checked("a@example.123")]).toEqual([true, false]);
  });

  it("lists the asset codes wherever a request names an asset", () => {
    // A request's `asset` is parsed as a code-shaped text and refused by its route when it names no asset
    // (unknown_asset): the document says which codes there are, so a generated client or a fuzzer need not guess.
    const found: string[] = [];
    walkRequestProperties(document, (where, name, property) => {
      if (name !== "asset") return false;
      found.push(where);
      // A tenant's account holds USDC, USD or BTC, and so an invoice (made for one) names one of those; a payment,
      // quote or price may name any asset.
      const codes = ["post /v1/accounts", "post /v1/invoices"].includes(where)
        ? tenantAccountAssets.map((a) => a.code)
        : assetCodes;
      expect([where, property.enum]).toEqual([where, [...codes]]);
      return true;
    });
    expect(found.sort()).toEqual([
      "post /v1/accounts",
      "post /v1/invoices",
      "post /v1/payments",
      "post /v1/quotes",
      "post /v1/rails/{rail}/capital",
    ]);
    // The paywall routes (absent here: the bare server has no paywall service) name one in their price.
    expect(documentedAlso.get(createPaywallBody.shape.price.shape.asset)).toEqual({ enum: [...assetCodes] });
  });

  it("offers no Idempotency-Key on the routes that do not read one: those answering a secret, the operator's", () => {
    for (const path of [
      "/v1/api_keys",
      "/v1/api_keys/{id}/roll",
      // The operator's: the idempotency plugin keys by tenant, and the operator is none.
      "/v1/tenants",
      "/v1/tenants/{id}/api_keys",
      "/v1/tenants/{id}/suspend",
      "/v1/tenants/{id}/reactivate",
      "/v1/rails/{rail}/capital",
    ]) {
      const post = document.paths[path]!.post!;
      expect([path, post["x-idempotency"]]).toEqual([path, "none"]);
      const headers = (post.parameters ?? []).filter((p) => p.in === "header");
      expect([path, headers]).toEqual([path, []]);
    }
  });

  it("files an object not found under 400 where the request's body names it, under 404 where its path does", () => {
    const codesAt = (path: string, method: string, status: string): string[] =>
      document.paths[path]?.[method]?.responses[status]?.["x-error-codes"] ?? [];
    expect(codesAt("/v1/payments", "post", "400")).toEqual(
      expect.arrayContaining([
        "account_not_found",
        "destination_not_found",
        "payee_not_found",
        "quote_not_found",
      ]),
    );
    expect(codesAt("/v1/payments", "post", "404")).toEqual([]);
    expect(codesAt("/v1/payees/{id}", "patch", "404")).toEqual(["payee_not_found"]);
    expect(codesAt("/v1/payees/{id}", "patch", "400")).toContain("account_not_found");
    expect(codesAt("/v1/refunds", "post", "400")).toEqual(
      expect.arrayContaining(["invoice_not_found", "payment_not_found"]),
    );
    expect(codesAt("/v1/invoices/{id}/authorizations", "post", "404")).toEqual(["invoice_not_found"]);
    // A path parameter that is no prefixed id: named by notFoundCodeByPathParameter.
    expect(codesAt("/v1/rails/{rail}/capital", "post", "404")).toEqual(["rail_not_found"]);
    // A rail an invoice's body names that is not there: 400, as an account (invoices.ts).
    expect(codesAt("/v1/invoices", "post", "400")).toEqual(
      expect.arrayContaining(["account_not_found", "rail_not_found"]),
    );
    // A wallet's route answers 404 for a client secret no invoice has, as the rail's route does (rail-routes.ts).
    expect(codesAt("/pay/{rail}/authorizations", "post", "404")).toEqual([
      "invoice_not_found",
      "rail_not_found",
    ]);
  });

  it("has one shared error schema whose code is one of the stable codes", () => {
    const { schemas } = document.components;
    expect(schemas[errorSchemaName].properties.error.properties.code).toEqual({
      $ref: "#/components/schemas/ErrorCode",
    });
    expect(schemas.ErrorCode.enum).toEqual(Object.keys(errorStatus).sort());
  });

  it("lists every operation's errors, each under its status, with the shared schema", () => {
    const operations = operationsOf(document);
    expect(operations.length).toBeGreaterThan(5);
    for (const [method, path, operation] of operations) {
      const where = `${method.toUpperCase()} ${path}`;
      const statuses = Object.keys(operation.responses);
      const takesInput =
        operation.requestBody !== undefined ||
        (operation.parameters ?? []).some((p) => p.in === "path" || p.in === "query");
      // Keyed: every operation but a wallet's (/pay/{rail}/authorizations, which a client secret authorizes).
      const keyed = (operation.security ?? []).length > 0;
      expect([where, keyed]).toEqual([where, !path.startsWith("/pay/")]);
      const required = ["500", ...(keyed ? ["401", "503"] : []), ...(takesInput ? ["400"] : [])];
      if (path.includes("{")) required.push("404");
      if (keyed && method === "post" && operation["x-idempotency"] !== "none") required.push("409");
      if (operation.requestBody !== undefined) required.push("413", "415");
      expect([where, statuses]).toEqual([where, expect.arrayContaining(required)]);
      // With the objects the operation says it answers 404 for, though its path does not name them (openapi.ts).
      const onPath = new Set<string>((operation as { "x-not-found-codes"?: string[] })["x-not-found-codes"]);
      for (const parameter of operation.parameters ?? []) {
        const prefix = parameter.in === "path" ? idPrefixOf(parameter) : null;
        const code =
          parameter.in === "path" && Object.hasOwn(notFoundCodeByPathParameter, parameter.name)
            ? notFoundCodeByPathParameter[parameter.name]
            : prefix === null
              ? undefined
              : notFoundCodeByIdPrefix[prefix as keyof typeof notFoundCodeByIdPrefix];
        if (code !== undefined) onPath.add(code);
      }
      const all = new Set<string>();
      for (const [status, response] of Object.entries(operation.responses)) {
        if (!/^[45]/.test(status)) continue;
        expect([where, status, response.content?.["application/json"]?.schema]).toEqual([
          where,
          status,
          errorRef,
        ]);
        for (const code of response["x-error-codes"] ?? []) {
          // An object not found is 404 for what the path names, 400 for what a parameter names (errors.ts statusOf).
          const own = errorStatus[code as keyof typeof errorStatus];
          const expected = own === 404 && !onPath.has(code) ? 400 : own;
          expect([where, code, String(expected)]).toEqual([where, code, status]);
          all.add(code);
        }
      }
      expect(operation["x-error-codes"]).toEqual([...all].sort());
      expect(operation["x-error-codes"]).toEqual(
        expect.arrayContaining([...(keyed ? ["api_key_missing"] : []), "internal_error"]),
      );
      // A route that answers a secret takes no Idempotency-Key (api-keys.ts), and the document offers none.
      if (method === "post" && operation["x-idempotency"] === "none") {
        expect([where, operation.parameters ?? []]).not.toEqual([
          where,
          expect.arrayContaining([expect.objectContaining({ in: "header", name: "Idempotency-Key" })]),
        ]);
        expect(operation["x-error-codes"]).not.toContain("idempotency_key_invalid");
      } else if (keyed && method === "post") {
        // Required exactly where the route refuses a request without one (a payment, a refund: they move money).
        const keyRequired = ["/v1/payments", "/v1/refunds"].includes(path);
        expect([where, operation.parameters]).toEqual([
          where,
          expect.arrayContaining([
            expect.objectContaining({ in: "header", name: "Idempotency-Key", required: keyRequired }),
          ]),
        ]);
        if (keyRequired) expect(operation["x-error-codes"]).toContain("idempotency_key_missing");
        expect(operation["x-error-codes"]).toEqual(
          expect.arrayContaining(["idempotency_key_reused", "idempotency_key_in_use"]),
        );
        if (operation.requestBody !== undefined) expect(operation["x-error-codes"]).toContain("invalid_json");
      }
    }
  });

  it("names the not-found code of the object a path's id names", () => {
    const codes = (path: string, method = "get") =>
      document.paths[path]![method]!.responses["404"]!["x-error-codes"];
    expect(codes("/v1/payments/{id}")).toEqual(["payment_not_found"]);
    expect(codes("/v1/payees/{id}", "patch")).toEqual(["payee_not_found"]);
    expect(codes("/v1/accounts/{id}/balance")).toEqual(["account_not_found"]);
  });
});

describe("a route added later", () => {
  let server: FastifyInstance;
  let document: Document;
  beforeAll(async () => {
    server = Fastify({ logger: false });
    server.setValidatorCompiler(validatorCompiler);
    server.setSerializerCompiler(serializerCompiler);
    await server.register(openApiPlugin, { version: "0.0.0" });
    const routes: FastifyPluginAsyncZod = async (app) => {
      app.addHook("onRoute", (route) => {
        if (route.schema !== undefined) route.schema.security = [{ apiKey: [] }];
      });
      app.post(
        "/v1/things/:id/poke",
        {
          schema: {
            params: idParams("pay"),
            body: z.strictObject({ how: z.string() }),
            response: { 200: z.object({ ok: z.boolean() }), "4xx": errorView },
            "x-error-codes": ["insufficient_funds", "quote_used", "not_a_code"],
          } as never,
        },
        async () => ({ ok: true }),
      );
      app.post(
        "/v1/things",
        {
          schema: {
            body: z.strictObject({ how: z.string() }),
            response: { 201: z.object({ ok: z.boolean() }) },
          },
          config: { errorCodes: ["rail_unavailable", "no_route"] },
        },
        async () => ({ ok: true }),
      );
      app.post(
        "/v1/things/settle",
        {
          schema: {
            body: z.strictObject({ how: z.string() }),
            response: { 200: z.object({ ok: z.boolean() }) },
            ...documentedHeaders({
              name: "thing-account",
              required: true,
              description: "the account",
              schema: { type: "string", minLength: 1, maxLength: 64 },
            }),
          },
        },
        async () => ({ ok: true }),
      );
      app.post(
        "/v1/things/:id/nudge",
        {
          schema: {
            params: idParams("pay"),
            body: z.strictObject({ how: z.string().optional() }).nullish(),
            response: { 200: z.object({ ok: z.boolean() }) },
          },
        },
        async () => ({ ok: true }),
      );
      app.get(
        "/v1/widgets/:id",
        { schema: { params: z.strictObject({ id: z.string().regex(/^wid_[a-z0-9]+$/) }) } },
        async () => ({}),
      );
    };
    await server.register(routes);
    document = await documentOf(server);
  });
  afterAll(async () => {
    await server?.close();
  });

  it("gets its errors without a line of its own, its declared refusals filed under their status", () => {
    const poke = document.paths["/v1/things/{id}/poke"]!.post!;
    expect(poke.responses["404"]!["x-error-codes"]).toEqual(["payment_not_found"]);
    expect(poke.responses["402"]!["x-error-codes"]).toEqual(["insufficient_funds"]);
    expect(poke.responses["409"]!["x-error-codes"]).toEqual([
      "idempotency_key_in_use",
      "idempotency_key_reused",
      "quote_used",
    ]);
    expect(poke["x-error-codes"]).not.toContain("not_a_code");
    expect(poke.responses["401"]!["x-error-codes"]).toEqual(
      expect.arrayContaining(["api_key_invalid", "api_key_missing"]),
    );
  });

  it("names the refusals its config declares, typed as stable codes", () => {
    const things = document.paths["/v1/things"]!.post!;
    expect(things.responses["402"]!["x-error-codes"]).toEqual(["rail_unavailable"]);
    expect(things.responses["422"]!["x-error-codes"]).toEqual(["no_route"]);
  });

  it("lists a header it reads itself among its parameters, required as it says", () => {
    const settle = document.paths["/v1/things/settle"]!.post!;
    expect(settle.parameters).toContainEqual({
      in: "header",
      name: "thing-account",
      required: true,
      description: "the account",
      schema: { type: "string", minLength: 1, maxLength: 64 },
    });
    expect(settle).not.toHaveProperty("x-headers");
  });

  it("says its body is required only when the route refuses a request without one", () => {
    const required = (path: string) =>
      (document.paths[path]!.post!.requestBody as { required?: boolean }).required;
    expect(required("/v1/things")).toBe(true);
    expect(required("/v1/things/{id}/nudge")).toBe(false);
    expect(document.paths["/v1/things/{id}/nudge"]!.post).not.toHaveProperty("x-body-optional");
  });

  it("whose id is of a kind not known answers any not-found code but the route's", () => {
    const codes = document.paths["/v1/widgets/{id}"]!.get!.responses["404"]!["x-error-codes"]!;
    expect(codes).toEqual(expect.arrayContaining(["payment_not_found", "payee_not_found"]));
    expect(codes).not.toContain("route_not_found");
  });
});
