// Every spelling of a local, private or metadata address the probe registered as a webhook URL (and the ones
// WHATWG URL rewrites into them) is refused; public addresses and names pass; credentials, other schemes and
// plain http where https is due are refused.
import { describe, expect, it } from "vitest";
import { classifyAddress } from "./address.ts";
import { type EgressPolicy, vetUrl } from "./url.ts";

const development: EgressPolicy = { mode: "development", allowHosts: [] };
const production: EgressPolicy = { mode: "production", allowHosts: [] };

describe("vetUrl refuses every spelling of a non-public address", () => {
  const refused: readonly [string, string][] = [
    // The probe's findings, as registered.
    ["https://169.254.169.254/latest/meta-data/", "address_not_public"],
    ["https://metadata.google.internal/computeMetadata/v1/", "host_not_allowed"],
    ["https://10.0.0.1/hook", "address_not_public"],
    ["https://[::ffff:127.0.0.1]/hook", "address_not_public"],
    ["https://2130706433/hook", "address_not_public"],
    ["https://0x7f000001/hook", "address_not_public"],
    ["https://127.1/hook", "address_not_public"],
    // Octal, mixed and dotted variants of loopback.
    ["https://0177.0.0.1/", "address_not_public"],
    ["https://0177.1/", "address_not_public"],
    ["https://0x7f.0.0.1/", "address_not_public"],
    ["https://0x7f.1/", "address_not_public"],
    ["https://127.0.0.1./", "address_not_public"],
    ["https://127.255.255.254/", "address_not_public"],
    // IPv6 loopback, unspecified, link-local, unique local, multicast; mapped and compatible IPv4.
    ["https://[::1]/", "address_not_public"],
    ["https://[0:0:0:0:0:0:0:1]/", "address_not_public"],
    ["https://[::]/", "address_not_public"],
    ["https://[fe80::1]/", "address_not_public"],
    ["https://[FE80::abcd]/", "address_not_public"],
    ["https://[fd00:ec2::254]/", "address_not_public"],
    ["https://[fc00::1]/", "address_not_public"],
    ["https://[ff02::1]/", "address_not_public"],
    ["https://[::ffff:7f00:1]/", "address_not_public"],
    ["https://[::ffff:8.8.8.8]/", "address_not_public"],
    ["https://[::127.0.0.1]/", "address_not_public"],
    ["https://[::ffff:169.254.169.254]/", "address_not_public"],
    // NAT64 and 6to4 carrying a private IPv4 address.
    ["https://[64:ff9b::10.0.0.1]/", "address_not_public"],
    ["https://[64:ff9b::7f00:1]/", "address_not_public"],
    ["https://[2002:a9fe:a9fe::]/", "address_not_public"],
    ["https://[2002:7f00:1::1]/", "address_not_public"],
    // IPv4 private, CGNAT, link-local, multicast, unspecified, broadcast, documentation and reserved ranges.
    ["https://172.16.0.1/", "address_not_public"],
    ["https://172.31.255.255/", "address_not_public"],
    ["https://192.168.1.1/", "address_not_public"],
    ["https://100.64.0.1/", "address_not_public"],
    ["https://100.127.255.254/", "address_not_public"],
    ["https://169.254.0.1/", "address_not_public"],
    ["https://224.0.0.1/", "address_not_public"],
    ["https://239.255.255.250/", "address_not_public"],
    ["https://0.0.0.0/", "address_not_public"],
    ["https://0/", "address_not_public"],
    ["https://255.255.255.255/", "address_not_public"],
    ["https://192.0.2.1/", "address_not_public"],
    ["https://198.51.100.7/", "address_not_public"],
    ["https://203.0.113.9/", "address_not_public"],
    ["https://240.0.0.1/", "address_not_public"],
    ["https://[2001:db8::1]/", "address_not_public"],
    // Names of this machine, its network and metadata services, in any case and with a trailing dot.
    ["https://METADATA.GOOGLE.INTERNAL./", "host_not_allowed"],
    ["https://metadata/", "host_not_allowed"],
    ["https://metadata.goog/", "host_not_allowed"],
    ["https://localhost/", "host_not_allowed"],
    ["https://LOCALHOST./", "host_not_allowed"],
    ["https://api.localhost/", "host_not_allowed"],
    ["https://printer.local/", "host_not_allowed"],
    ["https://db.internal/", "host_not_allowed"],
    ["https://intranet-host/", "host_not_allowed"],
  ];
  it.each(refused)("%s → %s", (url, reason) => {
    expect(vetUrl(url, development)).toMatchObject({ ok: false, reason });
    expect(vetUrl(url, production)).toMatchObject({ ok: false, reason });
  });
});

