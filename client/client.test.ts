// The typed client: its generated types are those of the document the gateway serves now (regenerate with
// `npm run client:generate`), and it calls a server in-process through injectFetch.
import { readFile } from "node:fs/promises";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { currentApiVersion } from "../gateway/tenants/index.ts";
import { buildBareServer } from "../test/support/bare-server.ts";
import { generatedTypesPath, servedDocument, typesOf } from "./generate-types.ts";
import { createSwitchyardClient, injectFetch } from "./index.ts";

describe("the generated types", () => {
  it("are those of the served document: run `npm run client:generate` after changing a route", async () => {
    const committed = await readFile(generatedTypesPath, "utf8");
    const fresh = await typesOf(await servedDocument());
    // Not toEqual on the whole text: the first differing line says more than a 2,000-line diff.
    const committedLines = committed.split("\n");
    const freshLines = fresh.split("\n");
    const first = freshLines.findIndex((line, index) => line !== committedLines[index]);
    expect(
      first === -1 && freshLines.length === committedLines.length
        ? "up to date"
        : `out of date from line ${first + 1}: ${JSON.stringify(freshLines[first])}`,
    ).toBe("up to date");
  });
});

describe("the client in-process", () => {
  let server: FastifyInstance;
  beforeAll(async () => {
    server = await buildBareServer([]);
  });
  afterAll(async () => {
    await server?.close();
  });

  it("sends the key it is given, or none, and reads the error body and status", async () => {
    const anonymous = createSwitchyardClient({
      baseUrl: "http://gateway",
      apiKey: null,
      fetch: injectFetch(server),
    });
    const missing = await anonymous.GET("/v1/payments/{id}", { params: { path: { id: "pay_x" } } });
    expect(missing.response.status).toBe(401);
    expect(missing.data).toBeUndefined();
    expect(missing.error?.error.code).toBe("api_key_missing");

    const wrong = createSwitchyardClient({
      baseUrl: "http://gateway",
      apiKey: "hunter2",
      version: currentApiVersion,
      fetch: injectFetch(server),
    });
    const invalid = await wrong.POST("/v1/payments", {
      body: {
        amount: "1",
        asset: "USDC",
        source: { account: "acct_a" },
        destination: { type: "account", account: "acct_b" },
      },
      params: { header: { "Idempotency-Key": "k-1" } },
    });
    expect(invalid.response.status).toBe(401);
    expect(invalid.error?.error.code).toBe("api_key_invalid");
    expect(invalid.response.headers.get("content-type")).toMatch(/^application\/json/);
  });

  it("gives a request that requires an Idempotency-Key and names none a new one, and keeps the one it is given", async () => {
    const sent: (string | null)[] = [];
    const watched = (request: Request) => {
      sent.push(request.headers.get("idempotency-key"));
      return injectFetch(server)(request);
    };
    const body = {
      amount: "1",
      asset: "USDC" as const,
      source: { account: "acct_a" },
      destination: { type: "account" as const, account: "acct_b" },
    };
    const client = createSwitchyardClient({ baseUrl: "http://gateway", apiKey: "hunter2", fetch: watched });
    await client.POST("/v1/payments", { body });
    await client.POST("/v1/payments", { body });
    await client.POST("/v1/payments", { body, params: { header: { "Idempotency-Key": "order-42" } } });
    await client.GET("/v1/payments/{id}", { params: { path: { id: "pay_x" } } });
    // A POST that takes a key but does not require one is sent as it is.
    await client.POST("/v1/accounts", { body: { asset: "USDC", kind: "customer" } });
    const off = createSwitchyardClient({
      baseUrl: "http://gateway",
      apiKey: "hunter2",
      fetch: watched,
      newIdempotencyKeys: false,
    });
    await off.POST("/v1/payments", { body });
    const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
    expect(sent).toEqual([
      expect.stringMatching(uuid),
      expect.stringMatching(uuid),
      "order-42",
      null,
      null,
      null,
    ]);
    expect(sent[0]).not.toBe(sent[1]);
  });

  it("sends the API version it is asked for (Switchyard-Version)", async () => {
    const client = createSwitchyardClient({
      baseUrl: "http://gateway",
      apiKey: "hunter2",
      version: "not-a-version",
      fetch: injectFetch(server),
    });
    const answer = await client.GET("/v1/payments/{id}", { params: { path: { id: "pay_x" } } });
    expect([answer.response.status, answer.error?.error.code]).toEqual([400, "api_version_invalid"]);
  });

  it("passes the query string and reads a document outside /v1", async () => {
    const client = createSwitchyardClient({
      baseUrl: "http://gateway",
      apiKey: null,
      fetch: injectFetch(server),
    });
    const list = await client.GET("/v1/payees", { params: { query: { limit: 5 } } });
    expect(list.response.status).toBe(401);
    const fetched = await injectFetch(server)(new Request("http://gateway/openapi.json?x=1"));
    expect(fetched.status).toBe(200);
    expect(((await fetched.json()) as { openapi: string }).openapi).toBe("3.1.0");
  });
});
