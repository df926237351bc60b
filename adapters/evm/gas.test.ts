import { describe, expect, it } from "vitest";
import { gasFeesFor, gweiText } from "./gas.ts";

const gwei = 1_000_000_000n;
const policy = { priorityFeeWei: 1n * gwei, maxFeeWei: 50n * gwei };

describe("gasFeesFor", () => {
  it("prices a gas unit at base fee + tip, and sends twice the base fee + tip as the max fee", () => {
    expect(gasFeesFor(policy, 10n * gwei)).toEqual({
      kind: "fees",
      baseFeeWei: 10n * gwei,
      maxFeePerGas: 21n * gwei,
      maxPriorityFeePerGas: 1n * gwei,
      expectedPriceWei: 11n * gwei,
    });
  });

  it("bounds the max fee by the cap when the headroom would pass it", () => {
    const fees = gasFeesFor(policy, 30n * gwei);
    expect(fees).toMatchObject({ kind: "fees", maxFeePerGas: 50n * gwei, expectedPriceWei: 31n * gwei });
  });

  it("refuses when base fee + tip is above the cap, and accepts it exactly at the cap", () => {
    expect(gasFeesFor(policy, 49n * gwei)).toMatchObject({ kind: "fees", maxFeePerGas: 50n * gwei });
    expect(gasFeesFor(policy, 49n * gwei + 1n)).toEqual({
      kind: "above_max",
      baseFeeWei: 49n * gwei + 1n,
      maxFeeWei: 50n * gwei,
    });
  });

  it("a zero base fee still offers the tip", () => {
    expect(gasFeesFor(policy, 0n)).toMatchObject({ maxFeePerGas: 1n * gwei, expectedPriceWei: 1n * gwei });
  });
});

describe("gweiText", () => {
  it("writes wei as gwei without trailing zeros", () => {
    expect(gweiText(25n * gwei)).toBe("25 gwei");
    expect(gweiText(10_000_000n)).toBe("0.01 gwei");
    expect(gweiText(1n)).toBe("0.000000001 gwei");
  });
});
