import { describe, expect, it } from "vitest";
import { loadConfig } from "./config.ts";
import { configSecrets, secretScrubber } from "./secrets.ts";

describe("the configuration's secrets", () => {
  it("are redacted from a line: an RPC endpoint's key shown as its origin, a database password, a PSP key", () => {
    const config = loadConfig({
      EVM_RPC_URL: "https://eth.example.com/v2/providerKey0123456789",
      DATABASE_URL: "postgres://switchyard:dbPassw0rd%21x@db.example.com:5432/switchyard",
      EVM_EMBEDDED_RPC_PORT: "off",
    });
    const scrub = secretScrubber(configSecrets(config));
    const line = JSON.stringify({
      error: {
        url: "https://eth.example.com/v2/providerKey0123456789",
        message: "HTTP request failed.\n\nURL: https://eth.example.com/v2/providerKey0123456789",
      },
      path: "/v2/providerKey0123456789",
      db: "password dbPassw0rd!x refused",
    });
    const out = scrub(line);
    expect(out).not.toContain("providerKey0123456789");
    expect(out).not.toContain("dbPassw0rd");
    expect(out).toContain("https://eth.example.com/[redacted]");
    expect(out).toContain("/[redacted]");
    // The database's name is not a secret.
    expect(scrub("database switchyard")).toBe("database switchyard");
  });

  it("redacts a password as a JSON line escapes it, and the hot wallet's key", () => {
    const key = `0x${"ab".repeat(32)}`;
    const config = loadConfig({
      DATABASE_URL: "postgres://switchyard:q%22uoted%5Cpass@db.example.com/switchyard",
      EVM_RPC_URL: "http://127.0.0.1:8545",
      EVM_HOT_WALLET_KEY: key,
      EVM_TOKEN_ADDRESS: `0x${"33".repeat(20)}`,
      EVM_EMBEDDED_RPC_PORT: "off",
    });
    const scrub = secretScrubber(configSecrets(config));
    const line = JSON.stringify({ error: 'password "q"uoted\\pass" refused', key });
    expect(scrub(line)).not.toMatch(/uoted/);
    expect(scrub(line)).not.toContain(key);
    expect(JSON.parse(scrub(line))).toMatchObject({ key: "[redacted]" });
  });

  it("leaves lines alone when no endpoint carries a path, and never redacts short strings", () => {
    const config = loadConfig({ EVM_RPC_URL: "http://127.0.0.1:8545", EVM_EMBEDDED_RPC_PORT: "off" });
    expect(configSecrets(config)).toEqual([]);
    expect(secretScrubber([{ text: "abc", shownAs: "x" }])("abc")).toBe("x");
  });
});
