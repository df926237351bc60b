// No request body, query or path gets a 500. For every operation in the served OpenAPI document (so routes added
// later are fuzzed without a line here), fast-check builds requests from the operation's own schemas — values that
// pass them, so the handlers run — then mutates them: wrong types, huge and negative numbers, amounts with many
// decimals, deep nesting, NUL and lone surrogates, unknown fields, arrays for objects, huge strings, empty and
// non-JSON bodies, hostile query strings and ids; with no Idempotency-Key, a fresh one, or one of a few reused.
// Every answer must be below 500; when an error, in the API's shape with a code of the closed set and the status
// that code has; when a success, free of text the database cannot store as sent. Seeded and bounded (FUZZ_SEED,
// FUZZ_RUNS per operation); on PGlite, or on PostgreSQL with FUZZ_DATABASE=postgres; with the card rail on
// stripe-mock unless FUZZ_STRIPE=0. A failure lists the requests.
import { randomBytes } from "node:crypto";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ApiErrorCode, errorStatus, statusOf } from "../../gateway/http/errors.ts";
import { findUnstorableText } from "../../gateway/http/text-safety.ts";
import { ensureOperatorKey } from "../../gateway/tenants/index.ts";
import {
  ensureStripeMock,
  type StripeMockServer,
  startStripeMock,
  stripeMockBuildTimeoutMs,
} from "../../scripts/stripe-mock.ts";
import { ledgerInvariantProblems } from "../support/ledger-invariants.ts";
import { operatorPath, startTestGateway, type TestGateway } from "./support.ts";

const operatorKey = `op_${randomBytes(32).toString("base64url")}`;
const seed = Number(process.env.FUZZ_SEED ?? 20261123);
const runsPerOperation = Number(process.env.FUZZ_RUNS ?? 30);
/** A bound on the whole pass that grows with FUZZ_RUNS (`npm run fuzz` runs a long one). */
const fuzzTimeoutMs = Math.max(180_000, runsPerOperation * 6_000);
/** Longer than this for one answer is a failure: a request that holds the process (a quadratic walk, …). */
const answerMsMax = 5_000;
/** A run stops collecting after this many failures: enough to show them, without drowning the report. */
const failuresShownMax = 20;

type JsonSchema = {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  enum?: unknown[];
  const?: unknown;
  pattern?: string;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  minLength?: number;
  maxLength?: number;
  maxItems?: number;
  oneOf?: JsonSchema[];
  anyOf?: JsonSchema[];
  allOf?: JsonSchema[];
  $ref?: string;
};

type Parameter = { name: string; in: "query" | "path" | "header"; schema: JsonSchema; required?: boolean };
type Method = "GET" | "POST" | "PATCH" | "DELETE";
type Operation = { method: Method; path: string; parameters: Parameter[]; body: JsonSchema | null };
type Request = {
  url: string;
  body:
    | { kind: "none" }
    | { kind: "json"; value: unknown }
    | { kind: "raw"; text: string; type: string | null };
  idempotencyKey: string | null;
};

const nul = String.fromCharCode(0);
const loneHigh = String.fromCharCode(0xd800);
const loneLow = String.fromCharCode(0xdc00);

/** Ids the demo tenant has (its accounts, read at the start), offered where a pattern asks for that kind of id. */
const knownIds: Record<string, string[]> = {};

const hostileStrings = fc.constantFrom(
  "",
  " ",
  nul,
  `a${nul}b`,
  `a${loneHigh}`,
  `${loneLow}b`,
  "0",
  "-1",
  "-0",
  "0.000000",
  "1e3",
  "0x10",
  "NaN",
  "Infinity",
  "1.",
  ".5",
  "+1",
  " 1",
  "1_000",
  "１２",
  "1.0000000000000000000000001",
  "0.0000000000000000000000001",
  "9".repeat(64),
  "9".repeat(65),
  `${"9".repeat(40)}.${"9".repeat(20)}`,
  "x".repeat(20_000),
  "__proto__",
  "constructor",
  "acct_demo_customer",
  "pay_x",
  "../../healthz",
  "'; DROP TABLE payments; --",
);

/** Something of the wrong kind, or the right kind out of every bound. */
const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  hostileStrings,
  fc.string({ maxLength: 40, unit: "binary" }),
  fc.constantFrom(0, -0, -1, 1.5, 1e308, -1e308, 2 ** 53, 2 ** 53 + 2, 2 ** 64, Number.MIN_VALUE),
  fc.double(),
  fc.integer(),
  fc.boolean(),
  fc.constant(null),
  fc.constant([]),
  fc.constant({}),
  fc.jsonValue({ maxDepth: 3 }),
  fc.integer({ min: 100, max: 2_000 }).map(deeplyNested),
);

