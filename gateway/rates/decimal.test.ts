import { describe, expect, it } from "vitest";
import { fromMicroUsd, toMicroUsd } from "../router/index.ts";
import { parsePriceDecimal, priceToAnswer, usdRateForAsset, usdRateFromPrice } from "./decimal.ts";

describe("parsePriceDecimal", () => {
  it("reads plain decimals exactly, as units and decimals", () => {
    expect(parsePriceDecimal("3000")).toEqual({ units: 3000n, decimals: 0 });
    expect(parsePriceDecimal("100000.00")).toEqual({ units: 10_000_000n, decimals: 2 });
    expect(parsePriceDecimal("0.9998")).toEqual({ units: 9998n, decimals: 4 });
    expect(parsePriceDecimal("007.5")).toEqual({ units: 75n, decimals: 1 });
    // 0.1 + 0.2 is not 0.30000000000000004 here: no float is involved.
    expect(parsePriceDecimal("0.30000000000000004")).toEqual({ units: 30000000000000004n, decimals: 17 });
  });

  it("refuses signs, exponents, spaces, empty parts, zero and more digits than the maxima", () => {
    for (const text of [
      "",
      "-1",
      "+1",
      "1e3",
      " 1",
      "1 ",
      "1.",
      ".5",
      "1,5",
      "0",
      "0.000",
      "NaN",
      "Infinity",
      "0x10",
    ])
      expect(parsePriceDecimal(text), text).toBeNull();
    expect(parsePriceDecimal("1".repeat(19))).toBeNull();
    expect(parsePriceDecimal("1".repeat(18))).not.toBeNull();
    expect(parsePriceDecimal(`1.${"1".repeat(37)}`)).toBeNull();
    expect(parsePriceDecimal(`1.${"1".repeat(36)}`)).not.toBeNull();
  });
});

describe("usdRateFromPrice", () => {
  it("gives the development table's rates for ETH at $3,000 (gwei) and BTC at $100,000 (msat), reduced", () => {
    expect(usdRateForAsset("ETH", { units: 3000_00000000n, decimals: 8 })).toEqual({
      microUsd: 3n,
      perMinorUnits: 1n,
    });
    expect(usdRateForAsset("BTC", { units: 100000_00000000n, decimals: 8 })).toEqual({
      microUsd: 1n,
      perMinorUnits: 1n,
    });
    expect(usdRateForAsset("USDC", { units: 1n, decimals: 0 })).toEqual({ microUsd: 1n, perMinorUnits: 1n });
    expect(usdRateForAsset("USD", { units: 1n, decimals: 0 })).toEqual({
      microUsd: 10_000n,
      perMinorUnits: 1n,
    });
  });

  it("keeps an odd price exact: ETH at $3,100.25 is 12,401 µUSD per 4,000 gwei", () => {
    const rate = usdRateForAsset("ETH", parsePriceDecimal("3100.25")!)!;
    expect(rate).toEqual({ microUsd: 12_401n, perMinorUnits: 4_000n });
    // One ETH (10^9 gwei) is worth exactly $3,100.25.
    expect(toMicroUsd(1_000_000_000n, rate, "half_even")).toBe(3_100_250_000n);
    // $1 buys 322,554.63… gwei: floor and ceil differ by one.
    expect(fromMicroUsd(1_000_000n, rate, "floor")).toBe(322_554n);
    expect(fromMicroUsd(1_000_000n, rate, "ceil")).toBe(322_555n);
  });

  it("refuses a price ≤ 0, bad decimals and an unknown asset", () => {
    expect(usdRateFromPrice({ units: 0n, decimals: 8 }, 9)).toBeNull();
    expect(usdRateFromPrice({ units: -1n, decimals: 8 }, 9)).toBeNull();
    expect(usdRateFromPrice({ units: 1n, decimals: 37 }, 9)).toBeNull();
    expect(usdRateFromPrice({ units: 1n, decimals: 1.5 }, 9)).toBeNull();
    expect(usdRateForAsset("DOGE", { units: 1n, decimals: 0 })).toBeNull();
  });
});

describe("priceToAnswer", () => {
  it("scales a decimal to the feed's decimals, refusing what would round", () => {
    expect(priceToAnswer("3100.25", 8)).toBe(310_025_000_000n);
    expect(priceToAnswer("100000", 8)).toBe(10_000_000_000_000n);
    expect(priceToAnswer("0.000000001", 8)).toBeNull();
    expect(priceToAnswer("-1", 8)).toBeNull();
  });
});
