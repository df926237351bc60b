// The Fastify glue alone (no database, no rail): the plugin at the top level leaves a user's routes as they were —
// prefixed routes with their HEAD twins, the user's own OPTIONS route, a catch-all OPTIONS — and still answers a
// paywalled path's preflight; inside an encapsulated scope `preflightRoutes` makes the preflight reach it.
import { connect as connectHttp2 } from "node:http2";
import { connect } from "node:net";
import Fastify, { type FastifyInstance } from "fastify";
import { describe, expect, it } from "vitest";
import { matchPaywall, type PaywallCheck, pathOf } from "./core.ts";
import { switchyardPaywall } from "./fastify.ts";

/** Paywalls /paid/*: a preflight there is answered with the payment headers allowed; everything else is free. */
const paywall: PaywallCheck = async (request) => {
  const path = new URL(request.url).pathname;
  if (!path.startsWith("/paid") && !path.startsWith("/api/paid")) return { kind: "free" };
  if (request.method === "OPTIONS")
    return {
      kind: "preflight",
      status: 204,
      headers: [["Access-Control-Allow-Headers", "PAYMENT-SIGNATURE"]],
    };
  return { kind: "free" };
};

const preflight = { "access-control-request-method": "GET", origin: "https://app.example" };

describe("switchyardPaywall in a Fastify app", () => {
  it("at the top level: starts with prefixed routes, a user's OPTIONS route and a catch-all, and answers preflights", async () => {
    const app = Fastify();
    await app.register(switchyardPaywall, { paywall });
    await app.register(
      async (api) => {
        api.get("/", async () => ({ root: true }));
        api.get("/paid/report", async () => ({ report: true }));
      },
      { prefix: "/api" },
    );
    app.get("/x", async () => ({ x: true }));
    app.options("/x", async (_request, reply) => reply.code(200).send({ mine: true }));
    app.options("/open/*", async (_request, reply) => reply.code(204).send());
    app.get("/open/thing", async () => ({ open: true }));
    await app.ready();

    const paid = await app.inject({ method: "OPTIONS", url: "/api/paid/report", headers: preflight });
    expect(paid.statusCode).toBe(204);
    expect(paid.headers["access-control-allow-headers"]).toBe("PAYMENT-SIGNATURE");
    expect((await app.inject({ method: "OPTIONS", url: "/x" })).json()).toEqual({ mine: true });
    expect((await app.inject({ method: "OPTIONS", url: "/open/thing", headers: preflight })).statusCode).toBe(
      204,
    );
    expect((await app.inject({ method: "GET", url: "/api" })).json()).toEqual({ root: true });
    await app.close();
  });

  it("inside an encapsulated scope: preflightRoutes twins the routes after it, HEAD routes and prefixes included", async () => {
    const app = Fastify();
    await app.register(
      async (scope) => {
        await scope.register(switchyardPaywall, { paywall, preflightRoutes: true });
        scope.get("/paid/report", async () => ({ report: true }));
        scope.get("/", async () => ({ root: true }));
      },
      { prefix: "/api" },
    );
    await app.ready();
    const paid = await app.inject({ method: "OPTIONS", url: "/api/paid/report", headers: preflight });
    expect(paid.statusCode).toBe(204);
    expect(paid.headers["access-control-allow-headers"]).toBe("PAYMENT-SIGNATURE");
    // A twin of a path that is not paywalled is the 404 it was.
    expect((await app.inject({ method: "OPTIONS", url: "/api/", headers: preflight })).statusCode).toBe(404);
    await app.close();
  });
});

/** One raw HTTP/1.1 request over a socket (no client normalizes its target or Host): the answer's status. */
function rawStatus(port: number, target: string, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1", () =>
      socket.write(`GET ${target} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`),
    );
    let answer = "";
    socket.on("data", (chunk) => {
      answer += chunk;
    });
    socket.on("error", reject);
    socket.on("close", () => resolve(Number(answer.split(" ")[1])));
  });
}

describe("the path the paywall reads is the one Fastify routes on", () => {
  it("a Host with a path in it, or an absolute-form target, does not make a paid route free (it did)", async () => {
    // The core's own reading of a URL, as the gateway's paywall does: /paid/report is priced, /free is not.
    const walls = [
      { resource: "/paid/report" },
      { resource: "/free" },
      { resource: "/" },
    ] as unknown as Parameters<typeof matchPaywall>[0];
    const seen: string[] = [];
    const paywall: PaywallCheck = async (request) => {
      seen.push(request.url);
      const resource = matchPaywall(walls, pathOf(request.url))?.resource;
      return resource === "/paid/report" || resource === "/"
        ? { kind: "challenge", status: 402, headers: [], body: {} }
        : { kind: "free" };
    };
    const app = Fastify();
    await app.register(switchyardPaywall, { paywall });
    app.get("/paid/report", async () => ({ report: "the paid content" }));
    app.get("/free", async () => ({ free: true }));
    app.get("/", async () => ({ home: "paid too" }));
    await app.listen({ port: 0, host: "127.0.0.1" });
    try {
      const { port } = app.server.address() as { port: number };
      expect(await rawStatus(port, "/paid/report", `127.0.0.1:${port}`)).toBe(402);
      expect(await rawStatus(port, "/free", `127.0.0.1:${port}`)).toBe(200);
      for (const [target, host] of [
        ["/paid/report", "x/free?"],
        ["/paid/report", "x/free#"],
        ["http://evil/paid/report", "x"],
        ["http://evil?/paid/report", "x"],
        // The router takes the scheme in any case, and a target with no path (or its query first) as /.
        ["HTTP://evil/paid/report", "x"],
        ["Https://evil/paid/report", "x"],
        ["http://evil", "x"],
        ["http://evil?/free", "x"],
        // Any other target: the router takes its first character for the / (Node's parser lets * through).
        ["*paid/report", "x"],
      ] as const)
        expect(await rawStatus(port, target, host), `GET ${target} with Host ${host}`).toBe(402);
      // A plain Host still names the resource's origin (a name with an underscore too); another is left out rather
      // than pasted in.
      expect(await rawStatus(port, "/paid/report", "paywall_app:4000")).toBe(402);
      expect(seen).toContain(`http://127.0.0.1:${port}/paid/report`);
      expect(seen).toContain("http://paywall_app:4000/paid/report");
      expect(seen).toContain("/paid/report");
    } finally {
      await app.close();
    }
  });
});