function deeplyNested(depth: number): unknown {
  let value: unknown = "bottom";
  for (let level = 0; level < depth; level += 1) value = level % 2 === 0 ? [value] : { a: value };
  return value;
}

function resolve(schema: JsonSchema, components: Record<string, JsonSchema>): JsonSchema {
  let current = schema;
  for (let hops = 0; current.$ref !== undefined && hops < 16; hops += 1)
    current = components[current.$ref.split("/").pop()!] ?? {};
  return current;
}

/** Values that mean something for a free-form string of this name, so that requests get past the first check. */
const meaningful: Record<string, fc.Arbitrary<string>> = {
  amount: fc.constantFrom(
    "1.00",
    "0.01",
    "25.5",
    "0.000001",
    "0.00000001",
    "1000000.00",
    "999999.99",
    "1000000000",
  ),
  asset: fc.constantFrom("USDC", "USD", "BTC"),
  url: fc.constantFrom("https://example.com/hook", "http://127.0.0.1:1/x"),
  name: fc.constantFrom("Alice", "a"),
  description: fc.constantFrom("", "an invoice"),
};

/** A value its schema accepts (or nearly: patterns and bounds are followed, cross-field rules are not). */
function fitting(
  schema: JsonSchema,
  components: Record<string, JsonSchema>,
  depth = 0,
  name?: string,
): fc.Arbitrary<unknown> {
  const s = resolve(schema, components);
  if (depth > 8) return fc.constant(null);
  if (s.const !== undefined) return fc.constant(s.const);
  if (s.enum !== undefined) return fc.constantFrom(...s.enum);
  const alternatives = s.oneOf ?? s.anyOf;
  if (alternatives !== undefined && alternatives.length > 0)
    return fc.oneof(...alternatives.map((alternative) => fitting(alternative, components, depth + 1)));
  if (s.allOf !== undefined && s.allOf.length > 0) return fitting(s.allOf[0]!, components, depth + 1);
  const type = Array.isArray(s.type) ? s.type.find((t) => t !== "null") : s.type;
  switch (type) {
    case "object": {
      const properties = s.properties ?? {};
      const required = new Set(s.required ?? []);
      const record: Record<string, fc.Arbitrary<unknown>> = {};
      for (const [key, property] of Object.entries(properties))
        record[key] = fitting(property, components, depth + 1, key);
      const requiredKeys = Object.keys(properties).filter((name) => required.has(name));
      return fc.record(record, { requiredKeys });
    }
    case "array":
      return fc.array(fitting(s.items ?? {}, components, depth + 1), {
        maxLength: Math.min(s.maxItems ?? 3, 3),
      });
    case "integer":
    case "number": {
      const min = s.exclusiveMinimum !== undefined ? s.exclusiveMinimum + 1 : (s.minimum ?? 0);
      const max = Math.min(s.maximum ?? 1_000_000, Number.MAX_SAFE_INTEGER);
      return fc.integer({ min: Math.ceil(min), max: Math.max(Math.ceil(min), Math.floor(max)) });
    }
    case "boolean":
      return fc.boolean();
    case "string": {
      const meant = name === undefined ? undefined : meaningful[name];
      let base: fc.Arbitrary<string> = fc.string({ maxLength: Math.min(s.maxLength ?? 40, 40) });
      if (s.pattern !== undefined) {
        const prefix = /^\^([a-z]+)_/.exec(s.pattern)?.[1];
        const matching = fc.stringMatching(new RegExp(s.pattern)).filter((text) => text.length <= 300);
        const known = prefix === undefined ? undefined : knownIds[prefix];
        base =
          known === undefined || known.length === 0
            ? matching
            : fc.oneof(matching, fc.constantFrom(...known));
      }
      return meant === undefined
        ? base
        : fc.oneof({ weight: 4, arbitrary: meant }, { weight: 1, arbitrary: base });
    }
    default:
      return fc.jsonValue({ maxDepth: 2 });
  }
}

/** The paths into a JSON value, each a list of keys: where a mutation can land. */
function pathsOf(value: unknown, prefix: Array<string | number> = []): Array<Array<string | number>> {
  const paths: Array<Array<string | number>> = [prefix];
  if (prefix.length > 6) return paths;
  if (Array.isArray(value)) {
    for (const [index, item] of value.entries()) paths.push(...pathsOf(item, [...prefix, index]));
  } else if (value !== null && typeof value === "object")
    for (const [key, item] of Object.entries(value)) paths.push(...pathsOf(item, [...prefix, key]));
  return paths;
}

