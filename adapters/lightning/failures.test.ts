import { describe, expect, it } from "vitest";
import { classifyLndError, failureFromFlags, flagsFromFailureReason, lndErrorText } from "./failures.ts";

describe("LND failures", () => {
  it("maps payment failure reasons", () => {
    expect(failureFromFlags({ is_insufficient_balance: true })?.code).toBe("insufficient_liquidity");
    expect(failureFromFlags({ is_invalid_payment: true })).toMatchObject({
      code: "rejected",
      retryElsewhere: false,
    });
    expect(failureFromFlags({ is_route_not_found: true })).toBeNull();
  });

  it("reads LND's failure reasons as the same flags", () => {
    expect(failureFromFlags(flagsFromFailureReason("FAILURE_REASON_NO_ROUTE"))).toBeNull();
    expect(failureFromFlags(flagsFromFailureReason("FAILURE_REASON_INSUFFICIENT_BALANCE"))?.code).toBe(
      "insufficient_liquidity",
    );
    expect(
      failureFromFlags(flagsFromFailureReason("FAILURE_REASON_INCORRECT_PAYMENT_DETAILS")),
    ).toMatchObject({
      code: "rejected",
      retryElsewhere: false,
    });
    expect(failureFromFlags(flagsFromFailureReason("FAILURE_REASON_TIMEOUT"))?.message).toBe(
      "no route found in time",
    );
    expect(failureFromFlags(flagsFromFailureReason("FAILURE_REASON_CANCELED"))?.code).toBe(
      "rail_unavailable",
    );
    expect(failureFromFlags(flagsFromFailureReason("FAILURE_REASON_ERROR"))).toMatchObject({
      code: "unreachable_destination",
      message: "payment failed",
    });
  });

  it("follows a hash LND already knows instead of failing", () => {
    expect(classifyLndError("invoice is already paid")).toEqual({ kind: "track" });
    expect(classifyLndError("payment is in transition")).toEqual({ kind: "track" });
    // As LND 0.21's SendPaymentV2 refuses a hash it has a payment of (gRPC ALREADY_EXISTS).
    expect(classifyLndError("6 ALREADY_EXISTS: invoice is already paid")).toEqual({ kind: "track" });
    expect(classifyLndError("6 ALREADY_EXISTS: payment is in transition")).toEqual({ kind: "track" });
  });

  it("maps expiry and lost connections", () => {
    const expired = classifyLndError("UnexpectedPaymentError: invoice expired. Valid until 2026-01-01");
    expect(expired).toMatchObject({ kind: "failed", failure: { code: "expired", retryElsewhere: false } });
    expect(classifyLndError("14 UNAVAILABLE: No connection established")).toEqual({ kind: "disconnected" });
  });

  it("reads the gRPC details out of lightning's error arrays", () => {
    expect(
      lndErrorText([503, "UnexpectedPaymentError", { err: { details: "invoice is already paid" } }]),
    ).toBe("UnexpectedPaymentError: invoice is already paid");
  });
});
