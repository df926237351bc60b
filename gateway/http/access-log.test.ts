// The access log: one line for each refused or failed request at the default level (info), none for an answered
// one unless LOG_LEVEL is debug, and never Fastify's own two lines per request.
import { describe, expect, it } from "vitest";
import { buildBareServer } from "../../test/support/bare-server.ts";

async function linesOf(level: "info" | "debug", requests: { method: "GET"; url: string }[]) {
  const lines: Record<string, unknown>[] = [];
  const server = await buildBareServer([], {
    logLevel: level,
    logStream: { write: (line) => void lines.push(JSON.parse(line)) },
  });
  try {
    for (const request of requests) await server.inject(request);
  } finally {
    await server.close();
  }
  return lines.filter((line) => line.reqId !== undefined);
}

describe("the access log", () => {
  it("writes one line for a refused request at info, and none for an answered one", async () => {
    const lines = await linesOf("info", [
      { method: "GET", url: "/openapi.json" },
      { method: "GET", url: "/v1/payments?limit=2" },
    ]);
    expect(lines).toEqual([
      expect.objectContaining({
        level: 30,
        msg: "request answered",
        method: "GET",
        url: "/v1/payments?limit=2",
        statusCode: 401,
        responseTimeMs: expect.any(Number),
      }),
    ]);
  });

  it("writes an answered request's line at debug", async () => {
    const lines = await linesOf("debug", [{ method: "GET", url: "/openapi.json" }]);
    expect(lines.filter((line) => line.msg === "request answered")).toEqual([
      expect.objectContaining({ level: 20, url: "/openapi.json", statusCode: 200 }),
    ]);
    expect(lines.map((line) => line.msg)).not.toContain("incoming request");
  });
});