type Mutation = {
  kind: "replace" | "append" | "delete" | "unknown_field" | "wrap_in_array";
  pick: number;
  value: unknown;
  suffix: string;
};

/** Appended to a string that passes its schema: what a pattern or a length check may let through. */
const suffixes = fc.constantFrom(
  nul,
  loneHigh,
  loneLow,
  `${loneLow}${loneHigh}`,
  "\u202e",
  "'",
  "x".repeat(10_000),
);

function mutate(value: unknown, mutation: Mutation): unknown {
  // A JSON round trip, not structuredClone: a deeply nested value would overflow its stack.
  const copy = value === undefined ? undefined : JSON.parse(JSON.stringify(value));
  const paths = pathsOf(copy);
  const path = paths[mutation.pick % paths.length]!;
  if (path.length === 0) {
    if (mutation.kind === "wrap_in_array") return [copy];
    if (mutation.kind === "append" && typeof copy === "string") return `${copy}${mutation.suffix}`;
    if (
      mutation.kind === "unknown_field" &&
      copy !== null &&
      typeof copy === "object" &&
      !Array.isArray(copy)
    )
      return { ...copy, not_a_parameter: mutation.value };
    return mutation.kind === "replace" ? mutation.value : copy;
  }
  let parent: any = copy;
  for (const key of path.slice(0, -1)) parent = parent[key];
  const last = path[path.length - 1]!;
  switch (mutation.kind) {
    case "replace":
      parent[last] = mutation.value;
      break;
    case "delete":
      if (Array.isArray(parent)) parent.splice(Number(last), 1);
      else delete parent[last];
      break;
    case "unknown_field":
      if (parent[last] !== null && typeof parent[last] === "object" && !Array.isArray(parent[last]))
        parent[last] = { ...parent[last], [`x_${String(last)}`]: mutation.value };
      else parent[last] = mutation.value;
      break;
    case "wrap_in_array":
      parent[last] = [parent[last]];
      break;
    case "append":
      parent[last] = typeof parent[last] === "string" ? `${parent[last]}${mutation.suffix}` : mutation.value;
      break;
  }
  return copy;
}

const mutation: fc.Arbitrary<Mutation> = fc.record({
  kind: fc.constantFrom("replace", "replace", "append", "append", "delete", "unknown_field", "wrap_in_array"),
  pick: fc.nat(),
  value: hostileValue,
  suffix: suffixes,
});

/** A URL part, percent-encoded; a lone surrogate as the three bytes WTF-8 writes for it (not UTF-8, on purpose). */
function encodePart(text: string): string {
  let encoded = "";
  for (const char of text) {
    const unit = char.charCodeAt(0);
    if (char.length === 1 && unit >= 0xd800 && unit <= 0xdfff)
      encoded += [0xe0 | (unit >> 12), 0x80 | ((unit >> 6) & 0x3f), 0x80 | (unit & 0x3f)]
        .map((byte) => `%${byte.toString(16).toUpperCase()}`)
        .join("");
    else encoded += encodeURIComponent(char);
  }
  return encoded;
}

const asQueryText = (value: unknown): string[] =>
  Array.isArray(value)
    ? value.flatMap(asQueryText)
    : [typeof value === "string" ? value : (JSON.stringify(value) ?? "undefined")];

const rawQueries = fc.constantFrom(
  "limit=%",
  "%00=1",
  "limit=1&limit=2",
  "created[gte]=-1",
  "created[lte]=1e400",
  "a[b][c][d][e][f]=1",
  "expand[]=data.attempts&expand[]=x",
  `starting_after=${"x".repeat(5_000)}`,
  "limit=%ED%A0%80",
);

const rawBodies = fc.record({
  text: fc.constantFrom(
    "",
    "{",
    "null",
    "[]",
    '"text"',
    "1",
    "{}",
    '{"a":1,"a":2}',
    "\u00ff\u00fe",
    `[${"[".repeat(9_000)}`,
    // Valid JSON nested as deep as the 64 KiB body limit allows, a NUL at the bottom.
    `${"[".repeat(30_000)}"\\u0000"${"]".repeat(30_000)}`,
    `${'{"a":'.repeat(12_000)}1${"}".repeat(12_000)}`,
  ),
  type: fc.constantFrom<string | null>(
    "application/json",
    "application/json; charset=latin1",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/xml",
    null,
  ),
});

/** A few keys reused across requests, so repeats with other bodies and other routes happen. */
const idempotencyKey = fc.oneof(
  fc.constant(null),
  fc.constant(null),
  fc.constantFrom("fuzz-key-1", "fuzz-key-2", "fuzz-key-3"),
  fc.uuid(),
);

