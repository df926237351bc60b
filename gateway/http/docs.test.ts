// The API reference at /docs: served by the gateway itself — the page and every file it loads answer 200 from
// this server, the page names no other host, and its Content-Security-Policy lets a browser load nothing from one.
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildBareServer } from "../../test/support/bare-server.ts";
import { docsPath } from "./docs.ts";

let server: FastifyInstance;

beforeAll(async () => {
  server = await buildBareServer([]);
});

afterAll(async () => {
  await server?.close();
});

/** Every URL an element of the page loads (src, href). */
function referencedUrls(html: string): string[] {
  return [...html.matchAll(/\b(?:src|href)\s*=\s*"([^"]+)"/g)].map((match) => match[1]!);
}

describe("the API reference", () => {
  it("is a page whose every script, style and icon answers 200 from the gateway", async () => {
    const page = await server.inject({ method: "GET", url: docsPath });
    expect(page.statusCode).toBe(200);
    expect(page.headers["content-type"]).toMatch(/^text\/html/);
    const urls = referencedUrls(page.body);
    expect(urls.length).toBeGreaterThanOrEqual(5);
    expect(urls.some((url) => url.endsWith(".js"))).toBe(true);
    for (const url of urls) {
      expect(url.startsWith("/")).toBe(true);
      const asset = await server.inject({ method: "GET", url });
      expect([url, asset.statusCode]).toEqual([url, 200]);
      expect(asset.rawPayload.length).toBeGreaterThan(0);
    }
  });

  it("names no other host: no absolute http(s) URL in the page or in the script that starts it", async () => {
    const page = await server.inject({ method: "GET", url: docsPath });
    expect(page.body).not.toMatch(/https?:\/\//i);
    expect(page.body).not.toMatch(/(?:src|href)\s*=\s*"\/\//i);
    const initializer = await server.inject({
      method: "GET",
      url: `${docsPath}/static/swagger-initializer.js`,
    });
    expect(initializer.statusCode).toBe(200);
    // The document it loads is the gateway's own, relative to the page; no online validator.
    expect(initializer.body).toContain("resolveUrl('./json')");
    expect(initializer.body).toContain("validatorUrl: null");
    // Outside its comments (one cites a web page).
    const code = initializer.body.replace(/^\s*\/\/.*$/gm, "");
    expect(code.match(/https?:\/\/[^\s"'`)]+/gi) ?? []).toEqual([]);
  });

  it("tells the browser to load nothing from another origin", async () => {
    const page = await server.inject({ method: "GET", url: docsPath });
    const policy = String(page.headers["content-security-policy"]);
    expect(policy).toContain("default-src 'self'");
    expect(policy).toContain("script-src 'self'");
    expect(policy).toContain("connect-src 'self'");
    expect(policy).not.toMatch(/https?:|\*/);
  });

  it("shows the same document as /openapi.json, and needs no API key", async () => {
    const shown = await server.inject({ method: "GET", url: `${docsPath}/json` });
    const served = await server.inject({ method: "GET", url: "/openapi.json" });
    expect([shown.statusCode, served.statusCode]).toEqual([200, 200]);
    expect(shown.json()).toEqual(served.json());
    expect(shown.json().paths["/v1/payments"]).toBeDefined();
  });
});
