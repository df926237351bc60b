// The HTTP source against a real local server that answers well, slowly, hugely or with garbage.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RateConfigError } from "./errors.ts";
import { httpRateSource, parseRatesBody } from "./http.ts";

type Handler = (request: IncomingMessage, response: ServerResponse) => void;
const handlers: Record<string, Handler> = {
  "/rates": (_request, response) => {
    response.writeHead(200, { "content-type": "application/json" });
    response.end(JSON.stringify({ rates: { BTC: "100000.00", ETH: "3100.25", DOGE: "0.1" } }));
  },
  "/keyed": (request, response) => {
    response.writeHead(request.headers["x-api-key"] === "k" ? 200 : 401);
    response.end(JSON.stringify({ rates: { ETH: "3000" } }));
  },
  "/slow-headers": () => {},
  "/slow-body": (_request, response) => {
    response.writeHead(200, { "content-type": "application/json" });
    response.write('{"rates": {');
  },
  "/huge-declared": (_request, response) => {
    response.writeHead(200, { "content-length": String(10 * 1024 * 1024) });
    response.write("{");
  },
  "/huge-streamed": (_request, response) => {
    response.writeHead(200, { "content-type": "application/json" });
    const chunk = "x".repeat(16 * 1024);
    for (let i = 0; i < 64; i += 1) response.write(chunk);
    response.end();
  },
  "/garbage": (_request, response) => {
    response.writeHead(200);
    response.end("<html>not json</html>");
  },
  "/wrong-shape": (_request, response) => {
    response.writeHead(200);
    response.end(JSON.stringify({ BTC: "100000" }));
  },
  "/numbers": (_request, response) => {
    response.writeHead(200);
    response.end('{"rates": {"BTC": 100000.5, "ETH": "-3000"}}');
  },
  "/error": (_request, response) => {
    response.writeHead(503);
    response.end("down");
  },
};

let server: Server;
let base: string;
beforeAll(async () => {
  server = createServer((request, response) => handlers[request.url ?? ""]?.(request, response));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

const source = (path: string, extra: Partial<Parameters<typeof httpRateSource>[0]> = {}) =>
  httpRateSource({
    url: `${base}${path}`,
    assetCodes: ["BTC", "ETH"],
    requestTimeoutMs: 300,
    responseBytesMax: 64 * 1024,
    nowMs: () => 1_000,
    ...extra,
  });

const reasons = (result: Awaited<ReturnType<ReturnType<typeof httpRateSource>["fetchRates"]>>) =>
  result.failures.map((failure) => [failure.assetCode, failure.reason]);

describe("httpRateSource", () => {
  it("reads the configured assets as exact rates observed at the fetch time, ignoring the others", async () => {
    const result = await source("/rates").fetchRates();
    expect(result.failures).toEqual([]);
    expect(result.observations).toEqual([
      { assetCode: "BTC", rate: { microUsd: 1n, perMinorUnits: 1n }, observedAtMs: 1_000 },
      { assetCode: "ETH", rate: { microUsd: 12_401n, perMinorUnits: 4_000n }, observedAtMs: 1_000 },
    ]);
  });

  it("sends the configured headers", async () => {
    expect(reasons(await source("/keyed", { assetCodes: ["ETH"] }).fetchRates())).toEqual([
      ["ETH", "http_status"],
    ]);
    const keyed = await source("/keyed", { assetCodes: ["ETH"], headers: { "x-api-key": "k" } }).fetchRates();
    expect(keyed.observations).toHaveLength(1);
  });

  it("times out a server that never answers, and one that never finishes its body", async () => {
    const started = performance.now();
    expect(reasons(await source("/slow-headers").fetchRates())).toEqual([
      ["BTC", "timeout"],
      ["ETH", "timeout"],
    ]);
    expect(reasons(await source("/slow-body").fetchRates())).toEqual([
      ["BTC", "timeout"],
      ["ETH", "timeout"],
    ]);
    expect(performance.now() - started).toBeLessThan(5_000);
  });

  it("refuses a body over the bound, declared or streamed", async () => {
    for (const path of ["/huge-declared", "/huge-streamed"]) {
      const result = await source(path).fetchRates();
      expect(reasons(result), path).toEqual([
        ["BTC", "too_large"],
        ["ETH", "too_large"],
      ]);
    }
  });

  it("calls garbage, the wrong shape, JSON numbers and negative prices malformed", async () => {
    for (const path of ["/garbage", "/wrong-shape"])
      expect(reasons(await source(path).fetchRates()), path).toEqual([
        ["BTC", "malformed"],
        ["ETH", "malformed"],
      ]);
    const numbers = await source("/numbers").fetchRates();
    expect(numbers.observations).toEqual([]);
    expect(reasons(numbers)).toEqual([
      ["BTC", "malformed"],
      ["ETH", "malformed"],
    ]);
  });

  it("reports a status other than 200, an unlisted asset and an unreachable server, never throwing", async () => {
    expect(reasons(await source("/error").fetchRates())).toEqual([
      ["BTC", "http_status"],
      ["ETH", "http_status"],
    ]);
    const partial = await source("/keyed", {
      assetCodes: ["ETH", "USDC"],
      headers: { "x-api-key": "k" },
    }).fetchRates();
    expect(reasons(partial)).toEqual([["USDC", "not_listed"]]);
    const closed = httpRateSource({
      url: "http://127.0.0.1:1/rates",
      assetCodes: ["ETH"],
      requestTimeoutMs: 1_000,
    });
    expect(reasons(await closed.fetchRates())).toEqual([["ETH", "unreachable"]]);
  });

  it("refuses bad configuration at construction", () => {
    expect(() => httpRateSource({ url: "ftp://x/", assetCodes: [] })).toThrow(RateConfigError);
    expect(() => httpRateSource({ url: "not a url", assetCodes: [] })).toThrow(RateConfigError);
    expect(() => httpRateSource({ url: base, assetCodes: ["DOGE"] })).toThrow(RateConfigError);
    expect(() => httpRateSource({ url: base, assetCodes: [], requestTimeoutMs: 0 })).toThrow(RateConfigError);
  });
});

describe("parseRatesBody", () => {
  it("does not read inherited keys as assets", () => {
    const result = parseRatesBody('{"rates": {}}', ["BTC"], 0);
    expect(result.failures).toEqual([{ assetCode: "BTC", reason: "not_listed", details: "no rates.BTC" }]);
    expect(parseRatesBody('{"rates": []}', ["BTC"], 0).failures[0]?.reason).toBe("malformed");
    expect(parseRatesBody("null", ["BTC"], 0).failures[0]?.reason).toBe("malformed");
  });
});