function requests(op: Operation, components: Record<string, JsonSchema>): fc.Arbitrary<Request> {
  const pathParams = op.parameters.filter((p) => p.in === "path");
  const queryParams = op.parameters.filter((p) => p.in === "query");
  const paramValue = (p: Parameter) =>
    fc.oneof(
      { weight: 3, arbitrary: fitting(p.schema, components).map(asQueryText) },
      { weight: 1, arbitrary: hostileValue.map(asQueryText) },
    );
  const path = fc
    .tuple(...pathParams.map((p) => paramValue(p).map((values) => [p.name, values[0] ?? ""] as const)))
    .map((pairs) => {
      let url = op.path;
      for (const [name, value] of pairs) url = url.replace(`{${name}}`, encodePart(value));
      return url;
    });
  const query = fc.oneof(
    {
      weight: 4,
      arbitrary: fc
        .subarray(queryParams)
        .chain((chosen) =>
          fc.tuple(
            ...chosen.map((p) =>
              paramValue(p).map((values) =>
                values.map((v) => `${encodePart(p.name)}=${encodePart(v)}`).join("&"),
              ),
            ),
          ),
        )
        .map((parts) => parts.join("&")),
    },
    { weight: 1, arbitrary: rawQueries },
    { weight: 1, arbitrary: fc.constant("") },
  );
  const body: fc.Arbitrary<Request["body"]> =
    op.body === null
      ? fc.oneof(
          { weight: 4, arbitrary: fc.constant({ kind: "none" as const }) },
          { weight: 1, arbitrary: rawBodies.map((raw) => ({ kind: "raw" as const, ...raw })) },
        )
      : fc.oneof(
          {
            weight: 4,
            arbitrary: fitting(op.body, components).map((value) => ({ kind: "json" as const, value })),
          },
          {
            weight: 4,
            arbitrary: fc
              .tuple(fitting(op.body, components), fc.array(mutation, { minLength: 1, maxLength: 2 }))
              .map(([value, mutations]) => ({
                kind: "json" as const,
                value: mutations.reduce<unknown>((current, m) => mutate(current, m), value),
              })),
          },
          { weight: 1, arbitrary: hostileValue.map((value) => ({ kind: "json" as const, value })) },
          { weight: 1, arbitrary: rawBodies.map((raw) => ({ kind: "raw" as const, ...raw })) },
        );
  return fc.record({
    url: fc.tuple(path, query).map(([p, q]) => (q === "" ? p : `${p}?${q}`)),
    body,
    idempotencyKey: op.method === "POST" ? idempotencyKey : fc.constant(null),
  });
}

