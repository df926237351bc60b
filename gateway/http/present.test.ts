import { describe, expect, it } from "vitest";
import { wellFormedInvoice } from "../../test/support/bolt11.ts";
import type { Payment } from "../payments/types.ts";
import type { ExclusionReason, RouteDecision } from "../router/types.ts";
import { ApiError } from "./errors.ts";
import { destinationFromBody, presentPayment, refusalError } from "./present.ts";

describe("destinationFromBody", () => {
  it("keeps a BOLT11 invoice as LND is handed it: lower case, whatever case the caller wrote it in", () => {
    const invoice = wellFormedInvoice();
    expect(destinationFromBody({ type: "bolt11", invoice: invoice.toUpperCase() })).toEqual({
      kind: "bolt11",
      invoice,
    });
    expect(destinationFromBody({ type: "bolt11", invoice: `lightning:${invoice}` })).toEqual({
      kind: "bolt11",
      invoice,
    });
  });

  it("refuses an invoice in mixed case, naming the field", () => {
    expect(() => destinationFromBody({ type: "bolt11", invoice: "lnbcRT10n1xyz" })).toThrow(
      expect.objectContaining({ code: "parameter_invalid", param: "destination.invoice" }),
    );
    expect(() => destinationFromBody({ type: "bolt11", invoice: "lnbcRT10n1xyz" })).toThrow(ApiError);
  });

  it("refuses what parseBolt11 cannot read, saying why", () => {
    const invoice = wellFormedInvoice();
    const changed = `${invoice.slice(0, 20)}${invoice[20] === "q" ? "p" : "q"}${invoice.slice(21)}`;
    expect(() => destinationFromBody({ type: "bolt11", invoice: changed })).toThrow(
      expect.objectContaining({
        code: "parameter_invalid",
        param: "destination.invoice",
        message: expect.stringContaining("checksum"),
      }),
    );
    expect(() => destinationFromBody({ type: "bolt11", invoice: "lnbcrt10n1xyz" })).toThrow(
      expect.objectContaining({
        code: "parameter_invalid",
        message: "destination.invoice is not a BOLT11 invoice",
      }),
    );
  });
});

describe("presentPayment", () => {
  const paymentAt = (createdAt: Date, updatedAt: Date): Payment => ({
    id: "pay_time",
    tenantId: "ten_time",
    status: "succeeded",
    assetCode: "USDC",
    amount: 1n,
    sourceAccountId: "acct_a",
    destination: { kind: "account", accountId: "acct_b" },
    policy: {},
    decision: null,
    rail: "internal-usdc",
    failureCode: null,
    failureMessage: null,
    metadata: {},
    createdAt,
    updatedAt,
    attempts: [],
  });

  it("writes each payment's own times, whatever payment was shown before it", () => {
    const times = [0, 1, 1, 1_700_000_000_123, 1, 8.64e15].map((ms) => new Date(ms));
    for (const created of times)
      for (const updated of times) {
        const view = presentPayment(paymentAt(created, updated));
        expect([view.created_at, view.updated_at]).toEqual([created.toISOString(), updated.toISOString()]);
      }
    // The same Date changed in place is written as it is now.
    const moving = new Date(5);
    presentPayment(paymentAt(moving, moving));
    moving.setTime(6);
    expect(presentPayment(paymentAt(moving, moving)).created_at).toBe("1970-01-01T00:00:00.006Z");
  });

  it("refuses an invalid time as toISOString does, after any other", () => {
    presentPayment(paymentAt(new Date(0), new Date(0)));
    expect(() => presentPayment(paymentAt(new Date(Number.NaN), new Date(0)))).toThrow(RangeError);
  });
});

describe("refusalError", () => {
  const decision = (excluded: RouteDecision["excluded"]): RouteDecision => ({
    chosen: null,
    candidates: [],
    excluded,
    amountMicroUsd: 1_000_000n,
    snapshotTakenAtMs: 0,
  });
  const refusal = (reasons: ExclusionReason[]) =>
    refusalError({
      refusal: "no_route",
      message: "no rail can make this payment under its constraints",
      decision: decision(reasons.map((reason, i) => ({ rail: `rail_${i}`, reason, detail: reason }))),
    }).code;

  it("says amount_too_large when every rail with a chance takes less; one whose rate is withheld never had one", () => {
    expect(refusal(["above_maximum", "unreachable_destination"])).toBe("amount_too_large");
    // Before: a rail left out for a stale or disputed rate counted as in reach, and the answer was no_route.
    expect(refusal(["above_maximum", "stale_rate"])).toBe("amount_too_large");
    expect(refusal(["above_maximum", "disputed_rate"])).toBe("amount_too_large");
    expect(refusal(["above_maximum", "fee_above_max"])).toBe("no_route");
    expect(refusal(["stale_rate", "disputed_rate"])).toBe("no_route");
  });
});
