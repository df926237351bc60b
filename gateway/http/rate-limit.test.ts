// The rate limit's memory of counts (WindowStore), bounded: at most `entriesMax` clients per limit, the least recently
// counted forgotten first. A client that keeps being counted is never the one forgotten, so other clients' requests
// cannot push it out and give it a fresh count within its window; only one counted before `entriesMax` others is
// forgotten. The clock is fixed inside one window, so every count here is of the same window.
import Fastify, { type FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { errorsPlugin } from "./errors.ts";
import { rateLimitPlugin } from "./rate-limit.ts";

const entriesMax = 3;

async function limitedApp(): Promise<FastifyInstance> {
  const app = Fastify();
  await app.register(errorsPlugin);
  await app.register(rateLimitPlugin, {
    limits: { ipRequestsPerSecondMax: 1, keyRequestsPerSecondMax: null, tenantRequestsPerSecondMax: null },
    entriesMax,
  });
  app.get("/", async () => ({ ok: true }));
  await app.ready();
  return app;
}

describe("the per-IP counts, at most entriesMax clients", () => {
  let app: FastifyInstance;
  beforeAll(async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(1_800_000_000_000);
    app = await limitedApp();
  });
  afterAll(async () => {
    await app?.close();
    vi.useRealTimers();
  });

  /** The status of one request from `ip` (the limit is one a second). */
  const from = async (ip: string) =>
    (await app.inject({ method: "GET", url: "/", remoteAddress: ip })).statusCode;

  it("keeps a client counted since the others came: it stays refused for the rest of its window", async () => {
    expect([await from("192.0.2.1"), await from("192.0.2.1")]).toEqual([200, 429]);
    expect(await from("192.0.2.2")).toBe(200);
    // Counted again (refused): now more recently counted than 192.0.2.2.
    expect(await from("192.0.2.1")).toBe(429);
    // A third and a fourth client: the fourth forgets the least recently counted, 192.0.2.2, not 192.0.2.1.
    expect([await from("192.0.2.3"), await from("192.0.2.4")]).toEqual([200, 200]);
    expect(await from("192.0.2.1")).toBe(429);
    expect(await from("192.0.2.2")).toBe(200);
  });

  it("forgets a client once entriesMax others were counted after it, and no more are kept", async () => {
    expect(await from("198.51.100.1")).toBe(200);
    for (const ip of ["198.51.100.2", "198.51.100.3", "198.51.100.4"]) expect(await from(ip)).toBe(200);
    // Forgotten (the memory holds 3): counted afresh, within the same window.
    expect(await from("198.51.100.1")).toBe(200);
    expect(await from("198.51.100.1")).toBe(429);
    // Counting it afresh forgot the least recently counted other (198.51.100.2), and kept the last (198.51.100.4).
    expect(await from("198.51.100.4")).toBe(429);
    expect(await from("198.51.100.2")).toBe(200);
  });
});

describe("a request whose peer's address is gone", () => {
  it("is counted under one key of its own, never a 500", async () => {
    // A client that sends a request and resets its connection at once: Node then gives no remoteAddress, and the
    // library's default key (normalizeIP(request.ip)) threw, answering 500 internal_error. As its socket would.
    const app = Fastify();
    app.addHook("onRequest", async (request) => {
      if (request.headers["x-peer-gone"] !== undefined)
        Object.defineProperty(request.socket, "remoteAddress", { value: undefined });
    });
    await app.register(errorsPlugin);
    await app.register(rateLimitPlugin, {
      limits: { ipRequestsPerSecondMax: 1, keyRequestsPerSecondMax: null, tenantRequestsPerSecondMax: null },
    });
    app.get("/", async () => ({ ok: true }));
    try {
      const gone = () => app.inject({ method: "GET", url: "/", headers: { "x-peer-gone": "1" } });
      expect((await gone()).statusCode).toBe(200);
      expect((await gone()).statusCode).toBe(429); // they share their count: one a second between them
      expect((await app.inject({ method: "GET", url: "/", remoteAddress: "192.0.2.9" })).statusCode).toBe(
        200,
      );
    } finally {
      await app.close();
    }
  });
});
