// Rate limits end to end (issue #22: "8,000 burst requests, no 429"): per client IP on every route, before the API
// key is looked at (a made-up key, no key, health, a rail's provider route); per API key after authentication, each
// key (and the operator's credential) its own count; past either, 429 rate_limited with Retry-After and the
// X-RateLimit-* headers; on by default in development too (what `npm start` runs), off (what the other tests and the
// benches set) nothing is refused. The limit's window is one second: a refused client is served again once it has
// passed.
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../gateway/app/config.ts";
import { type App, createApp } from "../../gateway/app.ts";
import { rateLimitsDevelopmentDefault, rateLimitsProductionDefault } from "../../gateway/http/rate-limit.ts";
import { productionEnv } from "../support/config.ts";
import { startTestGateway, type TestGateway } from "./support.ts";

const operatorKey = `op_${randomBytes(32).toString("base64url")}`;

type Answer = { status: number; headers: Record<string, unknown>; body: any };

async function get(
  gw: TestGateway,
  url: string,
  options: { key?: string | null; ip?: string } = {},
): Promise<Answer> {
  const response = await gw.app.server.inject({
    method: "GET",
    url,
    remoteAddress: options.ip ?? "127.0.0.1",
    headers:
      options.key === undefined || options.key === null ? {} : { authorization: `Bearer ${options.key}` },
  });
  return {
    status: response.statusCode,
    headers: response.headers,
    body: response.body === "" ? null : response.json(),
  };
}

/** `count` requests at once; their statuses, in order. */
async function burst(count: number, request: (i: number) => Promise<Answer>): Promise<Answer[]> {
  return Promise.all(Array.from({ length: count }, (_, i) => request(i)));
}

function expectRateLimited(answer: Answer, limit: number) {
  expect(answer.status).toBe(429);
  expect(answer.body.error.code).toBe("rate_limited");
  const retryAfter = Number(answer.headers["retry-after"]);
  expect(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 1).toBe(true);
  expect(answer.headers["x-ratelimit-limit"]).toBe(String(limit));
  expect(answer.headers["x-ratelimit-remaining"]).toBe("0");
  expect(answer.headers["x-ratelimit-reset"]).toBe(String(retryAfter));
}

/** Waits for the current one-second window to pass. */
const nextWindow = () => sleep(1_100);

describe("the configuration", () => {
  it("is on in development and in production unless set, and `off` turns either off", () => {
    expect(loadConfig({}).rateLimits).toEqual(rateLimitsDevelopmentDefault);
    expect(rateLimitsDevelopmentDefault.ipRequestsPerSecondMax).not.toBeNull();
    expect(rateLimitsDevelopmentDefault.keyRequestsPerSecondMax).not.toBeNull();
    // Production on infrastructure of its own (its database, its chain), as it must be.
    expect(loadConfig(productionEnv).rateLimits).toEqual(rateLimitsProductionDefault);
    expect(
      loadConfig({ ...productionEnv, RATE_LIMIT_PER_IP: "off", RATE_LIMIT_PER_KEY: "7" }).rateLimits,
    ).toEqual({
      ipRequestsPerSecondMax: null,
      keyRequestsPerSecondMax: 7,
      tenantRequestsPerSecondMax: 1_000,
    });
    expect(
      loadConfig({ RATE_LIMIT_PER_IP: "50", RATE_LIMIT_PER_KEY: "off", RATE_LIMIT_PER_TENANT: "off" })
        .rateLimits,
    ).toEqual({
      ipRequestsPerSecondMax: 50,
      keyRequestsPerSecondMax: null,
      tenantRequestsPerSecondMax: null,
    });
    expect(() => loadConfig({ RATE_LIMIT_PER_KEY: "0" })).toThrow("RATE_LIMIT_PER_KEY");
    expect(() => loadConfig({ RATE_LIMIT_PER_TENANT: "-1" })).toThrow("RATE_LIMIT_PER_TENANT");
    expect(() => loadConfig({ RATE_LIMIT_PER_IP: "fast" })).toThrow("RATE_LIMIT_PER_IP");
  });
});

