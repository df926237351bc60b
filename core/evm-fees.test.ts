import { describe, expect, it } from "vitest";
import { feeWeiOf, l1FeeWeiOf } from "./evm-fees.ts";

describe("feeWeiOf", () => {
  it("is gas used × effective price, plus an OP-stack receipt's L1 data fee however viem gave it", () => {
    const l2 = { gasUsed: 52_000n, effectiveGasPrice: 1_000_252n };
    expect(feeWeiOf(l2)).toBe(52_013_104_000n);
    // Through viem's OP-stack formatters (a bigint), and through the generic one (the node's hex). Before: left out,
    // the hot wallet's ETH below its clearing account by it on every transaction on Base or Optimism.
    expect(feeWeiOf({ ...l2, l1Fee: 41_666_917_824n } as typeof l2)).toBe(52_013_104_000n + 41_666_917_824n);
    expect(feeWeiOf({ ...l2, l1Fee: "0x9b3888f40" } as typeof l2)).toBe(52_013_104_000n + 0x9b3888f40n);
    // Anything else is no fee of its.
    for (const l1Fee of [null, undefined, "", "0x", "12", -5n, { wei: 1 }])
      expect(l1FeeWeiOf({ ...l2, l1Fee })).toBe(0n);
  });
});
