// Which paywall a request falls under. A router decodes percent-escapes, and may merge slashes, ignore case or a
// trailing slash: a spelling it serves from a paid route must meet the paywall (before, `/demo/p%61id/report` was
// judged free while Fastify served it from `/demo/paid/:name`).
import { describe, expect, it } from "vitest";
import {
  matchPaywall,
  pathOf,
  pathReader,
  pathsRememberedLimits,
  paywallOfUrl,
  withoutDotSegments,
} from "./core.ts";
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
      // A router that ends the path at `;` (Fastify's useSemicolonDelimiter) serves this from the paid route: before,
      // the paywall read `/demo/paid/report;x` and matched nothing, so it was served free.
      "/demo/paid/report;x=1",
    ])
      expect({ url, resource: matched(url) }).toEqual({ url, resource: "/demo/paid/*" });
    for (const url of ["/report", "/report/", "/REPORT", "/%72eport", "/report;jsessionid=1"])
      expect({ url, resource: matched(url) }).toEqual({ url, resource: "/report" });
  });

  it("a dot segment is no way around a paywall: a path whose readings disagree is ambiguous (it was free, or priced as the cheaper reading)", () => {
    const files = [
      paywall("/files/secret/*"),
      paywall("/files/*"),
      paywall("/exact"),
      paywall("/previews/*"),
    ];
    const covering = (url: string) => {
      const found = paywallOfUrl(files, url);
      return found === "ambiguous" || found === null ? found : found.resource;
    };
    for (const url of [
      "http://h/files/public/../secret/a.pdf",
      "http://h/files/public/%2e%2e/secret/a.pdf",
      "http://h/files/x/%2E%2E/secret/a.pdf",
      "/files/./secret/a.pdf",
      "/files/a/b/../../secret/a.pdf",
      "/free/../exact",
      // Cut at `;` the path reads /x (free); a router that keeps the `;` serves what `..` resolves to.
      "/x;/../files/secret/a.pdf",
      "/x/..;/files/secret/a.pdf",
      // A longer resource is not the dearer one: neither reading is taken.
      "/previews/a/../../files/secret/a.pdf",
      "/files/secret/../../elsewhere",
    ])
      expect({ url, covering: covering(url) }).toEqual({ url, covering: "ambiguous" });
    // Readings that agree: the one paywall, or none.
    expect(covering("/files/secret/./a.pdf")).toBe("/files/secret/*");
    expect(covering("/free/../other")).toBeNull();
    expect(covering("/files/secret/a.pdf")).toBe("/files/secret/*");
    expect(withoutDotSegments("/a/b/..")).toBe("/a/");
    expect(withoutDotSegments("/..")).toBe("/");
    expect(withoutDotSegments("/a/./b")).toBe("/a/b");
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

describe("the paths pathOf remembers, at most pathsRememberedLimits.urlsMax URLs", () => {
  const { urlsMax, urlLengthMax } = pathsRememberedLimits;

  it("forgets the URL remembered first once urlsMax others were remembered after it, and keeps no more", () => {
    const paths = new Map<string, string>();
    const read = pathReader(pathsRememberedLimits, paths);
    expect(read("/First")).toBe("/first");
    for (let i = 1; i < urlsMax; i++) read(`/r/${i}`);
    expect(paths.size).toBe(urlsMax);
    expect(read("/First")).toBe("/first");
    read("/new/1");
    expect(paths.size).toBe(urlsMax);
    expect([paths.has("/First"), paths.has("/r/1"), paths.has("/new/1")]).toEqual([false, true, true]);
    read("/new/2");
    expect(paths.size).toBe(urlsMax);
    expect([paths.has("/r/1"), paths.has("/r/2"), paths.has("/new/2")]).toEqual([false, true, true]);
    expect(read("/First")).toBe("/first");
    expect(paths.size).toBe(urlsMax);
  });

  it("does not remember a URL longer than urlLengthMax, and still reads its path", () => {
    const paths = new Map<string, string>();
    const read = pathReader(pathsRememberedLimits, paths);
    const long = `/A/${"b".repeat(urlLengthMax)}`;
    expect(read(long)).toBe(long.toLowerCase());
    expect(paths.size).toBe(0);
  });
});
