// The pure parts of refunds: the statuses a refund may move between. (A Lightning refund's invoice amount is
// parseBolt11's, core/bolt11.test.ts.)
import { describe, expect, it } from "vitest";
import { refundCanMove } from "./refunds-types.ts";

describe("refundCanMove", () => {
  it("lets a pending refund end either way, a succeeded one fail later (its provider's word), a failed one stay", () => {
    expect(refundCanMove("pending", "succeeded")).toBe(true);
    expect(refundCanMove("pending", "failed")).toBe(true);
    expect(refundCanMove("succeeded", "failed")).toBe(true);
    expect(refundCanMove("succeeded", "pending")).toBe(false);
    expect(refundCanMove("failed", "succeeded")).toBe(false);
    expect(refundCanMove("failed", "pending")).toBe(false);
  });
});