describe("npm start's defaults (development, no RATE_LIMIT_* set)", () => {
  let app: App;
  beforeAll(async () => {
    app = await createApp(loadConfig({ LOG_LEVEL: "silent", PORT: "0" }));
  });
  afterAll(async () => {
    await app?.close();
  });

  it("meet a burst of made-up keys from one address with 429s (the probe's 8,000 went through)", async () => {
    const limit = rateLimitsDevelopmentDefault.ipRequestsPerSecondMax!;
    const count = 2 * limit + 500;
    const started = performance.now();
    const answers = await Promise.all(
      Array.from({ length: count }, () =>
        app.server.inject({
          method: "GET",
          url: "/v1/payments",
          remoteAddress: "203.0.113.5",
          headers: { authorization: `Bearer sk_test_${randomBytes(32).toString("base64url")}` },
        }),
      ),
    );
    const windows = Math.ceil((performance.now() - started) / 1_000);
    const refused = answers.filter((answer) => answer.statusCode === 429);
    expect(answers.filter((answer) => answer.statusCode === 401).length).toBeLessThanOrEqual(windows * limit);
    expect(refused.length).toBeGreaterThanOrEqual(count - windows * limit);
    expect(refused.length).toBeGreaterThan(0);
    expect(refused[0]!.json().error.code).toBe("rate_limited");
    expect(answers.every((answer) => answer.statusCode === 401 || answer.statusCode === 429)).toBe(true);
  });
});

describe("per client IP", () => {
  const limit = 20;
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({ database: "pglite", env: { RATE_LIMIT_PER_IP: String(limit) } });
  });
  afterAll(async () => {
    await gw?.app.close();
  });

  it("refuses a burst past the limit 429 rate_limited, before the key is looked at, on every route", async () => {
    await nextWindow();
    const answers = await burst(limit + 10, () => get(gw, "/v1/accounts", { key: gw.key }));
    const served = answers.filter((answer) => answer.status === 200);
    const refused = answers.filter((answer) => answer.status === 429);
    expect(served).toHaveLength(limit);
    expect(refused).toHaveLength(10);
    for (const answer of refused) expectRateLimited(answer, limit);
    expect(served[0]!.headers["x-ratelimit-limit"]).toBe(String(limit));
    // Past the limit, the answer is 429 whatever the key: none, a made-up one, a valid one; and off /v1 too.
    expectRateLimited(await get(gw, "/v1/accounts"), limit);
    expectRateLimited(await get(gw, "/v1/accounts", { key: `sk_test_${"A".repeat(43)}` }), limit);
    expectRateLimited(await get(gw, "/healthz"), limit);
    expectRateLimited(await get(gw, "/openapi.json"), limit);
    // Another address has its own count.
    expect((await get(gw, "/v1/accounts", { key: gw.key, ip: "192.0.2.7" })).status).toBe(200);
    await nextWindow();
    expect((await get(gw, "/v1/accounts", { key: gw.key })).status).toBe(200);
  });

  it("counts requests without a key and with made-up keys: a guessing client is stopped too", async () => {
    await nextWindow();
    const ip = "198.51.100.9";
    const guesses = await burst(limit + 5, () =>
      get(gw, "/v1/payments", { key: `sk_test_${randomBytes(32).toString("base64url")}`, ip }),
    );
    expect(guesses.filter((answer) => answer.status === 401)).toHaveLength(limit);
    for (const answer of guesses.filter((answer) => answer.status !== 401)) expectRateLimited(answer, limit);
  });
});

