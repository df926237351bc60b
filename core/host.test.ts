import { describe, expect, it } from "vitest";
import { isHostName, parseHostPort } from "./host.ts";

describe("host names and host:port", () => {
  it("takes IP addresses and DNS names, and refuses what getaddrinfo could never resolve", () => {
    for (const ok of [
      "127.0.0.1",
      "0.0.0.0",
      "::",
      "::1",
      "fe80::1",
      "localhost",
      "lnd.internal",
      "a-b.example.com.",
      "lnd_alice",
      "fe80::1%eth0",
    ])
      expect(isHostName(ok), ok).toBe(true);
    for (const bad of [
      "",
      " ",
      "no such host!",
      "a..b",
      "-lead.example",
      "trail-.example",
      "x".repeat(64),
      "[::1]",
      "127.0.0.1:80",
    ])
      expect(isHostName(bad), bad).toBe(false);
    expect(isHostName(`${"a".repeat(63)}.`.repeat(4))).toBe(false);
  });

  it("reads host:port with a port from 1 to 65535, an IPv6 address in brackets", () => {
    expect(parseHostPort("127.0.0.1:10009")).toEqual({ host: "127.0.0.1", port: 10009 });
    expect(parseHostPort("lnd.internal:10009")).toEqual({ host: "lnd.internal", port: 10009 });
    expect(parseHostPort("lnd_alice:10009")).toEqual({ host: "lnd_alice", port: 10009 });
    expect(parseHostPort("[::1]:10009")).toEqual({ host: "::1", port: 10009 });
    for (const bad of [
      "nope",
      "127.0.0.1",
      "127.0.0.1:0",
      "127.0.0.1:99999",
      "127.0.0.1:65536",
      ":10009",
      "::1:10009",
      "[lnd]:10009",
      "a b:1",
      "127.0.0.1:10009 ",
    ])
      expect(parseHostPort(bad), bad).toBeNull();
  });
});
