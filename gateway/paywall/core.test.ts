// Which paywall a request falls under. A router decodes percent-escapes, and may merge slashes, ignore case or a
// trailing slash: a spelling it serves from a paid route must meet the paywall (before, `/demo/p%61id/report` was
// judged free while Fastify served it from `/demo/paid/:name`).
import { describe, expect, it } from "vitest";
import { matchPaywall, pathOf } from "./core.ts";
import type { Paywall } from "./paywalls.ts";

const paywall = (resource: string) => ({ id: `pwl_${resource}`, resource }) as unknown as Paywall;
const walls = [paywall("/demo/paid/*"), paywall("/report"), paywall("/demo/paid/vip/*")];
const matched = (url: string) => matchPaywall(walls, pathOf(url))?.resource ?? null;

describe("matching a request to a paywall", () => {
  it("matches every spelling a router serves from the paid route", () => {
    for (const url of [
      "/demo/paid/report",
      "/demo/p%61id/report",
      "/DEMO/Paid/report",
      "//demo//paid/report",
      "http://h:99999/demo/paid/report?x=1#y",
      "/demo/paid/%72eport",
    ])
      expect({ url, resource: matched(url) }).toEqual({ url, resource: "/demo/paid/*" });
    for (const url of ["/report", "/report/", "/REPORT", "/%72eport"])
      expect({ url, resource: matched(url) }).toEqual({ url, resource: "/report" });
  });

  it("takes the longest prefix, an exact resource first, and leaves other paths free", () => {
    expect(matched("/demo/paid/vip/x")).toBe("/demo/paid/vip/*");
    expect(matched("/demo/paid")).toBe("/demo/paid/*");
    expect(matched("/demo/free/x")).toBeNull();
    expect(matched("/reports")).toBeNull();
    expect(matched("/demo/paid%zz/x")).toBeNull();
  });

  it("reads the path of absolute and relative URLs without query or fragment", () => {
    expect(pathOf("https://example.com")).toBe("/");
    expect(pathOf("/a%2Fb?q")).toBe("/a/b");
    expect(pathOf("/%E2%82%AC/x")).toBe("/€/x");
  });
});