describe("per API key", () => {
  const limit = 5;
  let gw: TestGateway;
  let second: string;
  beforeAll(async () => {
    gw = await startTestGateway({
      database: "pglite",
      env: { RATE_LIMIT_PER_KEY: String(limit), OPERATOR_KEY: operatorKey },
    });
    const made = await gw.call("POST", "/v1/api_keys", { body: { name: "second" } });
    expect(made.status).toBe(201);
    second = made.body.secret;
  });
  afterAll(async () => {
    await gw?.app.close();
  });

  it("counts each key apart: one key's burst leaves its sibling and the operator served", async () => {
    await nextWindow();
    const answers = await burst(limit + 3, () => get(gw, "/v1/accounts", { key: gw.key }));
    expect(answers.filter((answer) => answer.status === 200)).toHaveLength(limit);
    const refused = answers.filter((answer) => answer.status === 429);
    expect(refused).toHaveLength(3);
    for (const answer of refused) expectRateLimited(answer, limit);
    // The same tenant's other key, from the same address: its own count.
    const sibling = await burst(limit, () => get(gw, "/v1/accounts", { key: second }));
    expect(sibling.map((answer) => answer.status)).toEqual(Array(limit).fill(200));
    expectRateLimited(await get(gw, "/v1/accounts", { key: second }), limit);
    // The operator's credential: its own count.
    expect((await get(gw, "/v1/tenants", { key: operatorKey })).status).toBe(200);
    // A key past its limit is refused after authentication: a wrong key is still 401, no key 401.
    expect((await get(gw, "/v1/accounts")).status).toBe(401);
    expect((await get(gw, "/v1/accounts", { key: `sk_test_${"A".repeat(43)}` })).status).toBe(401);
    // Outside /v1 no key is counted.
    expect((await get(gw, "/healthz")).status).toBe(200);
    await nextWindow();
    expect((await get(gw, "/v1/accounts", { key: gw.key })).status).toBe(200);
  });

  it("counts the operator's credential in a bucket of its own", async () => {
    await nextWindow();
    const answers = await burst(limit + 2, () => get(gw, "/v1/tenants", { key: operatorKey }));
    expect(answers.filter((answer) => answer.status === 200)).toHaveLength(limit);
    for (const answer of answers.filter((answer) => answer.status !== 200)) expectRateLimited(answer, limit);
    expect((await get(gw, "/v1/accounts", { key: gw.key })).status).toBe(200);
  });
});

describe("per tenant", () => {
  const limit = 6;
  let gw: TestGateway;
  let second: string;
  let otherTenants: string;
  beforeAll(async () => {
    gw = await startTestGateway({
      database: "pglite",
      env: { RATE_LIMIT_PER_TENANT: String(limit), OPERATOR_KEY: operatorKey },
    });
    const made = await gw.call("POST", "/v1/api_keys", { body: { name: "second" } });
    expect(made.status).toBe(201);
    second = made.body.secret;
    const tenant = await gw.call("POST", "/v1/tenants", { key: operatorKey, body: { name: "beside" } });
    expect(tenant.status).toBe(201);
    otherTenants = tenant.body.api_key.secret;
  });
  afterAll(async () => {
    await gw?.app.close();
  });

  it("counts all of a tenant's keys together: a second key adds nothing, another tenant and the operator are served", async () => {
    await nextWindow();
    // Before: each key had its own count (none here), and a tenant making keys multiplied its rate.
    const answers = await burst(limit + 4, (i) =>
      get(gw, "/v1/accounts", { key: i % 2 === 0 ? gw.key : second }),
    );
    expect(answers.filter((answer) => answer.status === 200)).toHaveLength(limit);
    const refused = answers.filter((answer) => answer.status === 429);
    expect(refused).toHaveLength(4);
    for (const answer of refused) expectRateLimited(answer, limit);
    expect(refused[0]!.body.error.message).toMatch(/of this tenant/);
    expect((await get(gw, "/v1/accounts", { key: otherTenants })).status).toBe(200);
    expect((await get(gw, "/v1/tenants", { key: operatorKey })).status).toBe(200);
    await nextWindow();
    expect((await get(gw, "/v1/accounts", { key: second })).status).toBe(200);
  });
});

describe("off (development's default)", () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({ database: "pglite" });
  });
  afterAll(async () => {
    await gw?.app.close();
  });

  it("refuses nothing and sends no X-RateLimit headers", async () => {
    const answers = await burst(500, () => get(gw, "/v1/accounts", { key: gw.key }));
    expect(answers.every((answer) => answer.status === 200)).toBe(true);
    expect(answers[0]!.headers["x-ratelimit-limit"]).toBeUndefined();
    const health = await burst(500, () => get(gw, "/healthz"));
    expect(health.every((answer) => answer.status === 200)).toBe(true);
  });
});
