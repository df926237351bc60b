import { describe, expect, it } from "vitest";
import { stripeErrorShown } from "./monitor.ts";

describe("a Stripe error as the health routes show it", () => {
  it("names the client's error class and Stripe's code", () => {
    expect(stripeErrorShown("StripeConnectionError")).toBe("StripeConnectionError");
    expect(stripeErrorShown("StripeAuthenticationError/api_key_expired")).toBe(
      "StripeAuthenticationError/api_key_expired",
    );
  });

  it("hides a code that is not one of Stripe's identifiers: another host answering may say anything", () => {
    for (const said of [
      "StripeAPIError/see https://proxy.example/?key=sk_live_abc",
      "StripeAPIError/Bad key sk_test_123 refused",
      "StripeAPIError/",
      `StripeAPIError/${"a".repeat(65)}`,
    ])
      expect(stripeErrorShown(said)).toBe("an unrecognised error");
  });
});
