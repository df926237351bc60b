import { describe, expect, it } from "vitest";
import { bareBolt11 } from "./destinations.ts";

describe("bareBolt11", () => {
  it("takes a lightning: prefix off, in any case, and gives the invoice in lower case", () => {
    for (const text of [
      "lnbcrt10n1xyz",
      "LNBCRT10N1XYZ",
      "lightning:lnbcrt10n1xyz",
      "LIGHTNING:LNBCRT10N1XYZ",
    ])
      expect(bareBolt11(text)).toBe("lnbcrt10n1xyz");
    expect(bareBolt11("Lightning:lnbcrt10n1xyz")).toBe("lnbcrt10n1xyz");
  });

  it("refuses mixed case (BIP-173), and takes one prefix off only", () => {
    expect(bareBolt11("lnbcRT10n1xyz")).toBeNull();
    expect(bareBolt11("LIGHTNING:lnbcrt10n1XYZ")).toBeNull();
    expect(bareBolt11("lightning:lightning:lnbcrt10n1xyz")).toBe("lightning:lnbcrt10n1xyz");
  });
});
