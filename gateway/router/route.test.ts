import { describe, expect, it } from "vitest";
import { evmRail, internalRail, staticSnapshot, usdc } from "./fixtures.ts";
import { prepareSnapshot, route } from "./index.ts";
import type { PaymentIntent } from "./types.ts";

const toAddress: PaymentIntent["destination"] = {
  kind: "evm_address",
  address: "0x00000000000000000000000000000000000000aa",
};
const toAccount: PaymentIntent["destination"] = { kind: "account", accountId: "acct_1" };

describe("route, internal and evm", () => {
  const snapshot = prepareSnapshot(staticSnapshot([internalRail, evmRail]));

  it("sends to a Switchyard account over the internal rail at zero cost", () => {
    const decision = route({ asset: usdc, amount: 1_000_000n, destination: toAccount }, snapshot, {});
    expect(decision.chosen?.rail).toBe("internal");
    expect(decision.chosen?.cost.totalMicroUsd).toBe(0n);
    expect(decision.chosen?.amount).toBe(1_000_000n);
    expect(decision.excluded).toEqual([
      expect.objectContaining({ rail: "evm", reason: "unreachable_destination" }),
    ]);
  });

  it("sends to a 0x address over evm, costing gas × price × ETH", () => {
    const decision = route({ asset: usdc, amount: 1_000_000n, destination: toAddress }, snapshot, {});
    expect(decision.chosen?.rail).toBe("evm");
    // 65 000 gas × 0.01 gwei × 3e-9 micro-USD per wei = 1 950 micro-USD.
    expect(decision.chosen?.cost.networkMicroUsd).toBe(1_950n);
    expect(decision.chosen?.cost.totalMicroUsd).toBe(1_950n);
    expect(decision.excluded.map((e) => [e.rail, e.reason])).toEqual([
      ["internal", "unreachable_destination"],
    ]);
  });

  it("excludes evm when the fee is above the policy's cap", () => {
    const decision = route({ asset: usdc, amount: 1_000_000n, destination: toAddress }, snapshot, {
      maxFeeMicroUsd: 1_000n,
    });
    expect(decision.chosen).toBeNull();
    expect(decision.excluded.map((e) => [e.rail, e.reason])).toEqual([
      ["internal", "unreachable_destination"],
      ["evm", "fee_above_max"],
    ]);
  });

  it("gives the same decision for a plain snapshot as for a prepared one", () => {
    const intent: PaymentIntent = { asset: usdc, amount: 5n, destination: toAddress };
    expect(route(intent, staticSnapshot([internalRail, evmRail]), {})).toEqual(route(intent, snapshot, {}));
  });
});
