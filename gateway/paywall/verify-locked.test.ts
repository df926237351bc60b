// A payment checked at the prices of this window and of the one before (a challenge made just before a window's end):
// when neither pays, the refusal that asks for the same payment again is said over a final one.
import { describe, expect, it } from "vitest";
import { assets, type Sql } from "../../core/index.ts";
import { createPaywall } from "./core.ts";
import type { PaymentScheme, SchemeVerdict } from "./scheme.ts";

const now = new Date(0);
/** One paywall at /report, priced in USD, paid by x402 on the evm rail into one USDC account. */
const sql = {
  query: async () => [
    {
      id: "pwl_report",
      tenant_id: "tnt_test",
      resource: "/report",
      description: "a report",
      mime_type: "application/json",
      price_asset: "USD",
      price_amount: "1",
      offers: [{ scheme: "x402", rail: "evm" }],
      accounts: { USDC: "acc_seller" },
      split: [],
      token_lifetime_seconds: 3_600,
      token_requests_max: null,
      metadata: {},
      created_at: now,
      updated_at: now,
    },
  ],
} as unknown as Sql;

/** A scheme that refuses every payment: with the code `codes` gives its price, else finally (invalid_payload). */
function refusingScheme(codes: ReadonlyMap<bigint, string>): PaymentScheme {
  return {
    id: "x402",
    assetFor: () => assets.USDC,
    carries: () => true,
    challenge: async () => ({ headers: [] }),
    async verify(_resource, offers): Promise<SchemeVerdict> {
      const code = codes.get(offers[0]?.price.amount ?? 0n) ?? "invalid_payload";
      return { kind: "refused", refusal: { code, message: `refused with ${code}` } };
    },
  };
}

describe("a payment neither window's price takes", () => {
  it("is refused pending, not finally, when the other window's verdict is pending", async () => {
    /** The refusal said when this window's price (10,000) is refused with `now` and the window before's with `before`. */
    const check = (now: string, before: string) =>
      createPaywall({
        sql,
        tenantId: "tnt_test",
        schemes: [
          refusingScheme(
            new Map([
              [10_000n, now],
              [9_000n, before],
            ]),
          ),
        ],
        rates: { usdRate: () => null },
        priceLocks: {
          current: async () => new Map([["USDC", 10_000n]]),
          previous: async () => new Map([["USDC", 9_000n]]),
        },
      })({ method: "GET", url: "http://shop.test/report", headers: {} });
    // Pending at the window before's price (a payment owed, verified on the terms it was signed on): before, the final
    // refusal of this window's price was said, and a client signed a new payment.
    expect(await check("invalid_payment_requirements", "unexpected_settle_error")).toMatchObject({
      kind: "challenge",
      body: { error: "unexpected_settle_error" },
    });
    // Pending at this window's price: said, over the other's final refusal.
    expect(await check("unexpected_verify_error", "invalid_exact_evm_payload_signature")).toMatchObject({
      kind: "challenge",
      body: { error: "unexpected_verify_error" },
    });
    // Pending at both: this window's.
    expect(await check("unexpected_verify_error", "unexpected_settle_error")).toMatchObject({
      kind: "challenge",
      body: { error: "unexpected_verify_error" },
    });
    // Final at both: this window's, not the window before's.
    expect(await check("invalid_payment_requirements", "invalid_exact_evm_payload_signature")).toMatchObject({
      kind: "challenge",
      body: { error: "invalid_payment_requirements" },
    });
  });
});
