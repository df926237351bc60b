// Which sends' gas the send-gas pass books: the keys every sender of the rail uses, each to its kind, and for each
// kind and outcome either a caller that books it or the pass — never both, never neither.
import { describe, expect, it } from "vitest";
import { gasBookedBy, sendKindOf } from "./send-gas.ts";

describe("sendKindOf", () => {
  it("names every kind of send from its key", () => {
    expect(
      [
        "att_01J9ZQ4W3V5X6Y7Z8A9B0C1D2E",
        "approve:att_01J9ZQ4W3V5X6Y7Z8A9B0C1D2E",
        "approve:settle:0xab",
        "settle:0xab",
        "auth:0x12:0x34:0x56",
        "distribute:dist_1",
        "sweep:31337:3f1c",
        "x402-batch:b1",
        "transfer-auth:0x12:0x34",
        "receive-auth:0x12:0x34",
        "mint:0x12",
      ].map(sendKindOf),
    ).toEqual([
      "payout",
      "approve",
      "approve",
      "settle_batch",
      "pay_with_authorization",
      "distribute",
      "sweep",
      "x402_batch",
      "transfer_authorization",
      "receive_authorization",
      "unknown",
    ]);
  });
});

describe("gasBookedBy", () => {
  it("leaves a succeeded payout's and netting batch's gas to their callers, and books them when they revert", () => {
    expect([gasBookedBy("payout", true), gasBookedBy("payout", false)]).toEqual(["payment", null]);
    expect([gasBookedBy("settle_batch", true), gasBookedBy("settle_batch", false)]).toEqual([
      "netting",
      null,
    ]);
  });

  it("leaves sweeps to their booker, whatever the outcome", () => {
    for (const succeeded of [true, false]) expect(gasBookedBy("sweep", succeeded)).toBe("sweep");
  });

  it("hands the booker the approve, splitter calls, authorizations, x402's settlements, unknown kinds", () => {
    // x402's: the booker books a single settlement under x402's own id, and a batch only when x402 holds none of it.
    for (const kind of [
      "approve",
      "x402_batch",
      "transfer_authorization",
      "pay_with_authorization",
      "distribute",
      "receive_authorization",
      "unknown",
    ] as const)
      for (const succeeded of [true, false]) expect(gasBookedBy(kind, succeeded)).toBeNull();
  });
});