describe("every operation of the OpenAPI document, fuzzed", () => {
  let gw: TestGateway;
  let stripeMock: StripeMockServer | undefined;
  let operations: Operation[];
  let components: Record<string, JsonSchema>;

  beforeAll(async () => {
    // The card rail too, on stripe-mock (FUZZ_STRIPE=0 leaves it out): USD invoices make PaymentIntents.
    const env: Record<string, string> = {};
    if (process.env.FUZZ_STRIPE !== "0") {
      const ensured = await ensureStripeMock({ buildTimeoutMs: stripeMockBuildTimeoutMs });
      stripeMock = await startStripeMock({ binary: ensured.binary });
      Object.assign(env, {
        STRIPE_SECRET_KEY: "sk_test_fuzz",
        STRIPE_WEBHOOK_SECRETS: "whsec_fuzz",
        STRIPE_API_HOST: "127.0.0.1",
        STRIPE_API_PORT: String(stripeMock.port),
        STRIPE_API_PROTOCOL: "http",
        FIAT_LIQUIDITY: "not_limited",
      });
    }
    gw = await startTestGateway({
      database: process.env.FUZZ_DATABASE === "postgres" ? "postgres" : "pglite",
      env,
    });
    await ensureOperatorKey(gw.app.db, { configured: operatorKey });
    // The demo tenant's accounts (USDC, USD, BTC …) are the ids offered where an account id is asked.
    const accounts = await gw.app.db.query<{ id: string }>("SELECT id FROM accounts WHERE tenant_id = $1", [
      gw.app.demo!.tenantId,
    ]);
    knownIds.acct = accounts.map((account) => account.id);
    const document = (await gw.app.server.inject({ method: "GET", url: "/openapi.json" })).json();
    components = document.components?.schemas ?? {};
    operations = [];
    for (const [path, methods] of Object.entries(document.paths as Record<string, Record<string, any>>)) {
      if (!path.startsWith("/v1/")) continue;
      for (const [method, operation] of Object.entries(methods)) {
        if (!["get", "post", "patch", "delete"].includes(method)) continue;
        operations.push({
          method: method.toUpperCase() as Method,
          path,
          parameters: (operation.parameters ?? []) as Parameter[],
          body: operation.requestBody?.content?.["application/json"]?.schema ?? null,
        });
      }
    }
  });
  afterAll(async () => {
    await gw?.app.close();
    await stripeMock?.stop();
  });

  it("answers every request below 500, errors in the API's shape", { timeout: fuzzTimeoutMs }, async () => {
    expect(operations.length).toBeGreaterThanOrEqual(10);
    const failures: string[] = [];
    let sent = 0;
    for (const [index, op] of operations.entries()) {
      const sample = fc.sample(requests(op, components), { seed: seed + index, numRuns: runsPerOperation });
      for (const request of sample) {
        // The operator's routes answer only the operator's credential: with it, their bodies are fuzzed too.
        const credential = operatorPath(op.path) ? operatorKey : gw.key;
        const headers: Record<string, string> = { authorization: `Bearer ${credential}` };
        if (request.idempotencyKey !== null) headers["idempotency-key"] = request.idempotencyKey;
        let payload: string | undefined;
        if (request.body.kind === "json") {
          payload = JSON.stringify(request.body.value) ?? "null";
          headers["content-type"] = "application/json";
        } else if (request.body.kind === "raw") {
          payload = request.body.text;
          if (request.body.type !== null) headers["content-type"] = request.body.type;
        }
        const startedMs = Date.now();
        const response = await gw.app.server.inject({
          method: op.method,
          url: request.url,
          headers,
          ...(payload === undefined ? {} : { payload }),
        });
        const tookMs = Date.now() - startedMs;
        sent += 1;
        const problem =
          answerProblem(response.statusCode, response.body) ??
          (tookMs > answerMsMax ? `answered in ${tookMs} ms, more than ${answerMsMax}` : null);
        if (problem !== null && failures.length < failuresShownMax)
          failures.push(
            `${op.method} ${request.url.slice(0, 300)} key=${request.idempotencyKey} body=${(payload ?? "").slice(0, 300)} → ${response.statusCode} ${response.body.slice(0, 300)}: ${problem}`,
          );
      }
    }
    expect(failures).toEqual([]);
    expect(sent).toBe(operations.length * runsPerOperation);
  });

  // After the pass above (tests in a file run in order): whatever it sent, every ledger balances and every account's
  // balances are exactly its transfers. The check itself is shown to see a drift, inside a transaction rolled back.
  it("leaves every ledger exact", async () => {
    expect(await ledgerInvariantProblems(gw.app.db)).toEqual([]);
    const rolledBack = new Error("rolled back");
    const seen = await gw.app.db
      .transaction(async (tx) => {
        await tx.query(
          "UPDATE ledger_accounts SET debits_posted = debits_posted + 1 WHERE id = (SELECT id FROM ledger_accounts LIMIT 1)",
        );
        const problems = await ledgerInvariantProblems(tx);
        throw Object.assign(rolledBack, { problems });
      })
      .catch((error: unknown) => {
        if (error !== rolledBack) throw error;
        return (error as Error & { problems: string[] }).problems;
      });
    expect(seen.some((problem) => problem.includes("does not balance"))).toBe(true);
    expect(seen.some((problem) => problem.includes("debits_posted is"))).toBe(true);
    expect(await ledgerInvariantProblems(gw.app.db)).toEqual([]);
  });
});

/** What is wrong with an answer, or null: a 5xx, a body that is not JSON, an error not in the API's shape. */
function answerProblem(status: number, text: string): string | null {
  if (status >= 500) return "a server error";
  let body: any;
  try {
    body = text === "" ? null : JSON.parse(text);
  } catch (error) {
    return `not JSON: ${String(error)}`;
  }
  // Accepted text is stored as sent: an answer never carries a NUL or a lone surrogate (the database would have
  // refused the one and replaced the other).
  if (status < 400) {
    const found = findUnstorableText(body);
    return found === null ? null : `answered ${status} with unstorable text at "${found.param}"`;
  }
  const error = body?.error;
  if (error === undefined || typeof error.code !== "string" || typeof error.message !== "string")
    return "an error not in the API's shape";
  if (error.param !== undefined && typeof error.param !== "string") return "a param that is not a string";
  if (!(error.code in errorStatus)) return `a code outside the closed set: ${error.code}`;
  const expected = statusOf(error.code as ApiErrorCode, error.param);
  if (expected !== status) return `${error.code} answered ${status}, not its ${expected}`;
  return null;
}