describe("vetUrl", () => {
  it.each([
    "https://example.com/hook",
    "https://EXAMPLE.com./hook?x=1",
    "https://8.8.8.8/",
    "https://1.1.1.1:8443/hook",
    "https://[2606:4700:4700::1111]/",
    "https://[64:ff9b::808:808]/",
    "https://[2002:808:808::1]/",
  ])("accepts the public %s", (url) => {
    expect(vetUrl(url, production)).toMatchObject({ ok: true, allowed: false });
  });

  it("refuses credentials in the URL", () => {
    expect(vetUrl("https://user:pass@example.com/", development)).toMatchObject({
      ok: false,
      reason: "credentials_in_url",
    });
    expect(vetUrl("https://user@example.com/", development)).toMatchObject({ reason: "credentials_in_url" });
  });

  it("refuses other schemes and what is not a URL", () => {
    for (const url of ["ftp://example.com/", "file:///etc/passwd", "gopher://example.com/", "javascript:1"])
      expect(vetUrl(url, development)).toMatchObject({ ok: false, reason: "scheme_not_allowed" });
    expect(vetUrl("example.com/hook", development)).toMatchObject({ ok: false, reason: "invalid_url" });
    expect(vetUrl(`https://example.com/${"a".repeat(3_000)}`, development)).toMatchObject({
      reason: "invalid_url",
    });
  });

  it("plain http: refused in production, and in development unless the host is allowed", () => {
    expect(vetUrl("http://example.com/", production)).toMatchObject({ ok: false, reason: "https_required" });
    expect(vetUrl("http://example.com/", development)).toMatchObject({ ok: false, reason: "https_required" });
    const allowing: EgressPolicy = { mode: "development", allowHosts: ["example.com"] };
    expect(vetUrl("http://example.com/", allowing)).toMatchObject({ ok: true, allowed: true });
    expect(vetUrl("http://example.com/", { ...allowing, mode: "production" })).toMatchObject({
      reason: "https_required",
    });
  });

  it("an allowed host reaches its address, on the port named if one is", () => {
    const policy: EgressPolicy = { mode: "development", allowHosts: ["127.0.0.1:4010", "localhost"] };
    expect(vetUrl("http://127.0.0.1:4010/hook", policy)).toMatchObject({ ok: true, allowed: true });
    expect(vetUrl("http://127.0.0.1:4011/hook", policy)).toMatchObject({
      ok: false,
      reason: "https_required",
    });
    expect(vetUrl("https://127.0.0.1:4011/hook", policy)).toMatchObject({ reason: "address_not_public" });
    expect(vetUrl("http://localhost:9999/hook", policy)).toMatchObject({ ok: true, allowed: true });
    // Another spelling of an allowed address is that address (WHATWG URL rewrites it), nothing more.
    expect(vetUrl("http://2130706433:4010/hook", policy)).toMatchObject({ ok: true, allowed: true });
    expect(vetUrl("http://10.0.0.1:4010/hook", policy)).toMatchObject({ ok: false });
  });
});

describe("classifyAddress", () => {
  it("public unicast only", () => {
    expect(classifyAddress("93.184.216.34")).toEqual({ public: true });
    expect(classifyAddress("2606:2800:220:1::1")).toEqual({ public: true });
    expect(classifyAddress("169.254.169.254")).toEqual({ public: false, range: "linkLocal" });
    expect(classifyAddress("::ffff:10.0.0.1")).toEqual({ public: false, range: "ipv4Mapped" });
    expect(classifyAddress("64:ff9b:1::1")).toMatchObject({ public: false });
    expect(classifyAddress("2001::1")).toMatchObject({ public: false, range: "teredo" });
    expect(classifyAddress("100::1")).toMatchObject({ public: false });
    expect(classifyAddress("4000::1")).toEqual({ public: false, range: "not_global_unicast" });
  });

  it("only canonical spellings are addresses (a resolver never answers 127.1)", () => {
    expect(classifyAddress("127.1")).toEqual({ public: false, range: "not_an_address" });
    expect(classifyAddress("example.com")).toEqual({ public: false, range: "not_an_address" });
  });
});
