import { createRequire } from "node:module";
import { describe, expect, it } from "vitest";
import { MalformedChallengeError } from "./errors.ts";
import { macaroonExpiryMs, parseL402Challenge, readBolt11 } from "./l402.ts";

const invoice = "lnbcrt20u1pjexample";

describe("parseL402Challenge", () => {
  it("reads Aperture's two lines as fetch joins them, and prefers the L402 one", () => {
    const header = `LSAT macaroon="AgEEbHNhdA==", invoice="${invoice}", L402 macaroon="AgEEbHNhdA==", invoice="${invoice}"`;
    expect(parseL402Challenge(header)).toEqual({
      scheme: "L402",
      macaroon: "AgEEbHNhdA==",
      invoice,
      network: "regtest",
      amountMsat: 2_000_000n,
    });
  });

  it("reads the spec's token= form and an LSAT-only challenge; ignores other schemes", () => {
    expect(parseL402Challenge(`l402 version="0", token="AgE=", invoice="${invoice}"`)?.macaroon).toBe("AgE=");
    expect(parseL402Challenge(`LSAT macaroon="AgE=", invoice="${invoice}"`)?.scheme).toBe("LSAT");
    expect(parseL402Challenge('Bearer realm="api"')).toBeNull();
    expect(parseL402Challenge(null)).toBeNull();
  });

  it("a challenge without invoice, or with an invoice without amount, is malformed", () => {
    expect(() => parseL402Challenge('L402 macaroon="AgE="')).toThrow(MalformedChallengeError);
    expect(() => parseL402Challenge('L402 macaroon="AgE=", invoice="lnbcrt1pjexample"')).toThrow(
      MalformedChallengeError,
    );
  });
});

describe("readBolt11", () => {
  it("reads the network and the amount of the human-readable part, in msat", () => {
    expect(readBolt11("lnbc2500u1pvjluez")).toEqual({ network: "bitcoin", amountMsat: 250_000_000n });
    expect(readBolt11("lntb20m1pvjluez")).toEqual({ network: "testnet", amountMsat: 2_000_000_000n });
    expect(readBolt11("lnbcrt10n1pvjluez")).toEqual({ network: "regtest", amountMsat: 1_000n });
    expect(readBolt11("lnbc10p1pvjluez")).toEqual({ network: "bitcoin", amountMsat: 1n });
    expect(readBolt11("lnbc1p1pvjluez")).toBeNull(); // a tenth of a msat
    expect(readBolt11("lnbc1pvjluez")).toBeNull(); // no amount
    expect(readBolt11("not an invoice")).toBeNull();
  });
});

describe("macaroonExpiryMs", () => {
  it("reads the earliest _valid_until caveat of a V2 macaroon made by the macaroon package", () => {
    const { newMacaroon } = createRequire(import.meta.url)("macaroon");
    const macaroon = newMacaroon({ version: 2, rootKey: "key", identifier: "id", location: "lsat" });
    macaroon.addFirstPartyCaveat("services=weather:0");
    macaroon.addFirstPartyCaveat("weather_valid_until=2000000000");
    macaroon.addFirstPartyCaveat("weather_valid_until=1900000000");
    const base64 = Buffer.from(macaroon.exportBinary()).toString("base64");
    expect(macaroonExpiryMs(base64)).toBe(1_900_000_000_000);
    expect(macaroonExpiryMs("bm90IGEgbWFjYXJvb24=")).toBeNull();
  });
});