describe("a paid request whose settlement is refused", () => {
  it("answers the 402 with none of the handler's headers: no Location, cookie or link to what was not paid for", async () => {
    const app = Fastify();
    const paywall: PaywallCheck = async () => ({
      kind: "paid",
      paywallId: "pw_test",
      scheme: "x402",
      payer: "0x01",
      complete: async () => ({
        kind: "refused",
        status: 402,
        headers: [["PAYMENT-RESPONSE", "refused"]],
        body: { error: "settle_failed" },
      }),
    });
    // A header set before the verdict (another plugin's) stays.
    app.addHook("onRequest", async (_request, reply) => {
      reply.header("x-request-id", "r1");
    });
    await app.register(switchyardPaywall, { paywall });
    app.get("/paid/download", async (_request, reply) => {
      reply.header("location", "https://files.example/presigned?sig=secret");
      reply.header("set-cookie", "download=granted");
      reply.header("content-length", "19");
      return reply.code(200).send("the paid content...");
    });
    await app.ready();
    const answer = await app.inject({ method: "GET", url: "/paid/download" });
    expect(answer.statusCode).toBe(402);
    expect(answer.json()).toEqual({ error: "settle_failed" });
    expect(answer.headers.location).toBeUndefined();
    expect(answer.headers["set-cookie"]).toBeUndefined();
    expect(answer.headers["payment-response"]).toBe("refused");
    expect(answer.headers["x-request-id"]).toBe("r1");
    expect(answer.body).not.toContain("paid content");
    await app.close();
  });
});

describe("a paid answer that never reaches the payer", () => {
  /** A paywall whose every request is paid, settling after `settleMs`; counts the answers said undelivered. */
  function slowPaid(settleMs: number) {
    const counted = { undelivered: 0 };
    const paywall: PaywallCheck = async () => ({
      kind: "paid",
      paywallId: "pw_test",
      scheme: "x402",
      payer: "0x01",
      complete: async () => {
        await new Promise((resolve) => setTimeout(resolve, settleMs));
        return {
          kind: "settled",
          headers: [],
          undelivered: async () => {
            counted.undelivered += 1;
            return true;
          },
        };
      },
    });
    return { paywall, counted };
  }

  for (const http2 of [false, true]) {
    it(`is said undelivered when the payer left while it settled, and only then (HTTP/${http2 ? 2 : 1})`, async () => {
      const { paywall, counted } = slowPaid(300);
      // One type for both: the plugin and the route are the same on either server.
      const app = (http2 ? Fastify({ http2: true }) : Fastify()) as unknown as FastifyInstance;
      await app.register(switchyardPaywall, { paywall });
      app.get("/paid", async () => ({ report: "the goods" }));
      const base = await app.listen({ port: 0, host: "127.0.0.1" });
      try {
        const session = http2 ? connectHttp2(base) : null;
        const get = (signalAfterMs?: number) =>
          new Promise<string>((resolve) => {
            if (session !== null) {
              const stream = session.request({ ":path": "/paid" });
              let body = "";
              stream.on("data", (chunk) => {
                body += chunk;
              });
              stream.on("end", () => resolve(body));
              stream.on("error", () => resolve("gone"));
              stream.on("close", () => resolve(body === "" ? "gone" : body));
              stream.end();
              if (signalAfterMs !== undefined) setTimeout(() => stream.close(), signalAfterMs);
              return;
            }
            const leaving = new AbortController();
            fetch(`${base}/paid`, { signal: leaving.signal })
              .then((answer) => answer.text())
              .then(resolve, () => resolve("gone"));
            if (signalAfterMs !== undefined) setTimeout(() => leaving.abort(), signalAfterMs);
          });
        expect(await get()).toContain("the goods");
        await new Promise((resolve) => setTimeout(resolve, 100));
        expect(counted.undelivered).toBe(0);
        expect(await get(100)).not.toContain("the goods");
        await expect.poll(() => counted.undelivered, { timeout: 3_000 }).toBe(1);
        session?.close();
      } finally {
        await app.close();
      }
    });
  }
});
