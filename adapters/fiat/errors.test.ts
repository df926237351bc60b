// Stripe's error bodies, turned into stripe-node's error classes by stripe-node itself, then translated.
import Stripe from "stripe";
import { describe, expect, it } from "vitest";
import { translateStripeError } from "./errors.ts";

const fromStripe = (raw: {
  statusCode: number;
  type: string;
  code?: string;
  param?: string;
  message?: string;
}) => Stripe.errors.generateV1Error({ message: "stripe says no", ...raw } as never);

describe("translateStripeError", () => {
  const table: [string, Parameters<typeof fromStripe>[0], string, boolean][] = [
    ["a declined card", { statusCode: 402, type: "card_error", code: "card_declined" }, "rejected", true],
    ["an expired card", { statusCode: 402, type: "card_error", code: "expired_card" }, "expired", true],
    [
      "an empty platform balance",
      { statusCode: 400, type: "invalid_request_error", code: "balance_insufficient" },
      "insufficient_liquidity",
      true,
    ],
    [
      "a bad destination",
      { statusCode: 400, type: "invalid_request_error", code: "resource_missing", param: "destination" },
      "unreachable_destination",
      true,
    ],
    ["any other invalid request", { statusCode: 400, type: "invalid_request_error" }, "rejected", true],
    [
      "a key in use by a try Stripe still runs (409: outcome unknown)",
      { statusCode: 409, type: "idempotency_error", code: "idempotency_key_in_use" },
      "rail_unavailable",
      false,
    ],
    [
      "a key used before with other parameters (a request under it ran)",
      { statusCode: 400, type: "idempotency_error" },
      "rail_unavailable",
      false,
    ],
    [
      "rate limiting (the client may have retried a try Stripe ran)",
      { statusCode: 429, type: "invalid_request_error", code: "rate_limit" },
      "rail_unavailable",
      false,
    ],
    ["refused credentials", { statusCode: 401, type: "invalid_request_error" }, "rail_unavailable", true],
    ["a permission error", { statusCode: 403, type: "invalid_request_error" }, "rail_unavailable", true],
    ["a server error (outcome unknown)", { statusCode: 500, type: "api_error" }, "rail_unavailable", false],
    [
      "a concurrent request with the same key",
      { statusCode: 409, type: "invalid_request_error" },
      "rail_unavailable",
      false,
    ],
  ];
  it.each(table)("maps %s", (_name, raw, code, retryElsewhere) => {
    expect(translateStripeError(fromStripe(raw))).toMatchObject({
      code,
      retryElsewhere,
      message: "stripe says no",
    });
  });

  it("maps a connection cut or timed out to rail_unavailable without retrying elsewhere: it may have been executed", () => {
    for (const code of ["ECONNRESET", "ETIMEDOUT", undefined]) {
      const error = new Stripe.errors.StripeConnectionError({
        message: "An error occurred with our connection to Stripe.",
        detail: code === undefined ? undefined : Object.assign(new Error(code), { code }),
      } as never);
      expect(translateStripeError(error)).toMatchObject({ code: "rail_unavailable", retryElsewhere: false });
    }
  });

  it("does not, when the client retried: an earlier try may have been cut after Stripe ran it", () => {
    const error = new Stripe.errors.StripeConnectionError({
      message: "An error occurred with our connection to Stripe. Request was retried 2 times.",
      detail: Object.assign(new Error("ECONNREFUSED"), { code: "ECONNREFUSED" }),
    } as never);
    expect(translateStripeError(error)).toMatchObject({ code: "rail_unavailable", retryElsewhere: false });
  });

  it("lets another rail try after a connection never made (refused, no such host): nothing was sent", () => {
    for (const code of ["ECONNREFUSED", "ENOTFOUND"]) {
      const error = new Stripe.errors.StripeConnectionError({
        message: "An error occurred with our connection to Stripe.",
        detail: Object.assign(new Error(code), { code }),
      } as never);
      expect(translateStripeError(error)).toMatchObject({ code: "rail_unavailable", retryElsewhere: true });
    }
  });

  it("rethrows what is not a Stripe error: that is a bug, not a failure", () => {
    const bug = new TypeError("x is undefined");
    expect(() => translateStripeError(bug)).toThrow(bug);
  });
});
